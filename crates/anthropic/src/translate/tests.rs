use serde_json::json;

use super::*;

/// Translates `body`; a body that does not even parse is an error on the field `body`.
fn translate(body: Value) -> Result<TranslatedMessages, InvalidRequest> {
    let request: MessagesRequest =
        serde_json::from_value(body).map_err(|err| InvalidRequest::new("body", err.to_string()))?;
    messages_request_to_ollama(request)
}

fn field_of(body: Value) -> String {
    match translate(body) {
        Err(error) => error.field,
        Ok(translated) => panic!("expected a 400, got {translated:?}"),
    }
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn weather_tool() -> Value {
    json!({"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

#[test]
fn a_plain_request_becomes_a_chat_request() {
    let translated = translate(json!({
        "model": "qwen3:8b", "max_tokens": 256, "stream": true,
        "system": "Be terse.",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": "u"}, "service_tier": "auto"
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&translated.request).unwrap(),
        json!({"model": "qwen3:8b", "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hi"}
        ], "options": {"num_predict": 256}})
    );
    assert!(translated.stream);
    assert_eq!(translated.max_tokens, 256);
}

#[test]
fn the_tool_follow_up_becomes_the_native_history() {
    // dialects.md §3.4: the client resends the history with the tool's result, as the
    // anthropic SDK dumps its own objects (with null-valued keys).
    let translated = translate(json!({
        "model": "qwen3:8b", "max_tokens": 256, "tools": [weather_tool()],
        "messages": [
            {"role": "user", "content": "weather in Tokyo?"},
            {"role": "assistant", "content": [
                {"citations": null, "text": "Checking.", "type": "text"},
                {"id": "toolu_01A2", "caller": null, "input": {"city": "Tokyo"}, "name": "get_weather", "type": "tool_use", "toolset_name": null}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A2", "content": "11 degrees celsius"}]}
        ]
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&translated.request.messages).unwrap(),
        json!([
            {"role": "user", "content": "weather in Tokyo?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_01A2", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
            {"role": "tool", "content": "11 degrees celsius", "tool_name": "get_weather", "tool_call_id": "toolu_01A2"}
        ])
    );
    assert_eq!(
        translated.request.tools,
        Some(vec![
            json!({"type": "function", "function": {"name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
        ])
    );
}

#[test]
fn tool_results_go_before_the_rest_of_their_turn() {
    let translated = translate(json!({
        "model": "m", "max_tokens": 8,
        "messages": [
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                {"type": "tool_use", "id": "b", "name": "g", "input": null}
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here:"},
                {"type": "tool_result", "tool_use_id": "b", "is_error": true, "content": [
                    {"type": "text", "text": "timeout"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
                ]},
                {"type": "tool_result", "tool_use_id": "a"},
                {"type": "document", "source": {"type": "text", "data": "ignored"}},
                {"type": "text", "text": "go on"}
            ]}
        ]
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&translated.request.messages).unwrap(),
        json!([
            {"role": "assistant", "content": "", "thinking": "Two calls.", "tool_calls": [
                {"id": "a", "function": {"index": 0, "name": "f", "arguments": {}}},
                {"id": "b", "function": {"index": 1, "name": "g", "arguments": {}}}]},
            {"role": "tool", "content": "Error: timeout", "images": [PNG], "tool_name": "g", "tool_call_id": "b"},
            {"role": "tool", "content": "", "tool_name": "f", "tool_call_id": "a"},
            {"role": "user", "content": "Here:\ngo on"}
        ])
    );
}

#[test]
fn system_blocks_and_system_messages_are_system_messages() {
    let translated = translate(json!({
        "model": "m", "max_tokens": 8,
        "system": [{"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Two."}],
        "messages": [{"role": "system", "content": "Three."}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    }))
    .unwrap();
    let roles: Vec<(&str, &str)> = translated
        .request
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        roles,
        [
            ("system", "One.\nTwo."),
            ("system", "Three."),
            ("user", "hi")
        ]
    );
}

#[test]
fn images_are_checked_or_left_to_fetch() {
    let translated = translate(json!({
        "model": "m", "max_tokens": 8,
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "text", "text": "What are these?"}
            ]}
        ]
    }))
    .unwrap();
    let message = &translated.request.messages[1];
    assert_eq!(message.images, Some(vec![String::new(), PNG.to_owned()]));
    assert_eq!(
        translated.pending_images,
        vec![PendingImage {
            message: 1,
            image: 0,
            url: "https://example.com/cat.png".into(),
            field: "messages.1.content.0".into(),
        }]
    );

    let image = |source: Value| json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]});
    for (field, source) in [
        (
            "messages.0.content.0.source.data",
            json!({"type": "base64", "media_type": "image/png", "data": "aGVsbG8="}),
        ),
        (
            "messages.0.content.0.source.data",
            json!({"type": "base64", "media_type": "image/png", "data": "!!"}),
        ),
        (
            "messages.0.content.0.source.url",
            json!({"type": "url", "url": "file:///etc/passwd"}),
        ),
        (
            "messages.0.content.0.source.type",
            json!({"type": "file", "file_id": "file_1"}),
        ),
    ] {
        assert_eq!(field_of(image(source)), field);
    }
}

#[test]
fn what_does_not_fit_is_refused_naming_the_field() {
    let base = |extra: Value| {
        let mut body =
            json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let cases = [
        ("max_tokens", json!({"max_tokens": null})),
        ("max_tokens", json!({"max_tokens": 0})),
        ("max_tokens", json!({"max_tokens": -3})),
        ("model", json!({"model": ""})),
        ("messages", json!({"messages": []})),
        ("temperature", json!({"temperature": 1.5})),
        ("top_p", json!({"top_p": -0.1})),
        ("top_k", json!({"top_k": -1})),
        (
            "tools.0",
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        ),
        ("tools.0.input_schema", json!({"tools": [{"name": "f"}]})),
        (
            "tools.0.name",
            json!({"tools": [{"name": " ", "input_schema": {"type": "object"}}]}),
        ),
        (
            "tool_choice.name",
            json!({"tools": [weather_tool()], "tool_choice": {"type": "tool", "name": "nope"}}),
        ),
        (
            "tool_choice.name",
            json!({"tools": [weather_tool()], "tool_choice": {"type": "tool"}}),
        ),
        (
            "tool_choice.type",
            json!({"tools": [weather_tool()], "tool_choice": {"type": "maybe"}}),
        ),
        ("thinking.type", json!({"thinking": {"type": "sometimes"}})),
        (
            "output_config.effort",
            json!({"output_config": {"effort": "extreme"}}),
        ),
        (
            "output_config.format",
            json!({"output_config": {"format": {"type": "json_schema"}}}),
        ),
        (
            "messages.0.content.0",
            json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}]}),
        ),
        (
            "messages.0.content.0",
            json!({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}]}),
        ),
        (
            "messages.0.content.0",
            json!({"messages": [{"role": "assistant", "content": [{"type": "image", "source": {"type": "base64", "data": PNG}}]}]}),
        ),
        (
            "messages.0.content.0.content.0",
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "tool_use", "id": "b", "name": "f", "input": {}}]}]}]}),
        ),
    ];
    for (field, extra) in cases {
        assert_eq!(field_of(base(extra.clone())), field, "{extra}");
    }
    let error = translate(base(json!({"max_tokens": null}))).unwrap_err();
    assert_eq!(error.to_string(), "max_tokens: Field required");
}

