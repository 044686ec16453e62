//! Ollama's OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings` and `/v1/models`, as Ollama's middleware answers them.

use aiproxy_ollama_sim::{
    MALFORMED_EVENT, MODEL_ERROR_MESSAGE, SimEndpoint, embedding_vector, prompt_tokens_for_chat,
};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::client::{get, post, send, start};

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "llama3.2", "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": content}
    ], "stream": stream})
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[actix_rt::test]
async fn chat_completions_answer_one_object_with_native_usage() {
    let sim = start().await;
    let response = post(&sim, "/v1/chat/completions", &chat("Hi there", false)).await;
    assert_eq!(
        (response.status, response.content_type()),
        (200, "application/json")
    );
    assert!(
        response.text().ends_with("}\n"),
        "json.Encoder adds a newline"
    );
    let body = response.json();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].is_i64());
    assert_eq!(body["model"], "llama3.2");
    assert_eq!(body["system_fingerprint"], "fp_ollama");
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": "Echo: Hi there"}, "finish_reason": "stop"}])
    );
    // The native rule on the translated messages: (1 + 2) + (1 + 2).
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9})
    );
    assert_eq!(
        sim.control().stats().requests_to(SimEndpoint::OpenAiChat),
        1
    );
    assert_eq!(
        sim.control().last_request(SimEndpoint::OpenAiChat),
        Some(chat("Hi there", false))
    );
    assert_eq!(sim.control().loaded_models()[0].name, "llama3.2:latest");
}

#[actix_rt::test]
async fn chat_completion_streams_follow_ollamas_current_chunk_sequence() {
    let sim = start().await;
    let mut request = chat("one two", true);
    request["stream_options"] = json!({"include_usage": true});
    let response = post(&sim, "/v1/chat/completions", &request).await;
    assert_eq!(response.content_type(), "text/event-stream");
    assert!(response.chunked && response.complete);
    assert!(response.events().iter().all(|(name, _)| name.is_none()));
    let chunks = response.event_data(true);
    assert_eq!(chunks.len(), 3 + 1 + 1);
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(
            chunk["created"], chunks[0]["created"],
            "one created per stream"
        );
        assert!(chunk.get("usage").is_none() || chunk["choices"] == json!([]));
    }
    assert_eq!(
        chunks[0]["choices"][0],
        json!({"index": 0, "delta": {"role": "assistant", "content": "Echo:"}, "finish_reason": null})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": " one"}));
    assert_eq!(
        chunks[3]["choices"],
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    );
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": 3 + 3, "completion_tokens": 3, "total_tokens": 9})
    );

    // Without include_usage there is no usage chunk.
    let plain = post(&sim, "/v1/chat/completions", &chat("one", true)).await;
    let chunks = plain.event_data(true);
    assert_eq!(chunks.len(), 2 + 1);
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()));
}

#[actix_rt::test]
async fn chat_completion_tool_calls_come_whole_with_json_string_arguments() {
    let sim = start().await;
    let mut request = chat("Weather in Oslo?", false);
    request["tools"] = weather_tools();
    let body = post(&sim, "/v1/chat/completions", &request).await.json();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["index"], 0);
    assert_eq!(call["type"], "function");
    assert_eq!(
        call["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"})
    );
    assert_eq!(body["choices"][0]["message"]["content"], "");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    request["stream"] = json!(true);
    let chunks = post(&sim, "/v1/chat/completions", &request)
        .await
        .event_data(true);
    assert_eq!(chunks.len(), 2);
    let delta = &chunks[0]["choices"][0]["delta"];
    assert_eq!(delta["role"], "assistant");
    assert_eq!(delta["content"], "");
    assert_eq!(delta["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "tool_calls");
}

#[actix_rt::test]
async fn max_tokens_becomes_num_predict_and_max_completion_tokens_is_ignored() {
    let sim = start().await;
    let mut request = chat("one two three", false);
    request["max_tokens"] = json!(2);
    let body = post(&sim, "/v1/chat/completions", &request).await.json();
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: one");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);

    let mut ignored = chat("one two three", false);
    ignored["max_completion_tokens"] = json!(1);
    let body = post(&sim, "/v1/chat/completions", &ignored).await.json();
    assert_eq!(
        body["usage"]["completion_tokens"], 4,
        "Ollama has no such field"
    );
}

#[actix_rt::test]
async fn openai_errors_keep_the_native_status_in_openais_shape() {
    let sim = start().await;
    let mut missing = chat("hi", false);
    missing["model"] = json!("mistral");
    let response = post(&sim, "/v1/chat/completions", &missing).await;
    assert_eq!(
        (response.status, response.content_type()),
        (404, "application/json")
    );
    assert_eq!(
        response.json(),
        json!({"error": {"message": "model 'mistral' not found", "type": "not_found_error", "param": null, "code": null}})
    );

    let empty = post(
        &sim,
        "/v1/chat/completions",
        &json!({"model": "llama3.2", "messages": []}),
    )
    .await;
    assert_eq!(
        (empty.status, empty.content_type()),
        (400, "application/json; charset=utf-8")
    );
    assert_eq!(
        empty.json()["error"]["message"],
        "[] is too short - 'messages'"
    );
    assert_eq!(empty.json()["error"]["type"], "invalid_request_error");

    let blank = send(&sim, "POST", "/v1/chat/completions", Some("")).await;
    assert_eq!(
        (blank.status, blank.json()["error"]["message"].clone()),
        (400, json!("EOF"))
    );

    let mut tools = chat("hi", false);
    tools["model"] = json!("moondream");
    tools["tools"] = weather_tools();
    let refused = post(&sim, "/v1/chat/completions", &tools).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json()["error"]["message"],
        "registry.ollama.ai/library/moondream:latest does not support tools"
    );

    let mut image = chat("x", false);
    image["messages"][1]["content"] =
        json!([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]);
    let refused = post(&sim, "/v1/chat/completions", &image).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("image URLs are not currently supported")
    );

    sim.control().fail_with(503, "server busy");
    let busy = post(&sim, "/v1/chat/completions", &chat("hi", false)).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.json()["error"]["type"], "api_error");
}

