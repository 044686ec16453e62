//! Ollama's Anthropic-compatible Messages API: `POST /v1/messages`, whole and streamed.

use aiproxy_ollama_sim::{MODEL_ERROR_MESSAGE, SimEndpoint, anthropic_input_estimate};
use serde_json::{Value, json};

use crate::client::{RawResponse, post, start};

fn request(content: &str, stream: bool) -> Value {
    json!({"model": "llama3.2", "max_tokens": 64, "system": "Be brief", "stream": stream,
           "messages": [{"role": "user", "content": content}]})
}

/// The named events; each `type` repeats the event name.
fn events(response: &RawResponse) -> Vec<(String, Value)> {
    response
        .events()
        .into_iter()
        .map(|(name, data)| {
            let name = name.expect("every Anthropic event is named");
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["type"], name);
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "Weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[actix_rt::test]
async fn a_message_carries_text_stop_reason_and_usage() {
    let sim = start().await;
    let response = post(&sim, "/v1/messages", &request("Hi there", false)).await;
    assert_eq!(
        (response.status, response.content_type()),
        (200, "application/json")
    );
    let body = response.json();
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() == 28, "{id}");
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "llama3.2");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Echo: Hi there"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body.get("stop_sequence").is_none(), "omitted when empty");
    // System (1 + 2) and user (1 + 2), three words out.
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 6, "output_tokens": 3})
    );
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::Messages), 1);
}

#[actix_rt::test]
async fn a_streamed_message_follows_anthropics_event_sequence() {
    let sim = start().await;
    let body = request("one two", true);
    let response = post(&sim, "/v1/messages", &body).await;
    assert_eq!(response.content_type(), "text/event-stream");
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert!(response.chunked && response.complete);
    let events = events(&response);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let message = &events[0].1["message"];
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["model"], "llama3.2");
    // Ollama does not know the real count yet: it sends its estimate (a quarter of the text).
    assert_eq!(
        message["usage"],
        json!({"input_tokens": anthropic_input_estimate(&body), "output_tokens": 0})
    );
    assert_eq!(anthropic_input_estimate(&body), (8 + 4 + 7) / 4);
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        events[3].1,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " one"}})
    );
    assert_eq!(
        events[5].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[6].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
               "usage": {"input_tokens": 6, "output_tokens": 3}})
    );
}

#[actix_rt::test]
async fn tool_use_blocks_stream_whole_and_tool_results_go_back() {
    let sim = start().await;
    let mut body = request("Weather in Oslo?", true);
    body["tools"] = weather_tool();
    let events = events(&post(&sim, "/v1/messages", &body).await);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let block = &events[1].1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({}));
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Oslo\"}"})
    );
    assert_eq!(events[4].1["delta"]["stop_reason"], "tool_use");

    body["stream"] = json!(false);
    let whole = post(&sim, "/v1/messages", &body).await.json();
    let tool_use = &whole["content"][0];
    assert_eq!(tool_use["type"], "tool_use");
    assert_eq!(tool_use["input"], json!({"city": "Oslo"}));
    assert_eq!(whole["stop_reason"], "tool_use");
    assert_eq!(whole["content"].as_array().unwrap().len(), 1);

    let id = tool_use["id"].as_str().unwrap();
    let followup = json!({"model": "llama3.2", "max_tokens": 64, "tools": weather_tool(), "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "12 degrees"}]}
    ]});
    let answer = post(&sim, "/v1/messages", &followup).await.json();
    assert_eq!(answer["content"][0]["text"], "Echo: 12 degrees");
    assert_eq!(answer["stop_reason"], "end_turn");
}

#[actix_rt::test]
async fn max_tokens_and_stop_sequences_shape_the_reply() {
    let sim = start().await;
    let mut body = request("one two three", false);
    body["max_tokens"] = json!(2);
    let capped = post(&sim, "/v1/messages", &body).await.json();
    assert_eq!(capped["content"][0]["text"], "Echo: one");
    assert_eq!(capped["stop_reason"], "max_tokens");
    assert_eq!(capped["usage"]["output_tokens"], 2);

    let mut stopped = request("one two three", false);
    stopped["stop_sequences"] = json!(["two"]);
    let stopped = post(&sim, "/v1/messages", &stopped).await.json();
    assert_eq!(stopped["content"][0]["text"], "Echo: one");
    assert_eq!(
        stopped["stop_reason"], "end_turn",
        "Ollama reports a stop as end_turn"
    );

    // A model that cannot think ignores `thinking` here instead of refusing it.
    let mut thinking = request("hi", false);
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    assert_eq!(post(&sim, "/v1/messages", &thinking).await.status, 200);
}

#[actix_rt::test]
async fn anthropic_errors_use_anthropics_shape() {
    let sim = start().await;
    let mut missing = request("hi", false);
    missing["model"] = json!("mistral");
    let refused = post(&sim, "/v1/messages", &missing).await;
    assert_eq!(
        (refused.status, refused.content_type()),
        (404, "application/json")
    );
    let body = refused.json();
    assert_eq!(body["type"], "error");
    assert_eq!(
        body["error"],
        json!({"type": "not_found_error", "message": "model 'mistral' not found"})
    );
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));

    let mut no_budget = request("hi", false);
    no_budget["max_tokens"] = json!(0);
    let refused = post(&sim, "/v1/messages", &no_budget).await;
    assert_eq!(
        (refused.status, refused.content_type()),
        (400, "application/json; charset=utf-8")
    );
    assert_eq!(
        refused.json()["error"],
        json!({"type": "invalid_request_error", "message": "max_tokens is required and must be positive"})
    );

    sim.control().fail_with(503, "server busy");
    let busy = post(&sim, "/v1/messages", &request("hi", true)).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.json()["error"]["type"], "overloaded_error");
}

#[actix_rt::test]
async fn stream_faults_end_the_stream_as_ollama_does() {
    let sim = start().await;
    sim.control().set_error_after_tokens(Some(1));
    let cut = post(&sim, "/v1/messages", &request("one two", true)).await;
    assert_eq!(cut.status, 200);
    let events = events(&cut);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta"
        ]
    );

    sim.control().set_error_after_tokens(Some(0));
    let failed = post(&sim, "/v1/messages", &request("one two", true)).await;
    assert_eq!(failed.status, 500);
    assert_eq!(
        failed.json()["error"],
        json!({"type": "api_error", "message": MODEL_ERROR_MESSAGE})
    );

    sim.control().clear_faults();
    sim.control().set_close_after_tokens(Some(2));
    let closed = post(&sim, "/v1/messages", &request("one two", true)).await;
    assert!(closed.chunked && !closed.complete);
}
