//! Ollama's OpenAI Responses API: `POST /v1/responses`, whole and streamed.

use aiproxy_ollama_sim::SimEndpoint;
use serde_json::{Value, json};

use crate::client::{RawResponse, post, start};

fn request(input: Value, stream: bool) -> Value {
    json!({"model": "llama3.2", "instructions": "Be brief", "input": input, "stream": stream})
}

/// The named events of a Responses stream; checks that each `type` repeats the event name
/// and that sequence numbers count up from 0.
fn events(response: &RawResponse) -> Vec<(String, Value)> {
    let events: Vec<(String, Value)> = response
        .events()
        .into_iter()
        .map(|(name, data)| {
            let name = name.expect("every Responses event is named");
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect();
    for (index, (name, data)) in events.iter().enumerate() {
        assert_eq!(&data["type"], name);
        assert_eq!(data["sequence_number"], index);
    }
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[actix_rt::test]
async fn a_response_object_carries_the_output_and_usage() {
    let sim = start().await;
    let response = post(&sim, "/v1/responses", &request(json!("Hi there"), false)).await;
    assert_eq!(
        (response.status, response.content_type()),
        (200, "application/json")
    );
    let body = response.json();
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "llama3.2");
    assert_eq!(body["instructions"], "Be brief");
    assert!(body["created_at"].is_i64() && body["completed_at"].is_i64());
    assert_eq!(body["previous_response_id"], Value::Null);
    assert_eq!(body["store"], false);
    assert_eq!(body["temperature"], 1);
    assert_eq!(body["text"], json!({"format": {"type": "text"}}));
    let item = &body["output"][0];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["status"], "completed");
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        item["content"],
        json!([{"type": "output_text", "text": "Echo: Hi there", "annotations": [], "logprobs": []}])
    );
    // System (1 + 2) and user (1 + 2) messages, three words out.
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 6, "output_tokens": 3, "total_tokens": 9,
               "input_tokens_details": {"cached_tokens": 0},
               "output_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(sim.control().stats().requests_to(SimEndpoint::Responses), 1);
}

#[actix_rt::test]
async fn a_streamed_response_follows_ollamas_event_sequence() {
    let sim = start().await;
    let response = post(&sim, "/v1/responses", &request(json!("one two"), true)).await;
    assert_eq!(response.content_type(), "text/event-stream");
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert!(response.chunked && response.complete);
    let events = events(&response);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[0].1["response"]["output"], json!([]));
    assert_eq!(events[0].1["response"]["usage"], Value::Null);
    let deltas: String = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Echo: one two");
    assert_eq!(events[7].1["text"], "Echo: one two");
    let completed = &events[10].1["response"];
    assert_eq!(completed["status"], "completed");
    assert!(completed["completed_at"].is_i64());
    assert_eq!(
        completed["output"][0]["content"][0]["text"],
        "Echo: one two"
    );
    assert_eq!(completed["usage"]["input_tokens"], 3 + 3);
    assert_eq!(completed["usage"]["output_tokens"], 3);
}

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[actix_rt::test]
async fn tool_calls_become_function_call_items() {
    let sim = start().await;
    let mut body = request(json!("Weather in Oslo?"), false);
    body["tools"] = weather_tool();
    let whole = post(&sim, "/v1/responses", &body).await.json();
    let call = &whole["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], "{\"city\":\"Oslo\"}");
    assert!(call["call_id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(whole["tools"][0]["name"], "get_weather");
    assert_eq!(whole["tools"][0]["strict"], Value::Null);

    body["stream"] = json!(true);
    let streamed = post(&sim, "/v1/responses", &body).await;
    let events = events(&streamed);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[2].1["item"]["status"], "in_progress");
    assert_eq!(events[2].1["item"]["arguments"], "");
    assert_eq!(events[3].1["delta"], "{\"city\":\"Oslo\"}");
    let output = &events[6].1["response"]["output"];
    assert_eq!(output.as_array().unwrap().len(), 1);
    assert_eq!(output[0]["type"], "function_call");

    // The tool's answer goes back as a function_call_output item.
    let call_id = call["call_id"].as_str().unwrap();
    let followup = json!({"model": "llama3.2", "tools": weather_tool(), "input": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call_output", "call_id": call_id, "output": "12 degrees"}
    ]});
    let answer = post(&sim, "/v1/responses", &followup).await.json();
    assert_eq!(
        answer["output"][0]["content"][0]["text"],
        "Echo: 12 degrees"
    );
}

#[actix_rt::test]
async fn max_output_tokens_caps_and_unknown_fields_are_ignored() {
    let sim = start().await;
    let mut body = request(json!("one two three"), false);
    body["max_output_tokens"] = json!(2);
    body["previous_response_id"] = json!("resp_1");
    let answer = post(&sim, "/v1/responses", &body).await.json();
    assert_eq!(answer["output"][0]["content"][0]["text"], "Echo: one");
    assert_eq!(answer["usage"]["output_tokens"], 2);
    assert_eq!(answer["max_output_tokens"], 2);
    assert_eq!(
        answer["status"], "completed",
        "Ollama reports no incomplete status"
    );
}

#[actix_rt::test]
async fn responses_errors_use_openais_shape() {
    let sim = start().await;
    let mut missing = request(json!("hi"), false);
    missing["model"] = json!("mistral");
    let refused = post(&sim, "/v1/responses", &missing).await;
    assert_eq!(
        (refused.status, refused.content_type()),
        (404, "application/json")
    );
    assert_eq!(
        refused.json()["error"]["message"],
        "model 'mistral' not found"
    );

    let bad_item = post(
        &sim,
        "/v1/responses",
        &request(json!([{"type": "bogus"}]), false),
    )
    .await;
    assert_eq!(bad_item.status, 400);
    assert_eq!(
        bad_item.json()["error"]["message"],
        "input[0]: unknown input item type: \"bogus\""
    );
    let mut thinking = request(json!("hi"), false);
    thinking["reasoning"] = json!({"effort": "high"});
    let refused = post(&sim, "/v1/responses", &thinking).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json()["error"]["message"],
        "\"llama3.2\" does not support thinking"
    );
}

#[actix_rt::test]
async fn a_mid_stream_error_ends_the_stream_without_completion() {
    let sim = start().await;
    sim.control().set_error_after_tokens(Some(1));
    let response = post(&sim, "/v1/responses", &request(json!("one two"), true)).await;
    assert_eq!(response.status, 200);
    assert!(response.complete);
    let events = events(&response);
    assert_eq!(events.last().unwrap().0, "response.output_text.delta");
    assert!(!names(&events).contains(&"response.completed"));
    let stats = sim.control().stats();
    assert_eq!(stats.requests_to(SimEndpoint::Responses), 1);
}

#[actix_rt::test]
async fn an_empty_input_loads_the_model_and_completes_empty() {
    let sim = start().await;
    let body = json!({"model": "llama3.2", "input": "", "stream": true});
    let response = post(&sim, "/v1/responses", &body).await;
    let events = events(&response);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
    assert_eq!(events[2].1["response"]["output"], json!([]));
    assert_eq!(sim.control().loaded_models()[0].name, "llama3.2:latest");
}
