//! A thinking model (`qwen3:0.6b` from the catalog) thinks before it answers, on every route.

use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use serde_json::{Value, json};

use crate::client::{post, start_with};

async fn thinking_sim() -> OllamaSim {
    let mut config = SimConfig::default();
    config.select_models(&["qwen3:0.6b", "llama3.2"]).unwrap();
    start_with(config).await
}

fn chat(stream: bool) -> Value {
    json!({"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi there"}], "stream": stream})
}

#[actix_rt::test]
async fn native_answers_carry_thinking_before_the_content() {
    let sim = thinking_sim().await;
    let lines = post(&sim, "/api/chat", &chat(true)).await.lines();
    let thinking: String = lines
        .iter()
        .filter_map(|line| line["message"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "Considering: hi there");
    assert_eq!(
        lines[0]["message"],
        json!({"role": "assistant", "content": "", "thinking": "Considering:"})
    );
    assert_eq!(
        lines[3]["message"],
        json!({"role": "assistant", "content": "Echo:"})
    );
    let last = lines.last().unwrap();
    assert_eq!(
        last["eval_count"],
        3 + 3,
        "thinking words count as generated"
    );

    let whole = post(&sim, "/api/chat", &chat(false)).await.json();
    assert_eq!(whole["message"]["thinking"], "Considering: hi there");
    assert_eq!(whole["message"]["content"], "Echo: hi there");

    let mut quiet = chat(false);
    quiet["think"] = json!(false);
    let quiet = post(&sim, "/api/chat", &quiet).await.json();
    assert!(quiet["message"].get("thinking").is_none());
    assert_eq!(quiet["eval_count"], 3);

    let mut capped = chat(false);
    capped["options"] = json!({"num_predict": 2});
    let capped = post(&sim, "/api/chat", &capped).await.json();
    assert_eq!(capped["message"]["thinking"], "Considering: hi");
    assert_eq!(capped["message"]["content"], "");
    assert_eq!(capped["done_reason"], "length");

    let generated = post(
        &sim,
        "/api/generate",
        &json!({"model": "qwen3:0.6b", "prompt": "hi", "think": "high", "stream": false}),
    )
    .await
    .json();
    assert_eq!(generated["thinking"], "Considering: hi");
    assert_eq!(generated["response"], "Echo: hi");
}

#[actix_rt::test]
async fn openai_chat_carries_thinking_as_reasoning() {
    let sim = thinking_sim().await;
    let whole = post(&sim, "/v1/chat/completions", &chat(false))
        .await
        .json();
    let message = &whole["choices"][0]["message"];
    assert_eq!(message["reasoning"], "Considering: hi there");
    assert_eq!(message["content"], "Echo: hi there");
    let chunks = post(&sim, "/v1/chat/completions", &chat(true))
        .await
        .event_data(true);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "reasoning": "Considering:"})
    );
    assert_eq!(
        chunks[3]["choices"][0]["delta"],
        json!({"content": "Echo:"})
    );
}

#[actix_rt::test]
async fn responses_put_thinking_in_a_reasoning_item() {
    let sim = thinking_sim().await;
    let body = json!({"model": "qwen3:0.6b", "input": "hi there"});
    let whole = post(&sim, "/v1/responses", &body).await.json();
    let reasoning = &whole["output"][0];
    assert_eq!(reasoning["type"], "reasoning");
    assert_eq!(
        reasoning["summary"],
        json!([{"type": "summary_text", "text": "Considering: hi there"}])
    );
    assert_eq!(whole["output"][1]["content"][0]["text"], "Echo: hi there");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events: Vec<(String, Value)> = post(&sim, "/v1/responses", &streamed)
        .await
        .events()
        .into_iter()
        .map(|(name, data)| (name.unwrap(), serde_json::from_str(&data).unwrap()))
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        &names[..8],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.output_item.done"
        ]
    );
    assert_eq!(events[6].1["text"], "Considering: hi there");
    assert_eq!(
        events[8].1["output_index"], 1,
        "the message comes after the reasoning"
    );
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["output"][0]["type"], "reasoning");
    assert_eq!(completed["output"][1]["type"], "message");
}

#[actix_rt::test]
async fn anthropic_thinking_is_a_block_before_the_text() {
    let sim = thinking_sim().await;
    let body = json!({"model": "qwen3:0.6b", "max_tokens": 100,
                      "messages": [{"role": "user", "content": "hi there"}]});
    let whole = post(&sim, "/v1/messages", &body).await.json();
    assert_eq!(
        whole["content"],
        json!([{"type": "thinking", "thinking": "Considering: hi there"},
               {"type": "text", "text": "Echo: hi there"}])
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events: Vec<Value> = post(&sim, "/v1/messages", &streamed)
        .await
        .events()
        .into_iter()
        .map(|(_, data)| serde_json::from_str(&data).unwrap())
        .collect();
    assert_eq!(
        events[1],
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})
    );
    assert_eq!(
        events[2]["delta"],
        json!({"type": "thinking_delta", "thinking": "Considering:"})
    );
    assert_eq!(events[5], json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(events[6]["index"], 1);
    assert_eq!(events[6]["content_block"]["type"], "text");

    // `thinking: disabled` turns it off.
    let mut off = body.clone();
    off["thinking"] = json!({"type": "disabled"});
    let off = post(&sim, "/v1/messages", &off).await.json();
    assert_eq!(
        off["content"],
        json!([{"type": "text", "text": "Echo: hi there"}])
    );
}
