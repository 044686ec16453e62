//! Injected latency and faults, seen from the client's side of the socket.

use std::time::Duration;

use aiproxy_ollama_sim::{MALFORMED_LINE, MODEL_ERROR_MESSAGE, SERVER_BUSY_MESSAGE, SimEndpoint};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::client::{OpenStream, eventually, get, parse_response, post, start};

/// Six tokens: `Echo:` and five words.
fn chat(stream: bool) -> Value {
    json!({"model": "llama3.2", "messages": [{"role": "user", "content": "one two three four five"}], "stream": stream})
}

#[actix_rt::test]
async fn embeddings_take_the_non_streaming_meaning_of_every_fault() {
    let sim = start().await;
    let embed = json!({"model": "nomic-embed-text", "input": "hi"});
    for path in ["/api/embed", "/api/embeddings"] {
        let mut body = embed.clone();
        body["prompt"] = json!("hi");
        sim.control().set_error_after_tokens(Some(1));
        let failed = post(&sim, path, &body).await;
        assert_eq!(
            (failed.status, failed.json()),
            (500, json!({"error": MODEL_ERROR_MESSAGE})),
            "{path}"
        );
        sim.control().clear_faults();
        sim.control().set_close_after_tokens(Some(1));
        let cut = post(&sim, path, &body).await;
        assert!(cut.status == 200 && !cut.chunked && !cut.complete, "{path}");
        sim.control().clear_faults();
        sim.control().set_malformed_after_tokens(Some(0));
        let broken = post(&sim, path, &body).await;
        assert!(broken.complete && serde_json::from_slice::<Value>(&broken.body).is_err());
        sim.control().clear_faults();
        sim.control().set_stall_after_tokens(Some(0));
        let mut stalled = OpenStream::post(&sim, path, &body).await;
        stalled.expect_silence(Duration::from_millis(200)).await;
        sim.control().clear_faults();
    }
}

#[actix_rt::test]
async fn fail_status_answers_the_status_for_inference_and_embeddings_only() {
    let sim = start().await;
    sim.control().fail_with(503, SERVER_BUSY_MESSAGE);
    for (path, body) in [
        ("/api/chat", chat(true)),
        (
            "/api/generate",
            json!({"model": "llama3.2", "prompt": "hi"}),
        ),
        (
            "/api/embed",
            json!({"model": "nomic-embed-text", "input": "hi"}),
        ),
    ] {
        let response = post(&sim, path, &body).await;
        assert_eq!(response.status, 503, "{path}");
        assert_eq!(response.content_type(), "application/json; charset=utf-8");
        assert_eq!(response.json(), json!({"error": SERVER_BUSY_MESSAGE}));
    }
    assert_eq!(get(&sim, "/api/tags").await.status, 200);
    // Validation comes first: an unknown model is still a 404.
    let unknown = post(&sim, "/api/chat", &json!({"model": "nope", "messages": []})).await;
    assert_eq!(unknown.status, 404);
}

#[actix_rt::test]
async fn error_after_tokens_sends_an_error_line_and_no_done_line() {
    let sim = start().await;
    sim.control().set_error_after_tokens(Some(2));
    let response = post(&sim, "/api/chat", &chat(true)).await;
    assert_eq!(response.status, 200);
    assert!(response.complete, "the stream itself ends cleanly");
    let lines = response.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["message"]["content"], " one");
    assert_eq!(lines[2], json!({"error": MODEL_ERROR_MESSAGE}));
    let stats = eventually(sim.control(), "stream closed", |s| s.open_streams == 0).await;
    assert_eq!(
        (
            stats.streams_errored,
            stats.streams_completed,
            stats.streams_aborted_by_client
        ),
        (1, 0, 0)
    );
}

#[actix_rt::test]
async fn an_error_before_the_first_token_is_a_500() {
    let sim = start().await;
    sim.control().set_error_after_tokens(Some(0));
    let streamed = post(&sim, "/api/chat", &chat(true)).await;
    assert_eq!(
        (streamed.status, streamed.content_type()),
        (500, "application/json")
    );
    assert_eq!(streamed.json(), json!({"error": MODEL_ERROR_MESSAGE}));
    sim.control().set_error_after_tokens(Some(3));
    let whole = post(&sim, "/api/chat", &chat(false)).await;
    assert_eq!(
        (whole.status, whole.json()),
        (500, json!({"error": MODEL_ERROR_MESSAGE}))
    );
}

#[actix_rt::test]
async fn close_after_tokens_cuts_the_connection_without_the_last_chunk() {
    let sim = start().await;
    sim.control().set_close_after_tokens(Some(2));
    let response = post(&sim, "/api/chat", &chat(true)).await;
    assert_eq!(response.status, 200);
    assert!(
        response.chunked && !response.complete,
        "the terminating chunk must be missing"
    );
    let lines = response.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["message"]["content"], "Echo:");
    let stats = eventually(sim.control(), "stream dropped", |s| s.open_streams == 0).await;
    assert_eq!(
        (
            stats.streams_aborted_by_server,
            stats.streams_aborted_by_client
        ),
        (1, 0)
    );

    let whole = post(&sim, "/api/chat", &chat(false)).await;
    assert_eq!(whole.status, 200);
    assert!(
        !whole.chunked && !whole.complete,
        "fewer bytes than Content-Length"
    );
    assert!(serde_json::from_slice::<Value>(&whole.body).is_err());
}

