//! Crash safety of usage accounting: the real `proxy-server` binary is killed with SIGKILL
//! while many requests are in flight, restarted on the same database, and every answer a
//! client fully received must be in the usage table as `ok`.
//!
//! This holds because the server journals a request's usage row (one `write` to the
//! `-usage` file beside the database) before it sends the end of the answer (the whole JSON
//! body, or the stream's `data: [DONE]`), a finished `write` survives the death of the
//! process, and the restart moves what the journal holds into SQLite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a failed test"
)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use serde_json::{Value, json};
use support::{ADMIN_KEY, Proxy, wait_for_log};

mod support;

const TOTAL_REQUESTS: usize = 200;
const IN_FLIGHT: usize = 64;
/// The kill comes once this many answers were fully received, so the test always checks a
/// real set of answers, with more still in flight.
const KILL_AFTER_RECEIVED: usize = 40;
const DEADLINE: Duration = Duration::from_secs(60);

/// Every other request streams, so both ways of ending an answer are checked.
fn is_streamed(index: usize) -> bool {
    index.is_multiple_of(2)
}

/// Sends one chat completion and returns its usage `request_id` if, and only if, the client
/// received the whole answer.
async fn chat(client: &awc::Client, proxy_url: &str, key: &str, index: usize) -> Option<String> {
    let streaming = is_streamed(index);
    let body = json!({
        "model": "llama3.2",
        "messages": [{
            "role": "user",
            "content": format!("request {index} asks for a reply that is long enough to overlap with many others"),
        }],
        "stream": streaming,
    });
    let mut response = client
        .post(format!("{proxy_url}/v1/chat/completions"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&body)
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let bytes = response.body().limit(1024 * 1024).await.ok()?;
    let completion_id = if streaming {
        let text = std::str::from_utf8(&bytes).ok()?;
        // A stream cut by the kill can look like a clean end to awc; only `[DONE]` proves
        // the client got everything.
        if !text.contains("data: [DONE]") {
            return None;
        }
        let first = text.lines().find_map(|l| l.strip_prefix("data: "))?;
        let chunk: Value = serde_json::from_str(first).ok()?;
        chunk["id"].as_str()?.to_owned()
    } else {
        let completion: Value = serde_json::from_slice(&bytes).ok()?;
        completion["choices"][0]["message"]["content"].as_str()?;
        completion["id"].as_str()?.to_owned()
    };
    completion_id.strip_prefix("chatcmpl-").map(str::to_owned)
}

#[derive(Default)]
struct Progress {
    next_index: Cell<usize>,
    killed: Cell<bool>,
    /// The usage request ids of the answers received in full.
    received: RefCell<Vec<String>>,
    streamed_received: Cell<usize>,
    failed: Cell<usize>,
    in_flight: Cell<usize>,
}

#[actix_web::test]
async fn every_answer_received_before_a_sigkill_is_in_the_usage_table() {
    let mut sim_config = SimConfig {
        workers: 2,
        ..SimConfig::default()
    };
    // About 20 tokens at 5 ms each: requests last long enough to pile up 64 at a time.
    sim_config.settings.token_delay = Duration::from_millis(5);
    let sim = OllamaSim::start(sim_config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut first = Proxy::start(&db, &sim.base_url(), None).await;

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let key = first
        .create_user(
            &client,
            json!({
                "user_id": "crash",
                "limits": {
                    "requests_per_minute": null,
                    "requests_per_day": null,
                    "tokens_per_minute": null,
                    "tokens_per_day": null,
                },
            }),
        )
        .await;

    let progress = Rc::new(Progress::default());
    let proxy_url = first.url("");
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let progress = Rc::clone(&progress);
            let client = client.clone();
            let proxy_url = proxy_url.clone();
            let key = key.clone();
            actix_web::rt::spawn(async move {
                loop {
                    let index = progress.next_index.get();
                    if index >= TOTAL_REQUESTS || progress.killed.get() {
                        break;
                    }
                    progress.next_index.set(index + 1);
                    progress.in_flight.set(progress.in_flight.get() + 1);
                    let outcome = chat(&client, &proxy_url, &key, index).await;
                    progress.in_flight.set(progress.in_flight.get() - 1);
                    match outcome {
                        Some(request_id) => {
                            progress.received.borrow_mut().push(request_id);
                            if is_streamed(index) {
                                progress
                                    .streamed_received
                                    .set(progress.streamed_received.get() + 1);
                            }
                        }
                        None => progress.failed.set(progress.failed.get() + 1),
                    }
                }
            })
        })
        .collect();

    let deadline = Instant::now() + DEADLINE;
    while progress.received.borrow().len() < KILL_AFTER_RECEIVED {
        assert!(
            Instant::now() < deadline,
            "only {} answers arrived before the deadline ({} failed)",
            progress.received.borrow().len(),
            progress.failed.get()
        );
        actix_web::rt::time::sleep(Duration::from_millis(2)).await;
    }
    let received_at_kill = progress.received.borrow().len();
    let in_flight_at_kill = progress.in_flight.get();
    // On Unix, `Child::kill` is SIGKILL: no signal handler, no graceful drain, no final flush.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    progress.killed.set(true);
    for worker in workers {
        worker.await.unwrap();
    }
    let received = progress.received.borrow().clone();
    println!(
        "at the kill: {received_at_kill} answers received, {in_flight_at_kill} in flight; \
         in all: {} received in full ({} streamed), {} not",
        received.len(),
        progress.streamed_received.get(),
        progress.failed.get()
    );
    assert!(received.len() >= KILL_AFTER_RECEIVED);

    let mut second = Proxy::start(&db, &sim.base_url(), None).await;
    let mut usage = client
        .get(second.url("/admin/users/crash/usage?limit=1000"))
        .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(usage.status(), 200);
    let usage: Value = usage.json().limit(16 * 1024 * 1024).await.unwrap();
    let rows: HashMap<&str, &str> = usage["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    println!(
        "after the restart: {} usage rows ({} received answers to find)",
        rows.len(),
        received.len()
    );
    for request_id in &received {
        assert_eq!(
            rows.get(request_id.as_str()).copied(),
            Some("ok"),
            "request {request_id} was fully received but its usage row is missing or not ok"
        );
    }

    // The restarted server also read USAGE_RETENTION_DAYS from its environment.
    let log = Arc::clone(&second.log);
    wait_for_log(&log, &mut second.child, "usage retention: deleted").await;
    second.stop();
    sim.stop().await;
}
