//! A full disk: the real binary runs under a file-size limit (`ulimit -f`, with SIGXFSZ
//! ignored, so a write past the limit fails with EFBIG the way one on a full disk fails with
//! ENOSPC). Requests whose usage cannot be written get a clear 503, not an answer whose usage
//! is lost; every answer that was given has its row after a restart without the limit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failure is a failed test"
)]

use std::time::Duration;

use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use serde_json::{Value, json};
use support::{ADMIN_KEY, Proxy};

mod support;

/// Files may grow to 64 KiB (SQLite's shared-memory file alone takes 32 KiB): the journal
/// holds a few hundred rows before it reaches the limit.
const FILE_SIZE_LIMIT: &str = "trap '' XFSZ; ulimit -f 64";

async fn chat(client: &awc::Client, proxy: &Proxy, key: &str, stream: bool) -> (u16, Value) {
    let mut response = client
        .post(proxy.url("/v1/chat/completions"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({
            "model": "llama3.2",
            "messages": [{"role": "user", "content": "fill the disk"}],
            "stream": stream,
        }))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.body().limit(1 << 20).await.unwrap();
    let body = if stream {
        // The stream's last `data:` line before `[DONE]`, or its error event.
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .rfind(|l| *l != "[DONE]")
            .unwrap_or("null")
            .to_owned();
        let mut event: Value = serde_json::from_str(&last).unwrap();
        event["done"] = json!(text.contains("data: [DONE]"));
        event
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

#[actix_web::test]
async fn a_full_disk_turns_into_503s_and_loses_no_answered_row() {
    let sim = OllamaSim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();

    // A first start without the limit creates the database and the user.
    let mut proxy = Proxy::start(&db, &sim.base_url(), None).await;
    let key = proxy
        .create_user(
            &client,
            json!({"user_id": "full", "limits": {"requests_per_minute": null}}),
        )
        .await;
    proxy.stop();

    let mut proxy = Proxy::start(&db, &sim.base_url(), Some(FILE_SIZE_LIMIT)).await;
    let mut answered = 0;
    let mut refused = None;
    for i in 0..2000 {
        let stream = i % 2 == 1;
        let (status, body) = chat(&client, &proxy, &key, stream).await;
        match (status, stream) {
            (200, false) => answered += 1,
            (200, true) if body["done"] == json!(true) => answered += 1,
            (200, true) => {
                // Headers were sent before the row could be written: the stream ends with
                // an error event instead of `[DONE]`.
                assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
                refused = Some(body);
                break;
            }
            (503, _) => {
                refused = Some(body);
                break;
            }
            (other, _) => panic!("unexpected status {other}: {body}"),
        }
    }
    let refused = refused.expect("the journal never reached the file-size limit");
    println!("{answered} answers before the disk was full; then: {refused}");
    assert!(answered > 10, "only {answered} answers fit");
    assert_eq!(
        refused["error"]["code"], "database_unavailable",
        "{refused}"
    );
    // Refused again, and the server itself stays up (health says the database is down).
    assert!(chat(&client, &proxy, &key, false).await.0 == 503);
    proxy.stop();

    // Room again: every answered request has its row, the refused ones have none.
    let mut proxy = Proxy::start(&db, &sim.base_url(), None).await;
    let mut usage = client
        .get(proxy.url("/admin/users/full/usage?limit=1000"))
        .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(usage.status(), 200);
    let usage: Value = usage.json().limit(1 << 24).await.unwrap();
    let rows = usage["records"].as_array().unwrap();
    assert_eq!(rows.len(), answered, "rows: {usage}");
    assert!(rows.iter().all(|r| r["status"] == "ok"));
    assert_eq!(chat(&client, &proxy, &key, false).await.0, 200);
    proxy.stop();
    sim.stop().await;
}
