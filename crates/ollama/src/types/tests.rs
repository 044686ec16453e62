use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::test_support::{fixture_bytes, ndjson_lines, recorded};

/// Parses `bytes` as `T`, writes it back, and checks that nothing the server sent was lost or
/// changed: every recorded field is modelled, so the JSON must come back identical (compared
/// as values, after going through text so that `f32` vectors compare by their printed form).
fn assert_round_trips<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> T {
    let original: Value = serde_json::from_slice(bytes).unwrap();
    let parsed: T = serde_json::from_slice(bytes).unwrap();
    let written: Value = serde_json::from_slice(&serde_json::to_vec(&parsed).unwrap()).unwrap();
    assert_eq!(written, original);
    parsed
}

#[test]
fn every_recorded_chat_stream_line_round_trips() {
    for name in [
        "chat-stream-stop.httprr",
        "chat-stream-length.httprr",
        "chat-format-json.httprr",
        "chat-format-jsonschema.httprr",
    ] {
        let exchange = recorded(name);
        assert_eq!(exchange.status, 200);
        let lines = ndjson_lines(&exchange.response_body);
        assert!(lines.len() > 2, "{name}");
        let parsed: Vec<ChatResponse> = lines.iter().map(|l| assert_round_trips(l)).collect();
        let (last, deltas) = parsed.split_last().unwrap();
        assert!(
            deltas
                .iter()
                .all(|line| !line.done && line.eval_count.is_none())
        );
        assert!(last.done, "{name}");
        assert!(last.prompt_eval_count.is_some() && last.eval_count.is_some());
        assert_eq!(last.message.as_ref().unwrap().role, "assistant");
    }
}

#[test]
fn recorded_stream_finish_reasons_are_read() {
    let last = |name| {
        let lines = ndjson_lines(&recorded(name).response_body);
        serde_json::from_slice::<ChatResponse>(lines.last().unwrap()).unwrap()
    };
    let stop = last("chat-stream-stop.httprr");
    assert_eq!(stop.done_reason.as_deref(), Some("stop"));
    assert_eq!(
        (stop.prompt_eval_count, stop.eval_count),
        (Some(16), Some(22))
    );
    let length = last("chat-stream-length.httprr");
    assert_eq!(length.done_reason.as_deref(), Some("length"));
    assert_eq!(length.eval_count, Some(50));
}

#[test]
fn recorded_generate_bodies_round_trip() {
    let whole = recorded("generate-nonstream.httprr");
    let response: GenerateResponse = assert_round_trips(&whole.response_body);
    assert!(response.done && response.response.starts_with("Hello there!"));
    assert_eq!(response.context.as_ref().map(Vec::len), Some(78));
    assert_eq!(
        (response.prompt_eval_count, response.eval_count),
        (Some(15), Some(65))
    );

    let lines = ndjson_lines(&recorded("generate-stream.httprr").response_body);
    let parsed: Vec<GenerateResponse> = lines.iter().map(|l| assert_round_trips(l)).collect();
    let last = parsed.last().unwrap();
    assert!(last.done && last.context.is_some() && last.done_reason.is_some());
    assert!(parsed[..parsed.len() - 1].iter().all(|line| !line.done));
}

#[test]
fn recorded_embedding_round_trips_as_f32() {
    let exchange = recorded("embed.httprr");
    let response: EmbedResponse = assert_round_trips(&exchange.response_body);
    assert_eq!(response.model, "nomic-embed-text");
    assert_eq!(response.embeddings.len(), 1);
    assert_eq!(response.embeddings[0].len(), 768);
    assert_eq!(response.prompt_eval_count, Some(2));
}

#[test]
fn recorded_error_body_is_not_a_response() {
    let exchange = recorded("chat-error-400-no-tools.httprr");
    assert_eq!(exchange.status, 400);
    assert_eq!(
        crate::error::error_message(&exchange.response_body),
        "registry.ollama.ai/library/gemma3:1b does not support tools"
    );
}

#[test]
fn semantic_kernel_non_stream_chat_round_trips() {
    let response: ChatResponse = assert_round_trips(&fixture_bytes("sk-chat-nonstream.json"));
    assert_eq!(
        response.message.unwrap().content,
        "This is test completion response"
    );
    assert_eq!(
        (response.prompt_eval_count, response.eval_count),
        (Some(38), Some(45))
    );
}

