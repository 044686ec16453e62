use super::*;

/// Translates `body`; a body that does not even parse is an error without a field.
fn translate(body: serde_json::Value) -> Result<TranslatedChat, InvalidRequest> {
    let request: ChatCompletionRequest =
        serde_json::from_value(body).map_err(|err| InvalidRequest {
            message: err.to_string(),
            param: None,
            code: None,
        })?;
    chat_request_to_ollama(request)
}

#[test]
fn parameters_map_to_ollama_options() {
    let chat = translate(serde_json::json!({
        "model": "llama3.2",
        "messages": [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 20, "max_tokens": 99, "temperature": 0.5, "top_p": 0.9,
        "seed": 7, "stop": "END", "presence_penalty": 0.1, "frequency_penalty": -0.1,
        "response_format": {"type": "json_object"},
        "ollama": {"options": {"num_ctx": 8192, "temperature": 1.5}, "keep_alive": "10m"}
    }))
    .unwrap();
    let options = chat.request.options.unwrap();
    assert_eq!(options["num_predict"], 20);
    assert_eq!(
        options["temperature"], 0.5,
        "explicit OpenAI fields win over the extension"
    );
    assert_eq!(options["num_ctx"], 8192);
    assert_eq!(options["stop"], serde_json::json!(["END"]));
    assert_eq!(options["seed"], 7);
    assert_eq!(chat.request.format, Some(serde_json::json!("json")));
    assert_eq!(chat.request.keep_alive, Some(serde_json::json!("10m")));
    assert_eq!(chat.request.messages[0].role, "system");
}

#[test]
fn json_schema_becomes_the_format() {
    let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let chat = translate(serde_json::json!({
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    }))
    .unwrap();
    assert_eq!(chat.request.format, Some(schema));
}

#[test]
fn what_ollama_cannot_do_is_refused() {
    for (field, value) in [
        ("n", serde_json::json!(2)),
        ("logprobs", serde_json::json!(true)),
    ] {
        let mut body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        body[field] = value;
        match translate(body) {
            Err(InvalidRequest { param, .. }) => assert_eq!(param.as_deref(), Some(field)),
            other => panic!("expected a 400 for {field}, got {other:?}"),
        }
    }
}

#[test]
fn tool_calls_and_results_round_trip() {
    let chat = translate(serde_json::json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    }))
    .unwrap();
    let call = &chat.request.messages[1].tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.function.arguments, serde_json::json!({"city": "Oslo"}));
    assert_eq!(
        chat.request.messages[2].tool_name.as_deref(),
        Some("get_weather")
    );
    assert_eq!(
        chat.request.messages[2].tool_call_id.as_deref(),
        Some("call_1")
    );
    assert_eq!(chat.request.tools.as_ref().map(Vec::len), Some(1));
}

#[test]
fn bad_tool_arguments_name_the_field() {
    let err = translate(serde_json::json!({
        "model": "m",
        "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]
    }))
    .unwrap_err();
    assert_eq!(
        err.param.as_deref(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
}

#[test]
fn tool_choice_none_drops_tools_and_a_named_one_keeps_only_it() {
    let tools = serde_json::json!([
        {"type": "function", "function": {"name": "a"}},
        {"type": "function", "function": {"name": "b"}}
    ]);
    let none = translate(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "none"})).unwrap();
    assert!(none.request.tools.is_none());
    let named = translate(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": {"type": "function", "function": {"name": "b"}}})).unwrap();
    assert_eq!(named.request.tools.unwrap()[0]["function"]["name"], "b");
}

#[test]
fn content_parts_merge_text_and_decode_images() {
    // A 1x1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let chat = translate(serde_json::json!({
        "model": "moondream",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
            {"type": "text", "text": "this?"},
            {"type": "image_url", "image_url": "https://example.com/cat.png"}
        ]}]
    }))
    .unwrap();
    let message = &chat.request.messages[0];
    assert_eq!(message.content, "What is\nthis?");
    assert_eq!(message.images.as_ref().unwrap()[0], png);
    assert_eq!(chat.pending_images.len(), 1);
    assert_eq!(chat.pending_images[0].param, "messages[0].content[3]");
}

#[test]
fn data_uris_that_are_not_images_are_refused() {
    for url in [
        "data:image/png;base64,!!!!",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png;base64,aGVsbG8=",
        "data:image/png,rawbytes",
    ] {
        let result = translate(serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
        }));
        assert!(
            matches!(
                &result,
                Err(InvalidRequest {
                    code: Some("invalid_image"),
                    ..
                })
            ),
            "{url}"
        );
    }
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
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop_oneof![
                Just("user"),
                Just("assistant"),
                Just("tool"),
                Just("system"),
                Just("developer"),
                Just("text"),
                Just("image_url"),
                Just("function"),
                Just("json_schema"),
                Just("none"),
                Just("data:image/png;base64,iVBORw0KGgo="),
                Just("http://10.0.0.1/x.png"),
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("role".to_string()),
                        Just("content".to_string()),
                        Just("type".to_string()),
                        Just("text".to_string()),
                        Just("image_url".to_string()),
                        Just("url".to_string()),
                        Just("tool_calls".to_string()),
                        Just("function".to_string()),
                        Just("arguments".to_string()),
                        Just("name".to_string()),
                        Just("tool_call_id".to_string()),
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

        /// Whatever a client sends as the request's fields, translation answers Ok or a 400;
        /// it never panics.
        #[test]
        fn arbitrary_requests_never_panic(
            messages in prop::collection::vec(any_json(), 0..4),
            tools in any_json(),
            tool_choice in any_json(),
            response_format in any_json(),
            stop in any_json(),
        ) {
            let body = json!({
                "model": "m", "messages": messages, "tools": tools, "tool_choice": tool_choice,
                "response_format": response_format, "stop": stop,
            });
            let _ = translate(body);
        }

    }
}
