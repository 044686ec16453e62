//! A client that stops reading: the proxy must stop reading Ollama too, instead of buffering
//! the rest of the answer in memory. Run against the real binary, so the proxy's own resident
//! memory can be read from `/proc`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a failed test"
)]

use std::time::Duration;

use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use support::{ADMIN_KEY, Proxy};

mod support;

/// Words in the answer: about 48 MB of NDJSON from Ollama, 100 MB of events to the client.
/// A proxy that buffered for a client that does not read would hold most of it.
const WORDS: usize = 400_000;
/// How much the proxy's resident memory may grow while the client does not read: socket
/// buffers are the kernel's, so only actix's write buffer and a few decoded lines are ours.
const MAX_GROWTH_KIB: u64 = 40 * 1024;

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[actix_web::test]
async fn a_client_that_stops_reading_keeps_the_proxys_memory_bounded() {
    let sim = OllamaSim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(&dir.path().join("slow.db"), &sim.base_url(), None).await;
    let pid = proxy.child.id();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let key = proxy
        .create_user(
            &client,
            json!({
                "user_id": "slow",
                // No token limit, so no completion budget cuts the long answer short.
                "limits": {"tokens_per_minute": null, "tokens_per_day": null},
            }),
        )
        .await;
    let chat = |text: String, stream: bool| {
        client
            .post(proxy.url("/v1/chat/completions"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&json!({
                "model": "llama3.2",
                "messages": [{"role": "user", "content": text}],
                "stream": stream,
            }))
    };
    // Warm: the first answers allocate what every later one reuses.
    for _ in 0..3 {
        assert_eq!(chat("warm up".into(), true).await.unwrap().status(), 200);
    }
    let control = sim.control().clone();
    let completed_before = control.stats().streams_completed;
    let before = resident_kib(pid);

    let mut response = chat("w ".repeat(WORDS), true).await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));

    // The client reads nothing more. Over the next three seconds (a proxy that buffered would
    // have read the whole answer from the simulator in well under one), the simulator's stream
    // must stay unfinished, held back by the proxy no longer reading it, the proxy's memory
    // must stay bounded, and other requests are served meanwhile.
    let mut peak = before;
    for sample in 0..12 {
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        let mut other = chat("meanwhile".into(), false).await.unwrap();
        let answer = other.body().await.unwrap();
        assert_eq!(other.status(), 200, "{answer:?}");
        peak = peak.max(resident_kib(pid));
        let stats = control.stats();
        assert_eq!(
            stats.streams_completed,
            completed_before,
            "the simulator finished the answer {}ms after the client stopped reading: the \
             proxy read it all, buffering for a client that does not read",
            (sample + 1) * 250
        );
        assert_eq!(stats.open_streams, 1, "{stats:?}");
        assert!(
            peak - before < MAX_GROWTH_KIB,
            "the proxy grew by {} KiB for a client that does not read",
            peak - before
        );
    }

    // The client leaves: the upstream is closed, the part streamed is billed as aborted.
    drop(response);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let mut usage = client
            .get(proxy.url("/admin/users/slow/usage?limit=100"))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
            .send()
            .await
            .unwrap();
        let usage: Value = usage.json().await.unwrap();
        let aborted = usage["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "aborted")
            .cloned();
        if let Some(row) = aborted {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no aborted row: {usage}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let billed = row["completion_tokens"].as_u64().unwrap();
    assert!(billed > 0 && billed < WORDS as u64, "{row}");
    let mut next = chat("next".into(), false).await.unwrap();
    let answer = next.body().await.unwrap();
    assert_eq!(next.status(), 200, "{answer:?}");

    proxy.stop();
    sim.stop().await;
}
