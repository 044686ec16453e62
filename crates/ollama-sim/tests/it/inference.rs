//! `/api/chat` and `/api/generate`: the deterministic replies, streamed and not.

use aiproxy_ollama_sim::{SimEndpoint, prompt_tokens_for_chat};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::client::{assert_go_timestamp, eventually, post, start};

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

#[actix_rt::test]
async fn chat_streams_one_line_per_word_then_a_final_line() {
    let sim = start().await;
    let request = json!({"model": "llama3.2", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Count  from 1 to 5"}
    ]});
    let response = post(&sim, "/api/chat", &request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type(), "application/x-ndjson");
    assert!(response.chunked && response.complete);
    let lines = response.lines();
    let (last, tokens) = lines.split_last().unwrap();
    let contents: Vec<&str> = tokens
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Echo:", " Count", " from", " 1", " to", " 5"]);
    for token in tokens {
        assert_eq!(token["model"], "llama3.2");
        assert_eq!(token["done"], false);
        assert_eq!(token["message"]["role"], "assistant");
        assert_go_timestamp(&token["created_at"]);
        assert!(token.get("done_reason").is_none() && token.get("eval_count").is_none());
    }
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
    assert_eq!(
        (last["done"].clone(), last["done_reason"].clone()),
        (json!(true), json!("stop"))
    );
    assert_eq!(last["eval_count"], 6);
    assert_eq!(last["prompt_eval_count"], prompt_tokens_for_chat(&request));
    assert_eq!(last["prompt_eval_count"], 3 + 6);
    for metric in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(last[metric].as_u64().unwrap() > 0, "{metric}");
    }
    let stats = eventually(sim.control(), "stream bookkeeping", |s| s.open_streams == 0).await;
    assert_eq!(
        (
            stats.streams_started,
            stats.streams_completed,
            stats.streams_aborted_by_client
        ),
        (1, 1, 0)
    );
    assert_eq!(sim.control().last_request(SimEndpoint::Chat), Some(request));
}

#[actix_rt::test]
async fn chat_without_stream_answers_one_object_with_the_whole_reply() {
    let sim = start().await;
    let request =
        json!({"model": "llama3.2", "messages": user("Why is the sky <blue>?"), "stream": false});
    let response = post(&sim, "/api/chat", &request).await;
    assert_eq!(response.content_type(), "application/json; charset=utf-8");
    assert!(!response.chunked && response.complete);
    assert!(
        response.text().contains("\\u003cblue\\u003e"),
        "Go escapes HTML: {}",
        response.text()
    );
    let body = response.json();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "Echo: Why is the sky <blue>?"})
    );
    assert_eq!(body["done_reason"], "stop");
    assert_eq!(body["eval_count"], 6);
    assert_eq!(body["prompt_eval_count"], 6);
    assert_eq!(sim.control().stats().streams_started, 0);
}

#[actix_rt::test]
async fn num_predict_cuts_with_length_and_stop_sequences_cut_with_stop() {
    let sim = start().await;
    let capped = post(&sim, "/api/chat", &json!({"model": "llama3.2", "messages": user("one two three four"), "options": {"num_predict": 2}})).await;
    let lines = capped.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["done_reason"], "length");
    assert_eq!(lines[2]["eval_count"], 2);

    let stopped = post(&sim, "/api/chat", &json!({"model": "llama3.2", "messages": user("one two three"), "stream": false, "options": {"stop": ["three"]}})).await;
    let body = stopped.json();
    assert_eq!(body["message"]["content"], "Echo: one two");
    assert_eq!(body["done_reason"], "stop");
}

