//! Faults from issue 8: Ollama down at start, garbage, mass disconnects, graceful shutdown.

use std::time::Duration;

use aiproxy_e2e::{TestApp, chat_body, sse_events};
use aiproxy_ollama_sim::{OllamaSim, SimConfig};

#[actix_web::test]
async fn ollama_down_at_start_and_back_later() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let app = TestApp::spawn_with(|s| s.ollama_base_url = format!("http://127.0.0.1:{port}")).await;
    let key = app.create_user("late").await;
    assert_eq!(app.get("/health", None).await.json["ollama"], "unreachable");
    app.chat(&key, &chat_body("llama3.2", "hi"))
        .await
        .expect_error(502);

    let late = OllamaSim::start_on(([127, 0, 0, 1], port).into(), SimConfig::default())
        .await
        .unwrap();
    app.eventually("the proxy sees Ollama come back", async || {
        app.get("/health", None).await.json["ollama"] == "ok"
    })
    .await;
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
    let usage = app.usage_of("late").await;
    assert_eq!(
        usage["totals"]["requests"], 1,
        "the unreachable attempt left no row"
    );
    late.stop().await;
}

#[actix_web::test]
async fn a_garbage_line_mid_stream_is_skipped_and_the_answer_completes() {
    let app = TestApp::spawn().await;
    let key = app.create_user("garbage").await;
    app.sim.control().set_malformed_after_tokens(Some(2));
    let mut body = chat_body("llama3.2", "one two three four five");
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let reply = app.chat_stream(&key, &body).await;
    let events = sse_events(&reply.text);
    assert_eq!(events.last().unwrap(), "[DONE]", "{}", reply.text);
    let usage = &events[events.len() - 2]["usage"];
    let stored = app.usage_of("garbage").await;
    assert_eq!(stored["records"][0]["status"], "ok");
    assert_eq!(stored["records"][0]["total_tokens"], usage["total_tokens"]);
}

#[actix_web::test]
async fn many_clients_leaving_at_once_are_all_billed_and_upstreams_closed() {
    let app = TestApp::spawn().await;
    let key = app
        .create_user_with(
            serde_json::json!({"user_id": "crowd", "limits": {"requests_per_minute": 1000}}),
        )
        .await;
    app.sim
        .control()
        .set_token_delay(Duration::from_millis(100));
    let words = (0..50)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut stream = app.open_stream(&key, &chat_body("llama3.2", &words)).await;
        stream.next_event().await.unwrap();
        streams.push(stream);
    }
    drop(streams);
    let control = app.sim.control().clone();
    app.eventually("all 20 upstream streams closed", async || {
        control.stats().streams_aborted_by_client == 20
    })
    .await;
    app.eventually("20 aborted rows", async || {
        let usage = app.usage_of("crowd").await;
        usage["totals"]["requests"] == 20
    })
    .await;
    let usage = app.usage_of("crowd").await;
    let records = usage["records"].as_array().unwrap();
    assert!(records.iter().all(|r| r["status"] == "aborted"));
    app.sim.control().set_token_delay(Duration::ZERO);
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "next")).await.status,
        200
    );
}

#[actix_web::test]
async fn a_graceful_stop_lets_a_stream_finish_and_keeps_its_row() {
    let mut app = TestApp::spawn().await;
    let key = app.create_user("grace").await;
    app.sim.control().set_token_delay(Duration::from_millis(50));
    let mut stream = app
        .open_stream(&key, &chat_body("llama3.2", "a b c d e f g h i j"))
        .await;
    stream.next_event().await.unwrap();
    let reader = actix_web::rt::spawn(async move {
        let mut last = serde_json::Value::Null;
        while let Some(event) = stream.next_event().await {
            last = event;
        }
        last
    });
    app.stop_server().await;
    assert_eq!(
        reader.await.unwrap(),
        "[DONE]",
        "the in-flight stream was allowed to finish"
    );
    let app = app.restart().await;
    let usage = app.usage_of("grace").await;
    assert_eq!(usage["records"][0]["status"], "ok");
}