#[actix_rt::test]
async fn stream_faults_show_as_ollamas_layer_shows_them() {
    let sim = start().await;
    sim.control().set_error_after_tokens(Some(1));
    let errored = post(&sim, "/v1/chat/completions", &chat("one two", true)).await;
    assert_eq!(errored.status, 200);
    let chunks = errored.event_data(false);
    assert_eq!(
        chunks.len(),
        2,
        "one token, then the error line as an empty chunk"
    );
    assert_eq!(chunks[1]["model"], "");
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": ""}));
    assert!(!errored.text().contains("[DONE]"));

    sim.control().set_error_after_tokens(Some(0));
    let failed = post(&sim, "/v1/chat/completions", &chat("one", true)).await;
    assert_eq!(
        (failed.status, failed.content_type()),
        (500, "application/json")
    );
    assert_eq!(failed.json()["error"]["message"], MODEL_ERROR_MESSAGE);

    sim.control().clear_faults();
    sim.control().set_malformed_after_tokens(Some(1));
    let broken = post(&sim, "/v1/chat/completions", &chat("one", true)).await;
    assert!(
        broken
            .text()
            .contains(std::str::from_utf8(MALFORMED_EVENT).unwrap())
    );

    sim.control().clear_faults();
    sim.control().set_close_after_tokens(Some(1));
    let cut = post(
        &sim,
        "/v1/completions",
        &json!({"model": "llama3.2", "prompt": "a b", "stream": true}),
    )
    .await;
    assert!(cut.chunked && !cut.complete);
}

#[actix_rt::test]
async fn completions_stream_text_chunks_and_answer_objects() {
    let sim = start().await;
    let request = json!({"model": "llama3.2", "prompt": "Say hi", "stream": true,
                         "stream_options": {"include_usage": true}});
    let chunks = post(&sim, "/v1/completions", &request)
        .await
        .event_data(true);
    assert_eq!(chunks.len(), 3 + 1 + 1);
    for chunk in &chunks[..4] {
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(
            chunk["usage"],
            json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        );
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"text": "Echo:", "index": 0, "finish_reason": null}])
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );

    let whole = post(
        &sim,
        "/v1/completions",
        &json!({"model": "llama3.2", "prompt": "Say hi", "max_tokens": 1}),
    )
    .await;
    let body = whole.json();
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(
        body["choices"],
        json!([{"text": "Echo:", "index": 0, "finish_reason": "length"}])
    );
    assert_eq!(body["usage"]["completion_tokens"], 1);

    let bad_stop = post(
        &sim,
        "/v1/completions",
        &json!({"model": "llama3.2", "prompt": "x", "stop": [1]}),
    )
    .await;
    assert_eq!(bad_stop.status, 400);
    assert_eq!(
        bad_stop.json()["error"]["message"],
        "invalid type for 'stop' field: float64"
    );
}

#[actix_rt::test]
async fn embeddings_answer_floats_or_base64_with_prompt_usage() {
    let sim = start().await;
    let body = post(
        &sim,
        "/v1/embeddings",
        &json!({"model": "nomic-embed-text", "input": ["Hello world", "x"]}),
    )
    .await
    .json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "nomic-embed-text");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["data"][0]["object"], "embedding");
    let vector: Vec<f32> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(vector, embedding_vector("Hello world", 768));

    let encoded = post(
        &sim,
        "/v1/embeddings",
        &json!({"model": "nomic-embed-text", "input": "Hello world", "encoding_format": "base64", "dimensions": 4}),
    )
    .await
    .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 4 * 4);

    let invalid = post(
        &sim,
        "/v1/embeddings",
        &json!({"model": "nomic-embed-text", "input": []}),
    )
    .await;
    assert_eq!(
        (invalid.status, invalid.json()["error"]["message"].clone()),
        (400, json!("invalid input"))
    );
    let missing = post(
        &sim,
        "/v1/embeddings",
        &json!({"model": "bert", "input": "x"}),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["type"], "not_found_error");
}

#[actix_rt::test]
async fn models_list_and_retrieve_the_installed_models() {
    let sim = start().await;
    let list = get(&sim, "/v1/models").await;
    assert_eq!(list.content_type(), "application/json");
    let body = list.json();
    assert_eq!(body["object"], "list");
    assert_eq!(
        body["data"][0],
        json!({"id": "llama3.2:latest", "object": "model", "created": 1_746_405_464, "owned_by": "library"})
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 3);

    let one = get(&sim, "/v1/models/moondream").await.json();
    assert_eq!(one["id"], "moondream");
    assert_eq!(one["owned_by"], "library");
    let missing = get(&sim, "/v1/models/mistral").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"]["message"],
        "model 'mistral:latest' not found"
    );

    sim.control().set_models(&[]).unwrap();
    assert_eq!(
        get(&sim, "/v1/models").await.json(),
        json!({"object": "list", "data": null})
    );
}

#[test]
fn the_prompt_rule_is_the_native_one_on_translated_messages() {
    // Two text parts become two native messages, each costing 1 + its words.
    let native = json!({"messages": [
        {"role": "user", "content": "What is"}, {"role": "user", "content": "this?"}
    ]});
    assert_eq!(prompt_tokens_for_chat(&native), 3 + 2);
}