/// Ollama only clamps `num_predict` below 0 and its runner limits generation only when
/// `numPredict > 0`, so 0 (like -1) is no limit at all, not an empty answer.
#[actix_rt::test]
async fn num_predict_zero_or_negative_means_no_limit() {
    let sim = start().await;
    for limit in [0, -1, -2] {
        for path in ["/api/chat", "/api/generate"] {
            let body = json!({"model": "llama3.2", "messages": user("one two three"),
                "prompt": "one two three", "stream": false, "options": {"num_predict": limit}});
            let answer = post(&sim, path, &body).await.json();
            let text = answer["message"]["content"]
                .as_str()
                .or(answer["response"].as_str())
                .unwrap();
            assert_eq!(text, "Echo: one two three", "{path} num_predict {limit}");
            assert_eq!(answer["done_reason"], "stop");
            assert_eq!(answer["eval_count"], 4);
        }
    }
}

#[actix_rt::test]
async fn json_format_replies_concatenate_to_valid_json() {
    let sim = start().await;
    for format in [
        json!("json"),
        json!({"type": "object", "properties": {"echo": {"type": "string"}}}),
    ] {
        let response = post(
            &sim,
            "/api/chat",
            &json!({"model": "llama3.2", "messages": user("How many \"feet\"?"), "format": format}),
        )
        .await;
        let lines = response.lines();
        let text: String = lines
            .iter()
            .map(|l| l["message"]["content"].as_str().unwrap())
            .collect();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, json!({"echo": "How many \"feet\"?"}));
    }
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }}])
}

#[actix_rt::test]
async fn tools_produce_one_call_to_the_first_tool() {
    let sim = start().await;
    let request = json!({"model": "llama3.2", "messages": user("Weather in Tokyo?"), "tools": weather_tool()});
    let lines = post(&sim, "/api/chat", &request).await.lines();
    assert_eq!(lines.len(), 2);
    let message = &lines[0]["message"];
    assert_eq!(message["content"], "");
    let call = &message["tool_calls"][0];
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() == 13);
    assert_eq!(
        call["function"],
        json!({"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}})
    );
    assert_eq!(lines[1]["done_reason"], "stop");
    assert_eq!(lines[1]["eval_count"], 2);

    let whole = post(&sim, "/api/chat", &json!({"model": "llama3.2", "messages": user("Weather in Tokyo?"), "tools": weather_tool(), "stream": false})).await;
    let body = whole.json();
    assert_eq!(body["message"]["tool_calls"][0]["id"], id);
    assert_eq!(body["message"]["content"], "");

    let answered = json!({"model": "llama3.2", "tools": weather_tool(), "stream": false, "messages": [
        {"role": "user", "content": "Weather in Tokyo?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "11 degrees celsius", "tool_name": "get_weather"}
    ]});
    let body = post(&sim, "/api/chat", &answered).await.json();
    assert_eq!(body["message"]["content"], "Echo: 11 degrees celsius");
    assert!(body["message"].get("tool_calls").is_none());
}

#[actix_rt::test]
async fn vision_models_mention_images_and_others_ignore_them() {
    let sim = start().await;
    let messages =
        json!([{"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo=", "AAAA"]}]);
    let seen = post(
        &sim,
        "/api/chat",
        &json!({"model": "moondream", "messages": messages, "stream": false}),
    )
    .await;
    assert_eq!(
        seen.json()["message"]["content"],
        "I see 2 image(s). Echo: What is this?"
    );
    let blind = post(
        &sim,
        "/api/chat",
        &json!({"model": "llama3.2", "messages": messages, "stream": false}),
    )
    .await;
    assert_eq!(blind.json()["message"]["content"], "Echo: What is this?");
    let generated = post(
        &sim,
        "/api/generate",
        &json!({"model": "moondream", "prompt": "Describe", "images": ["AAAA"], "stream": false}),
    )
    .await;
    assert_eq!(
        generated.json()["response"],
        "I see 1 image(s). Echo: Describe"
    );
}

#[actix_rt::test]
async fn generate_streams_responses_and_ends_with_context() {
    let sim = start().await;
    let request = json!({"model": "llama3.2", "prompt": "Count from 1 to 5", "system": "Be brief"});
    let response = post(&sim, "/api/generate", &request).await;
    assert_eq!(response.content_type(), "application/x-ndjson");
    let lines = response.lines();
    let (last, tokens) = lines.split_last().unwrap();
    let text: String = tokens
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Echo: Count from 1 to 5");
    assert!(
        tokens
            .iter()
            .all(|l| l.get("context").is_none() && l["done"] == false)
    );
    assert_eq!(last["response"], "");
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 6 + 3);
    assert_eq!(last["eval_count"], 6);
    assert_eq!(last["context"].as_array().unwrap().len(), 9 + 6);

    let whole = post(
        &sim,
        "/api/generate",
        &json!({"model": "llama3.2", "prompt": "Hi", "stream": false, "raw": true}),
    )
    .await;
    let body = whole.json();
    assert_eq!(body["response"], "Echo: Hi");
    assert!(body.get("context").is_none(), "raw mode has no context");
    assert_eq!(whole.content_type(), "application/json; charset=utf-8");
}

