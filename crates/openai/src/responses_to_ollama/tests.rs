use serde_json::json;

use super::*;

/// Translates `body`; a body that does not even parse is an error without a field.
fn translate(body: Value) -> Result<TranslatedResponses, InvalidRequest> {
    let request: ResponsesRequest = serde_json::from_value(body).map_err(|err| InvalidRequest {
        message: err.to_string(),
        param: None,
        code: None,
    })?;
    responses_request_to_ollama(request)
}

fn param_of(body: Value) -> Option<String> {
    match translate(body) {
        Err(error) => error.param,
        Ok(translated) => panic!("expected a 400, got {translated:?}"),
    }
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

#[test]
fn a_string_input_is_one_user_message_after_the_instructions() {
    let translated = translate(json!({
        "model": "qwen3:8b", "instructions": "Be terse.", "input": "hi",
        "max_output_tokens": 64, "stream": true, "unknown_field": {"ignored": true}
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&translated.request).unwrap(),
        json!({"model": "qwen3:8b", "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hi"}
        ], "options": {"num_predict": 64}})
    );
    assert!(translated.stream);
    assert_eq!(translated.max_output_tokens, Some(64));
    assert!(translated.pending_images.is_empty());
}

#[test]
fn a_whole_conversation_becomes_ollama_messages() {
    let translated = translate(json!({
        "model": "m",
        "input": [
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is"},
                {"type": "input_image", "detail": "auto", "image_url": format!("data:image/png;base64,{PNG}")},
                {"type": "input_text", "text": "this, and the weather in Tokyo?"},
                {"type": "input_image", "detail": "low", "image_url": "https://example.com/cat.png"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need weather."}], "encrypted_content": "Need the weather."},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_x1", "name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_x1", "output": "11 degrees"},
            {"type": "function_call_output", "call_id": "call_unknown", "output": [
                {"type": "input_text", "text": "chart:"},
                {"type": "input_image", "detail": "auto", "image_url": format!("data:image/png;base64,{PNG}")}
            ]}
        ]
    }))
    .unwrap();
    assert_eq!(
        serde_json::to_value(&translated.request.messages).unwrap(),
        json!([
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is\nthis, and the weather in Tokyo?", "images": [PNG, ""]},
            {"role": "assistant", "content": "A cat.", "thinking": "Need the weather.",
             "tool_calls": [{"id": "call_x1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
            {"role": "tool", "content": "11 degrees", "tool_name": "get_weather", "tool_call_id": "call_x1"},
            {"role": "tool", "content": "chart:", "images": [PNG], "tool_call_id": "call_unknown"}
        ])
    );
    assert_eq!(
        translated.pending_images,
        vec![PendingImage {
            message: 1,
            image: 1,
            url: "https://example.com/cat.png".into(),
            param: "input[1].content[3]".into(),
        }]
    );
}

#[test]
fn a_function_call_without_an_assistant_message_gets_one_with_the_reasoning() {
    let translated = translate(json!({
        "model": "m",
        "input": [
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"}
        ]
    }))
    .unwrap();
    let assistant = &translated.request.messages[1];
    assert_eq!(assistant.role, "assistant");
    assert_eq!(assistant.thinking.as_deref(), Some("a\nb"));
    let calls = assistant.tool_calls.as_ref().unwrap();
    assert_eq!(calls.len(), 2, "consecutive calls share one message");
    assert_eq!(calls[0].function.arguments, json!({}));
    assert_eq!(calls[1].function.index, Some(1));
}

#[test]
fn stateful_fields_are_refused_naming_the_field() {
    let error = translate(json!({"model": "m", "input": "x", "previous_response_id": "resp_abc"}))
        .unwrap_err();
    assert_eq!(error.param.as_deref(), Some("previous_response_id"));
    assert_eq!(error.code, Some("previous_response_not_found"));
    assert!(error.message.contains("resp_abc") && error.message.contains("`input`"));

    for conversation in [json!("conv_1"), json!({"id": "conv_1"})] {
        let error = translate(json!({"model": "m", "input": "x", "conversation": conversation}))
            .unwrap_err();
        assert_eq!(error.param.as_deref(), Some("conversation"));
        assert_eq!(error.code, Some("unsupported_parameter"));
    }
    let error = translate(json!({"model": "m", "input": "x", "background": true})).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("background"));

    // Null is absent, as everywhere in OpenAI's API.
    translate(json!({"model": "m", "input": "x", "previous_response_id": null, "conversation": null, "background": false}))
        .unwrap();
}

#[test]
fn max_output_tokens_must_be_at_least_one() {
    for bad in [json!(0), json!(-5)] {
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "max_output_tokens": bad})).as_deref(),
            Some("max_output_tokens")
        );
    }
    let mut translated =
        translate(json!({"model": "m", "input": "x", "max_output_tokens": 1})).unwrap();
    assert_eq!(
        translated.request.options.as_ref().unwrap()["num_predict"],
        1
    );
    translated.limit_completion(500);
    assert_eq!(
        translated.request.options.as_ref().unwrap()["num_predict"],
        500
    );
    let mut unbounded = translate(json!({"model": "m", "input": "x"})).unwrap();
    assert_eq!(unbounded.request.options, None);
    unbounded.limit_completion(7);
    assert_eq!(unbounded.request.options.unwrap()["num_predict"], 7);
}

