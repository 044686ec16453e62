use serde_json::json;

use super::*;

fn answer(message: ollama::Message, done_reason: &str) -> ollama::ChatResponse {
    ollama::ChatResponse {
        message: Some(message),
        done: true,
        done_reason: Some(done_reason.into()),
        prompt_eval_count: Some(26),
        eval_count: Some(5),
        ..ollama::ChatResponse::default()
    }
}

fn written(response: &ResponseObject) -> Value {
    let mut out = Vec::new();
    response.write_json(&mut out);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn a_text_answer_has_every_field_the_spec_requires() {
    let message = ollama::Message {
        role: "assistant".into(),
        content: "Hello there".into(),
        ..ollama::Message::default()
    };
    let response = ResponseObject::from_ollama(
        answer(message, "stop"),
        "42",
        "qwen3:8b".into(),
        1_767_225_600,
        1_767_225_601,
        ResponseSettings::default(),
    );
    assert_eq!(
        written(&response),
        json!({
            "id": "resp_42", "object": "response", "created_at": 1_767_225_600,
            "status": "completed", "completed_at": 1_767_225_601, "error": null,
            "incomplete_details": null, "model": "qwen3:8b",
            "output": [{"type": "message", "id": "msg_42_0", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []}]}],
            "instructions": null, "max_output_tokens": null, "parallel_tool_calls": true,
            "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
            "store": false, "temperature": null, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": null, "truncation": "disabled", "user": null, "metadata": {},
            "usage": {"input_tokens": 26, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 31}
        })
    );
}

#[test]
fn reasoning_text_and_tool_calls_are_all_kept_in_order() {
    let call = |id: Option<&str>, name: &str| ollama::ToolCall {
        id: id.map(str::to_owned),
        function: ollama::ToolCallFunction {
            index: None,
            name: name.into(),
            arguments: json!({"city": "Tokyo", "a": [1]}),
        },
    };
    let message = ollama::Message {
        role: "assistant".into(),
        content: "Checking.".into(),
        thinking: Some("Need weather.".into()),
        tool_calls: Some(vec![
            call(Some("call_x1"), "get_weather"),
            call(None, "get_time"),
        ]),
        ..ollama::Message::default()
    };
    let response = ResponseObject::from_ollama(
        answer(message, "stop"),
        "r",
        "m".into(),
        0,
        1,
        ResponseSettings::default(),
    );
    assert_eq!(
        written(&response)["output"],
        json!([
            {"type": "reasoning", "id": "rs_r_0", "summary": [{"type": "summary_text", "text": "Need weather."}],
             "encrypted_content": "Need weather.", "status": "completed"},
            {"type": "message", "id": "msg_r_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "id": "fc_r_2", "status": "completed", "call_id": "call_x1",
             "name": "get_weather", "arguments": "{\"a\":[1],\"city\":\"Tokyo\"}"},
            {"type": "function_call", "id": "fc_r_3", "status": "completed", "call_id": "call_r_1",
             "name": "get_time", "arguments": "{\"a\":[1],\"city\":\"Tokyo\"}"}
        ])
    );
    assert_eq!(response.status, ResponseStatus::Completed);
}

#[test]
fn tool_calls_alone_make_no_empty_message() {
    let message = ollama::Message {
        tool_calls: Some(vec![ollama::ToolCall::default()]),
        ..ollama::Message::default()
    };
    let response = ResponseObject::from_ollama(
        answer(message, "stop"),
        "r",
        "m".into(),
        0,
        1,
        ResponseSettings::default(),
    );
    assert_eq!(response.output.len(), 1);
    assert!(
        matches!(&response.output[0], OutputItem::FunctionCall { arguments, .. } if arguments == "null")
    );
}

#[test]
fn an_answer_cut_at_the_length_limit_is_incomplete() {
    let message = ollama::Message {
        content: "Once upon".into(),
        ..ollama::Message::default()
    };
    let response = ResponseObject::from_ollama(
        answer(message, "length"),
        "r",
        "m".into(),
        0,
        1,
        ResponseSettings::default(),
    );
    let value = written(&response);
    assert_eq!(value["status"], "incomplete");
    assert_eq!(
        value["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(value["output"][0]["status"], "incomplete");
    assert_eq!(value["usage"]["total_tokens"], 31);
}
