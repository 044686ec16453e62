use std::time::Duration;

use aiproxy_e2e::{TestApp, chat_body, sse_events};
use aiproxy_ollama_sim::SimEndpoint;
use serde_json::json;

#[actix_web::test]
async fn a_stream_has_openai_chunks_role_first_finish_last_then_done() {
    let app = TestApp::spawn().await;
    let key = app.create_user("sam").await;
    let reply = app
        .chat_stream(&key, &chat_body("llama3.2", "tell me a story"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&reply.text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = &events[..events.len() - 1];
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks[1..]
            .iter()
            .all(|c| c["choices"][0]["delta"].get("role").is_none())
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage without include_usage"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("tell me a story"), "{text}");

    let sent = app.sim.control().last_request(SimEndpoint::Chat).unwrap();
    assert_eq!(sent["stream"], true);
    let usage = app.usage_of("sam").await;
    assert_eq!(usage["records"][0]["status"], "ok");
    assert!(usage["records"][0]["completion_tokens"].as_u64().unwrap() > 0);
}

#[actix_web::test]
async fn include_usage_adds_a_final_usage_chunk_and_nulls_elsewhere() {
    let app = TestApp::spawn().await;
    let key = app.create_user("uma").await;
    let mut body = chat_body("llama3.2", "count the words here");
    body["stream_options"] = json!({"include_usage": true});
    let reply = app.chat_stream(&key, &body).await;
    let events = sse_events(&reply.text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage_chunk = &events[events.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = &usage_chunk["usage"];
    let total = usage["total_tokens"].as_u64().unwrap();
    assert_eq!(
        total,
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    for chunk in &events[..events.len() - 2] {
        assert!(
            chunk["usage"].is_null() && chunk.get("usage").is_some(),
            "{chunk}"
        );
    }
    // What the client was told is exactly what was stored.
    let stored = app.usage_of("uma").await;
    assert_eq!(stored["totals"]["total_tokens"].as_u64(), Some(total));
}

#[actix_web::test]
async fn tokens_are_forwarded_as_they_arrive() {
    let app = TestApp::spawn().await;
    let key = app.create_user("tim").await;
    app.sim
        .control()
        .set_token_delay(Duration::from_millis(300));
    let mut stream = app
        .open_stream(&key, &chat_body("llama3.2", "a b c d e f g h"))
        .await;
    assert_eq!(stream.status(), 200);
    let first = stream.next_event().await.unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    // The first token reached us while Ollama is still generating the rest.
    let stats = app.sim.control().stats();
    assert_eq!(stats.streams_completed, 0);
    assert_eq!(stats.open_streams, 1);
    app.sim.control().set_token_delay(Duration::ZERO);
    let mut last = first;
    while let Some(event) = stream.next_event().await {
        last = event;
    }
    assert_eq!(last, "[DONE]");
}

#[actix_web::test]
async fn a_client_that_disconnects_stops_ollama_and_is_billed_as_aborted() {
    let app = TestApp::spawn().await;
    let key = app.create_user("ada").await;
    app.sim
        .control()
        .set_token_delay(Duration::from_millis(100));
    let mut stream = app
        .open_stream(
            &key,
            &chat_body(
                "llama3.2",
                "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20",
            ),
        )
        .await;
    stream.next_event().await.unwrap();
    stream.next_event().await.unwrap();
    drop(stream);
    let control = app.sim.control().clone();
    app.eventually("the simulator sees the client go away", async || {
        control.stats().streams_aborted_by_client == 1
    })
    .await;
    app.eventually("an aborted usage row", async || {
        let usage = app.usage_of("ada").await;
        usage["records"][0]["status"] == "aborted"
    })
    .await;
    let usage = app.usage_of("ada").await;
    assert!(usage["records"][0]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[actix_web::test]
async fn an_error_mid_stream_becomes_a_final_error_event() {
    let app = TestApp::spawn().await;
    let key = app.create_user("eve").await;
    app.sim.control().set_error_after_tokens(Some(2));
    let reply = app
        .chat_stream(&key, &chat_body("llama3.2", "one two three four five"))
        .await;
    assert_eq!(reply.status, 200);
    let events = sse_events(&reply.text);
    let last = events.last().unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{}", reply.text);
    assert!(last["error"]["message"].as_str().unwrap().contains("error"));
    let usage = app.usage_of("eve").await;
    assert_eq!(usage["records"][0]["status"], "error");
    // The next request is served normally.
    app.sim.control().clear_faults();
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
}

#[actix_web::test]
async fn errors_before_the_stream_keep_their_status() {
    let app = TestApp::spawn().await;
    let key = app.create_user("sue").await;
    let reply = app.chat_stream(&key, &chat_body("nope", "hi")).await;
    assert_eq!(reply.expect_error(404)["code"], "model_not_found");
    app.sim.control().fail_with(
        503,
        "server busy, please try again.  maximum pending requests exceeded",
    );
    let busy = app.chat_stream(&key, &chat_body("llama3.2", "hi")).await;
    busy.expect_error(503);
    assert!(busy.header("retry-after").is_some());
}

#[actix_web::test]
async fn ollama_that_never_answers_is_a_504() {
    let app = TestApp::spawn_with(|s| s.ollama_response_timeout_secs = 1).await;
    let key = app.create_user("slow").await;
    app.sim.control().set_hang(true);
    let reply = app.chat(&key, &chat_body("llama3.2", "hi")).await;
    assert_eq!(reply.expect_error(504)["code"], "upstream_timeout");
    let streamed = app.chat_stream(&key, &chat_body("llama3.2", "hi")).await;
    streamed.expect_error(504);
    app.sim.control().set_hang(false);
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
}

#[actix_web::test]
async fn a_stream_that_stalls_ends_with_a_timeout_event_and_an_error_row() {
    let app = TestApp::spawn_with(|s| s.ollama_idle_timeout_secs = 1).await;
    let key = app.create_user("stall").await;
    app.sim.control().set_stall_after_tokens(Some(2));
    let reply = app
        .chat_stream(&key, &chat_body("llama3.2", "one two three four"))
        .await;
    assert_eq!(reply.status, 200);
    let events = sse_events(&reply.text);
    let last = events.last().unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{}", reply.text);
    let usage = app.usage_of("stall").await;
    assert_eq!(usage["records"][0]["status"], "error");
    assert!(usage["records"][0]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[actix_web::test]
async fn a_stream_cut_by_ollama_ends_with_an_error_event() {
    let app = TestApp::spawn().await;
    let key = app.create_user("cut").await;
    app.sim.control().set_close_after_tokens(Some(2));
    let reply = app
        .chat_stream(&key, &chat_body("llama3.2", "one two three four"))
        .await;
    let events = sse_events(&reply.text);
    assert_eq!(
        events.last().unwrap()["error"]["code"],
        "upstream_interrupted",
        "{}",
        reply.text
    );
    assert!(!reply.text.contains("[DONE]"));
    app.sim.control().clear_faults();
    assert_eq!(
        app.chat(&key, &chat_body("llama3.2", "hi")).await.status,
        200
    );
}

#[actix_web::test]
async fn ollama_errors_pass_through_with_their_message() {
    let app = TestApp::spawn().await;
    let key = app.create_user("err").await;
    app.sim.control().fail_with(500, "model runner crashed");
    let reply = app.chat(&key, &chat_body("llama3.2", "hi")).await;
    let error = reply.expect_error(500);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("model runner crashed")
    );
    app.sim.control().clear_faults();
    // Tools on a model without tool support: Ollama's 400 comes through as a 400.
    let mut body = chat_body("moondream", "hi");
    body["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let refused = app.chat(&key, &body).await;
    assert!(
        refused.expect_error(400)["message"]
            .as_str()
            .unwrap()
            .contains("does not support tools")
    );
}