#[test]
fn sampling_format_and_reasoning_map_to_ollama() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let translated = translate(json!({
        "model": "m", "input": "x", "temperature": 0.3, "top_p": 0.9,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": schema, "strict": true}},
        "reasoning": {"effort": "minimal", "summary": "auto"},
        "ollama": {"options": {"num_ctx": 4096}, "keep_alive": "1m"}
    }))
    .unwrap();
    let request = &translated.request;
    let options = request.options.as_ref().unwrap();
    assert_eq!(
        (options["temperature"].clone(), options["top_p"].clone()),
        (json!(0.3), json!(0.9))
    );
    assert_eq!(options["num_ctx"], 4096);
    assert_eq!(request.format, Some(schema));
    assert_eq!(request.think, Some(json!("low")));
    assert_eq!(request.keep_alive, Some(json!("1m")));
    assert_eq!(
        translated.settings.reasoning.summary.as_deref(),
        Some("auto")
    );

    let json_mode =
        translate(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}))
            .unwrap();
    assert_eq!(json_mode.request.format, Some(json!("json")));
    let off =
        translate(json!({"model": "m", "input": "x", "reasoning": {"effort": "none"}})).unwrap();
    assert_eq!(off.request.think, Some(json!(false)));

    for (field, body) in [
        (
            "temperature",
            json!({"model": "m", "input": "x", "temperature": 3}),
        ),
        ("top_p", json!({"model": "m", "input": "x", "top_p": -1})),
        (
            "text.format.schema",
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}}),
        ),
        (
            "reasoning.effort",
            json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
        ),
        (
            "top_logprobs",
            json!({"model": "m", "input": "x", "top_logprobs": 2}),
        ),
        ("model", json!({"model": " ", "input": "x"})),
        ("input", json!({"model": "m"})),
        ("input", json!({"model": "m", "input": []})),
    ] {
        assert_eq!(param_of(body).as_deref(), Some(field));
    }
}