/// awc 3.11 ends a chunked body cut at a chunk boundary as if it were complete (its payload
/// stream maps end-of-socket to a clean end), so a client must treat "no `done` line" as the
/// failure signal. This pins down what an awc-based client sees.
#[actix_rt::test]
async fn awc_sees_a_cut_stream_end_without_a_done_line() {
    let sim = start().await;
    sim.control().set_close_after_tokens(Some(1));
    let mut response = awc::Client::default()
        .post(format!("{}/api/chat", sim.base_url()))
        .send_json(&chat(true))
        .await
        .unwrap();
    let mut received = Vec::new();
    while let Some(Ok(bytes)) = response.next().await {
        received.extend_from_slice(&bytes);
    }
    let lines: Vec<Value> = received
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert!(lines.iter().all(|line| line["done"] == false));
}

#[actix_rt::test]
async fn malformed_after_tokens_inserts_a_broken_line_and_carries_on() {
    let sim = start().await;
    sim.control().set_malformed_after_tokens(Some(1));
    let response = post(&sim, "/api/chat", &chat(true)).await;
    assert!(response.complete);
    let lines = response.raw_lines();
    assert_eq!(lines.len(), 1 + 1 + 5 + 1);
    assert_eq!(format!("{}\n", lines[1]).as_bytes(), MALFORMED_LINE);
    assert!(serde_json::from_str::<Value>(&lines[1]).is_err());
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        (last["done"].clone(), last["eval_count"].clone()),
        (json!(true), json!(6))
    );

    let whole = post(
        &sim,
        "/api/generate",
        &json!({"model": "llama3.2", "prompt": "hi", "stream": false}),
    )
    .await;
    assert_eq!(whole.status, 200);
    assert!(whole.complete && serde_json::from_slice::<Value>(&whole.body).is_err());
}

#[actix_rt::test]
async fn stall_after_tokens_keeps_the_connection_open_until_the_client_leaves() {
    let sim = start().await;
    sim.control().set_stall_after_tokens(Some(2));
    let mut stream = OpenStream::post(&sim, "/api/chat", &chat(true)).await;
    let lines = stream.read_lines(2).await;
    assert_eq!(lines.len(), 2);
    stream.expect_silence(Duration::from_millis(300)).await;
    let stats = sim.control().stats();
    assert_eq!((stats.open_streams, stats.streams_completed), (1, 0));
    drop(stream);
    let stats = eventually(sim.control(), "client abort counted", |s| {
        s.streams_aborted_by_client == 1
    })
    .await;
    assert_eq!(stats.open_streams, 0);
}

#[actix_rt::test]
async fn hang_sends_nothing_at_all() {
    let sim = start().await;
    sim.control().set_hang(true);
    let mut stream = OpenStream::post(&sim, "/api/chat", &chat(true)).await;
    stream.expect_silence(Duration::from_millis(300)).await;
    assert!(stream.received().is_empty());
    eventually(sim.control(), "request counted", |s| {
        s.requests_to(SimEndpoint::Chat) == 1
    })
    .await;
    drop(stream);
    sim.control().set_hang(false);
    assert_eq!(post(&sim, "/api/chat", &chat(false)).await.status, 200);
}

#[actix_rt::test]
async fn a_client_leaving_mid_stream_is_counted() {
    let sim = start().await;
    sim.control().set_token_delay(Duration::from_millis(200));
    let mut stream = OpenStream::post(&sim, "/api/chat", &chat(true)).await;
    stream.read_lines(1).await;
    drop(stream);
    let stats = eventually(sim.control(), "client abort counted", |s| {
        s.streams_aborted_by_client == 1
    })
    .await;
    assert_eq!((stats.streams_completed, stats.open_streams), (0, 0));
}

#[actix_rt::test]
async fn delays_hold_lines_back_without_changing_them() {
    let sim = start().await;
    sim.control()
        .set_first_token_delay(Duration::from_millis(20));
    sim.control().set_token_delay(Duration::from_millis(150));
    let mut stream = OpenStream::post(&sim, "/api/chat", &chat(true)).await;
    stream.read_lines(1).await;
    // Five more lines are at least 750 ms away, so the stream cannot have finished yet.
    let stats = sim.control().stats();
    assert_eq!((stats.open_streams, stats.streams_completed), (1, 0));
    sim.control().set_token_delay(Duration::ZERO);
    let lines = stream.read_lines(7).await;
    let last: Value = serde_json::from_str(&lines[6]).unwrap();
    assert_eq!(last["done"], true);
}

#[actix_rt::test]
async fn faults_for_next_limits_faults_to_that_many_requests() {
    let sim = start().await;
    sim.control().set_close_after_tokens(Some(0));
    sim.control().set_faults_for_next(Some(1));
    let cut = post(&sim, "/api/chat", &chat(true)).await;
    assert!(!cut.complete && cut.body.is_empty());
    let fine = post(&sim, "/api/chat", &chat(true)).await;
    assert!(fine.complete);
    assert_eq!(fine.lines().len(), 7);
    assert!(!sim.control().settings().has_faults());
}

#[test]
fn the_raw_parser_tells_cut_streams_from_finished_ones() {
    let finished = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab\n\r\n0\r\n\r\n";
    let response = parse_response(finished, false);
    assert!(response.complete && response.body == b"ab\n");
    let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab\n\r\n";
    assert!(!parse_response(cut, false).complete);
}