#[test]
fn sampling_fields_removed_in_2026_10_21_are_still_taken() {
    let translated = translate(json!({
        "model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END", "STOP"]
    }))
    .unwrap();
    assert_eq!(
        translated.request.options,
        Some(
            json!({"num_predict": 8, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop": ["END", "STOP"]})
                .as_object()
                .unwrap()
                .clone()
        )
    );
    let mut translated = translated;
    translated.limit_completion(3);
    assert_eq!(translated.request.options.unwrap()["num_predict"], 3);
}

#[test]
fn tool_choice_narrows_the_tools() {
    let other = json!({"name": "get_time", "input_schema": {"type": "object"}, "type": "custom"});
    let with_choice = |choice: Value| {
        translate(
            json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool(), other], "tool_choice": choice}),
        )
        .unwrap()
        .request
        .tools
    };
    assert_eq!(with_choice(json!({"type": "none"})), None);
    assert_eq!(with_choice(json!({"type": "auto"})).unwrap().len(), 2);
    assert_eq!(
        with_choice(json!({"type": "any", "disable_parallel_tool_use": true}))
            .unwrap()
            .len(),
        2
    );
    let only = with_choice(json!({"type": "tool", "name": "get_time"})).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["function"]["name"], "get_time");
}

#[test]
fn thinking_and_effort_become_think_and_format_a_schema() {
    let think = |extra: Value| {
        let mut body =
            json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        translate(body).unwrap().request.think
    };
    assert_eq!(
        think(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})),
        Some(json!(true))
    );
    assert_eq!(
        think(json!({"thinking": {"type": "disabled"}})),
        Some(json!(false))
    );
    assert_eq!(
        think(json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}})),
        None
    );
    assert_eq!(
        think(json!({"output_config": {"effort": "medium"}})),
        Some(json!("medium"))
    );
    assert_eq!(
        think(json!({"output_config": {"effort": "max"}})),
        Some(json!("high"))
    );
    assert_eq!(think(json!({})), None);

    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let formatted = translate(
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}],
        "output_config": {"format": {"type": "json_schema", "schema": schema}}}),
    )
    .unwrap();
    assert_eq!(formatted.request.format, Some(schema));
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::translate;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
            prop_oneof![
                Just("user"),
                Just("assistant"),
                Just("system"),
                Just("text"),
                Just("image"),
                Just("tool_use"),
                Just("tool_result"),
                Just("thinking"),
                Just("base64"),
                Just("url"),
                Just("iVBORw0KGgo="),
                Just("https://10.0.0.1/x.png"),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("role".to_string()),
                        Just("content".to_string()),
                        Just("text".to_string()),
                        Just("source".to_string()),
                        Just("data".to_string()),
                        Just("id".to_string()),
                        Just("name".to_string()),
                        Just("input".to_string()),
                        Just("tool_use_id".to_string()),
                        Just("input_schema".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..5,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever a client sends, translation answers Ok or a 400; it never panics.
        #[test]
        fn arbitrary_requests_never_panic(
            messages in prop::collection::vec(any_json(), 0..4),
            system in any_json(),
            tools in any_json(),
            tool_choice in any_json(),
            thinking in any_json(),
        ) {
            let body = json!({
                "model": "m", "max_tokens": 16, "messages": messages, "system": system,
                "tools": tools, "tool_choice": tool_choice, "thinking": thinking,
            });
            let _ = translate(body);
        }
    }
}