#[actix_rt::test]
async fn awc_reads_the_stream_line_by_line() {
    let sim = start().await;
    let client = awc::Client::default();
    let mut response = client
        .post(format!("{}/api/chat", sim.base_url()))
        .send_json(&json!({"model": "llama3.2", "messages": user("a b")}))
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let mut buffer = Vec::new();
    while let Some(chunk) = response.next().await {
        buffer.extend_from_slice(&chunk.unwrap());
    }
    let lines: Vec<Value> = buffer
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["done"], true);
}

/// Every request field Ollama's `ChatRequest` and `GenerateRequest` take is accepted in the
/// shapes Ollama takes it.
#[actix_rt::test]
async fn every_field_ollama_takes_is_accepted() {
    let mut config = aiproxy_ollama_sim::SimConfig::default();
    config
        .select_models(&["llama3.2", "moondream", "qwen2.5-coder:0.5b"])
        .unwrap();
    let sim = crate::client::start_with(config).await;
    let options = json!({"temperature": 0.2, "top_k": 40, "top_p": 0.9, "min_p": 0.05,
        "num_ctx": 8192, "seed": 7, "repeat_penalty": 1.1, "stop": ["\n\n"], "num_predict": 64,
        "num_gpu": 1, "use_mmap": true, "unknown_option": "ignored"});
    let chat = json!({"model": "moondream", "stream": false, "keep_alive": "1m", "think": false,
    "truncate": true, "shift": false, "logprobs": true, "top_logprobs": 2, "options": options,
    "format": {"type": "object", "properties": {"echo": {"type": "string"}}},
    "messages": [
        {"role": "system", "content": "Describe images."},
        {"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}
    ]});
    let answer = post(&sim, "/api/chat", &chat).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["message"]["content"],
        "{\"echo\":\"What is this?\"}"
    );

    let history = json!({"model": "llama3.2", "stream": false, "keep_alive": 300,
    "tools": weather_tool(),
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "thinking": "", "tool_calls": [
            {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "12 degrees", "tool_name": "get_weather", "tool_call_id": "call_1"}
    ]});
    let answer = post(&sim, "/api/chat", &history).await.json();
    assert_eq!(answer["message"]["content"], "Echo: 12 degrees");

    let fill = json!({"model": "qwen2.5-coder:0.5b", "stream": false, "prompt": "def add(a, b):",
        "suffix": "return result", "system": "Complete code.", "context": [1, 2, 3],
        "format": "json", "options": {"num_predict": 32}, "keep_alive": "0s", "think": false});
    let answer = post(&sim, "/api/generate", &fill).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["prompt_eval_count"],
        (1 + 3) + (1 + 2) + 3,
        "prompt, system, context"
    );
    assert!(
        sim.control()
            .loaded_models()
            .iter()
            .all(|m| m.name != "qwen2.5-coder:0.5b"),
        "keep_alive 0 unloads after the answer"
    );

    let raw = json!({"model": "moondream", "prompt": "[INST] hi [/INST]", "raw": true,
        "images": ["AAAA"], "stream": false});
    let answer = post(&sim, "/api/generate", &raw).await.json();
    assert_eq!(
        answer["response"],
        "I see 1 image(s). Echo: [INST] hi [/INST]"
    );
    assert!(answer.get("context").is_none());
}