#[test]
fn tool_call_of_2024_without_id_or_index_round_trips() {
    let response: ChatResponse =
        assert_round_trips(&fixture_bytes("sk-chat-nonstream-toolcall.json"));
    let message = response.message.unwrap();
    assert_eq!(message.content, "");
    let calls = message.tool_calls.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, None);
    assert_eq!(calls[0].function.index, None);
    assert_eq!(calls[0].function.name, "TestPlugin_TestFunction");
    assert_eq!(
        calls[0].function.arguments,
        json!({"testInput": "fake-text"})
    );
}

#[test]
fn current_tool_call_shape_round_trips() {
    let line = br#"{"model":"m","created_at":"2026-03-03T10:00:00Z","message":{"role":"assistant","content":"","thinking":"Need weather.","tool_calls":[{"id":"call_mo1wm122","function":{"index":0,"name":"getWeather","arguments":{"location":"San Francisco, CA"}}}]},"done":false}"#;
    let response: ChatResponse = assert_round_trips(line);
    let call = &response.message.unwrap().tool_calls.unwrap()[0];
    assert_eq!(call.id.as_deref(), Some("call_mo1wm122"));
    assert_eq!(call.function.index, Some(0));
}

#[test]
fn recorded_requests_parse_and_keep_their_fields() {
    for name in [
        "chat-stream-stop.httprr",
        "chat-stream-length.httprr",
        "chat-format-json.httprr",
        "chat-format-jsonschema.httprr",
        "chat-error-400-no-tools.httprr",
    ] {
        let body = recorded(name).request_body;
        assert_round_trips::<ChatRequest>(&body);
    }
    assert_round_trips::<EmbedRequest>(&recorded("embed.httprr").request_body);
    // langchaingo also sends `template`, which this client does not model; everything else
    // must survive.
    for name in ["generate-nonstream.httprr", "generate-stream.httprr"] {
        let body = recorded(name).request_body;
        let mut original: Value = serde_json::from_slice(&body).unwrap();
        original.as_object_mut().unwrap().remove("template");
        let parsed: GenerateRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), original);
    }
}