#[test]
fn function_tools_become_ollama_tools_and_others_are_refused() {
    let tools = json!([
        {"type": "function", "name": "get_weather", "description": "Weather", "strict": true,
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "function", "name": "get_time", "parameters": null, "strict": null}
    ]);
    let translated = translate(json!({"model": "m", "input": "x", "tools": tools})).unwrap();
    assert_eq!(
        translated.request.tools,
        Some(vec![
            json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
            json!({"type": "function", "function": {"name": "get_time"}}),
        ])
    );
    assert_eq!(
        translated.settings.tools,
        tools.as_array().unwrap().clone(),
        "echoed as sent"
    );
    assert_eq!(translated.settings.tool_choice, json!("auto"));

    let none =
        translate(json!({"model": "m", "input": "x", "tools": tools, "tool_choice": "none"}))
            .unwrap();
    assert_eq!(none.request.tools, None);
    let named = translate(json!({"model": "m", "input": "x", "tools": tools,
        "tool_choice": {"type": "function", "name": "get_time"}}))
    .unwrap();
    let named_tools = named.request.tools.unwrap();
    assert_eq!(named_tools.len(), 1);
    assert_eq!(named_tools[0]["function"]["name"], "get_time");

    for (field, body) in [
        (
            "tools[1]",
            json!({"model": "m", "input": "x", "tools": [tools[0], {"type": "web_search"}]}),
        ),
        (
            "tools[0].name",
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
        ),
        (
            "tools[0]",
            json!({"model": "m", "input": "x", "tools": [{"name": "f"}]}),
        ),
        (
            "tool_choice",
            json!({"model": "m", "input": "x", "tools": tools, "tool_choice": "sometimes"}),
        ),
        (
            "tool_choice",
            json!({"model": "m", "input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "nope"}}),
        ),
        (
            "tool_choice",
            json!({"model": "m", "input": "x", "tools": tools, "tool_choice": {"type": "allowed_tools"}}),
        ),
    ] {
        assert_eq!(param_of(body).as_deref(), Some(field));
    }
}

#[test]
fn input_ollama_cannot_take_is_refused_naming_the_item() {
    let image = |url: Value| json!({"type": "input_image", "detail": "auto", "image_url": url});
    for (field, item) in [
        ("input[0]", json!({"type": "item_reference", "id": "msg_1"})),
        ("input[0]", json!({"type": "web_search_call", "id": "ws_1"})),
        (
            "input[0].content[0]",
            json!({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}),
        ),
        (
            "input[0].content[0]",
            json!({"role": "user", "content": [{"type": "input_audio"}]}),
        ),
        (
            "input[0].content[0]",
            json!({"role": "user", "content": [{"type": "input_image", "detail": "auto", "file_id": "file_1"}]}),
        ),
        (
            "input[0].content[0]",
            json!({"role": "user", "content": [image(json!("ftp://x/y.png"))]}),
        ),
        (
            "input[0].content[0]",
            json!({"role": "assistant", "content": [image(json!(format!("data:image/png;base64,{PNG}")))]}),
        ),
        ("input[0].role", json!({"role": "tool", "content": "x"})),
        (
            "input[0].arguments",
            json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}),
        ),
    ] {
        assert_eq!(
            param_of(json!({"model": "m", "input": [item]})).as_deref(),
            Some(field),
            "{item}"
        );
    }
    let not_an_image = translate(json!({"model": "m", "input": [{"role": "user", "content": [
        image(json!("data:image/png;base64,aGVsbG8="))]}]}))
    .unwrap_err();
    assert_eq!(not_an_image.code, Some("invalid_image"));
    // No `type` and no `role`: not even an item.
    assert!(translate(json!({"model": "m", "input": [{"content": "x"}]})).is_err());
}

#[test]
fn the_settings_repeat_the_request_with_the_specs_defaults() {
    let defaults = translate(json!({"model": "m", "input": "x"}))
        .unwrap()
        .settings;
    assert_eq!(
        serde_json::to_value(&defaults).unwrap(),
        json!({"instructions": null, "max_output_tokens": null, "parallel_tool_calls": true,
               "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
               "store": false, "temperature": null, "text": {"format": {"type": "text"}},
               "tool_choice": "auto", "tools": [], "top_p": null, "truncation": "disabled",
               "user": null, "metadata": {}})
    );
    let echoed = translate(json!({"model": "m", "input": "x", "instructions": "i",
        "max_output_tokens": 9, "parallel_tool_calls": false, "store": true, "temperature": 0.5,
        "truncation": "auto", "user": "u1", "metadata": {"k": "v"},
        "reasoning": {"effort": "high"}}))
    .unwrap()
    .settings;
    assert_eq!(echoed.instructions.as_deref(), Some("i"));
    assert_eq!(echoed.max_output_tokens, Some(9));
    assert!(!echoed.parallel_tool_calls);
    assert!(!echoed.store, "nothing is stored, whatever was asked");
    assert_eq!(echoed.truncation, "auto");
    assert_eq!(echoed.metadata["k"], "v");
    assert_eq!(echoed.reasoning.effort.as_deref(), Some("high"));
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
                Just("developer"),
                Just("message"),
                Just("function_call"),
                Just("function_call_output"),
                Just("reasoning"),
                Just("input_text"),
                Just("output_text"),
                Just("input_image"),
                Just("function"),
                Just("json_schema"),
                Just("{\"a\":1}"),
                Just("data:image/png;base64,iVBORw0KGgo="),
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
                        Just("image_url".to_string()),
                        Just("call_id".to_string()),
                        Just("name".to_string()),
                        Just("arguments".to_string()),
                        Just("output".to_string()),
                        Just("summary".to_string()),
                        Just("parameters".to_string()),
                        Just("schema".to_string()),
                        Just("format".to_string()),
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
            input in prop::collection::vec(any_json(), 0..4),
            tools in any_json(),
            tool_choice in any_json(),
            text in any_json(),
            reasoning in any_json(),
        ) {
            let body = json!({
                "model": "m", "input": input, "tools": tools, "tool_choice": tool_choice,
                "text": text, "reasoning": reasoning,
            });
            let _ = translate(body);
        }
    }
}