#[test]
fn null_and_missing_fields_fall_back_to_defaults() {
    let line = br#"{"model":null,"created_at":null,"message":{"role":"assistant","content":null,"images":null,"tool_calls":null},"done":null,"done_reason":null,"eval_count":null}"#;
    let response: ChatResponse = serde_json::from_slice(line).unwrap();
    assert_eq!(response.model, "");
    assert!(!response.done);
    let message = response.message.unwrap();
    assert_eq!((message.content.as_str(), message.images), ("", None));

    let empty: ChatResponse = serde_json::from_slice(b"{}").unwrap();
    assert_eq!(empty, ChatResponse::default());

    let tags: TagsResponse = serde_json::from_slice(br#"{"models":null}"#).unwrap();
    assert!(tags.models.is_empty());
    let embed: EmbedResponse = serde_json::from_slice(br#"{"embeddings":null}"#).unwrap();
    assert!(embed.embeddings.is_empty());
    let version: VersionResponse = serde_json::from_slice(br#"{"version":null}"#).unwrap();
    assert_eq!(version.version, "");
}

#[test]
fn unknown_fields_are_ignored() {
    let line = br#"{"model":"m","created_at":"t","remote_model":"x","remote_host":"h","logprobs":[{"token":"a"}],"message":{"role":"assistant","content":"a","future":1},"done":false}"#;
    let response: ChatResponse = serde_json::from_slice(line).unwrap();
    assert_eq!(response.message.unwrap().content, "a");
}

#[test]
fn tags_and_show_documented_shapes_parse() {
    let tags: TagsResponse = serde_json::from_value(json!({"models": [{
        "name": "llama3.2:latest", "model": "llama3.2:latest",
        "modified_at": "2025-05-04T17:37:44.706015396-07:00", "size": 2019393189u64,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                    "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
        "capabilities": ["completion", "tools"]
    }]}))
    .unwrap();
    let model = &tags.models[0];
    assert_eq!(model.size, Some(2019393189));
    assert_eq!(
        model
            .details
            .as_ref()
            .unwrap()
            .quantization_level
            .as_deref(),
        Some("Q4_K_M")
    );

    let show: ShowResponse = serde_json::from_value(json!({
        "license": "L", "modelfile": "FROM x", "parameters": "stop \"<|eot|>\"", "template": "{{ .Prompt }}",
        "details": {"family": "llava", "context_length": 4096},
        "model_info": {"llama.context_length": 8192}, "capabilities": ["completion", "vision"],
        "modified_at": "2025-01-01T00:00:00Z", "tensors": []
    }))
    .unwrap();
    assert!(show.capabilities.unwrap().iter().any(|c| c == "vision"));
    assert_eq!(show.model_info.unwrap()["llama.context_length"], 8192);
}

#[test]
fn chat_body_forces_stream_and_keeps_everything_else() {
    let mut options = Map::new();
    options.insert("num_predict".into(), json!(256));
    options.insert("stop".into(), json!(["\n\nUser:"]));
    options.insert("custom_knob".into(), json!({"nested": true}));
    let request = ChatRequest {
        model: "llava:7b".into(),
        messages: vec![Message {
            role: "user".into(),
            content: "What is this?".into(),
            images: Some(vec!["iVBORw0KGgo=".into()]),
            ..Default::default()
        }],
        tools: Some(vec![json!({"type": "function", "function": {"name": "f"}})]),
        format: Some(json!("json")),
        options: Some(options),
        stream: Some(false),
        keep_alive: Some(json!("5m")),
        think: Some(json!("high")),
    };
    for stream in [true, false] {
        let mut expected = serde_json::to_value(&request).unwrap();
        expected["stream"] = json!(stream);
        assert_eq!(
            serde_json::to_value(ChatBody::new(&request, stream)).unwrap(),
            expected
        );
    }

    let minimal = ChatRequest {
        model: "m".into(),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(ChatBody::new(&minimal, true)).unwrap(),
        json!({"model": "m", "messages": [], "stream": true})
    );
}

#[test]
fn generate_body_forces_stream_and_keeps_everything_else() {
    let request = GenerateRequest {
        model: "m".into(),
        prompt: "def f(".into(),
        suffix: Some("return x".into()),
        images: Some(vec!["AA==".into()]),
        system: Some("terse".into()),
        format: Some(json!({"type": "object"})),
        options: Some(Map::from_iter([("seed".to_owned(), json!(42))])),
        stream: None,
        raw: Some(true),
        keep_alive: Some(json!(0)),
        think: Some(json!(false)),
    };
    let mut expected = serde_json::to_value(&request).unwrap();
    expected["stream"] = json!(true);
    assert_eq!(
        serde_json::to_value(GenerateBody::new(&request, true)).unwrap(),
        expected
    );
}

#[test]
fn recorded_chat_requests_are_sent_as_they_were_recorded() {
    for name in ["chat-stream-stop.httprr", "chat-format-jsonschema.httprr"] {
        let exchange = recorded(name);
        let request: ChatRequest = serde_json::from_slice(&exchange.request_body).unwrap();
        let body = ChatBody::new(&request, request.stream.unwrap_or(true));
        let sent = serde_json::to_value(&body).unwrap();
        let mut original: Value = serde_json::from_slice(&exchange.request_body).unwrap();
        // Left out, `stream` means true to Ollama; the client always says it.
        original
            .as_object_mut()
            .unwrap()
            .entry("stream")
            .or_insert(json!(true));
        assert_eq!(sent, original, "{name}");
    }
}

#[test]
fn a_chat_request_estimates_its_prompt_and_takes_a_budget() {
    let mut request = ChatRequest {
        model: "m".into(),
        messages: vec![
            Message {
                role: "user".into(),
                content: "12345678".into(),
                images: Some(vec!["A".repeat(4000)]),
                ..Message::default()
            },
            Message {
                role: "assistant".into(),
                thinking: Some("abcd".into()),
                tool_calls: Some(vec![ToolCall {
                    id: None,
                    function: ToolCallFunction {
                        index: None,
                        name: "f".into(),
                        arguments: json!({"a": 1}),
                    },
                }]),
                ..Message::default()
            },
        ],
        tools: Some(vec![json!({"n": "x"})]),
        ..ChatRequest::default()
    };
    // 8 + 4 + "f" 1 + `{"a":1}` 7 + `[{"n":"x"}]` 11 = 31 bytes, images left out.
    assert_eq!(request.estimated_prompt_tokens(), 8);
    request.set_num_predict(5);
    request.set_num_predict(6);
    assert_eq!(
        request.options,
        Some(json!({"num_predict": 6}).as_object().unwrap().clone())
    );
}
