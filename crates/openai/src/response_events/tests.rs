use proptest::prelude::*;
use serde_json::json;

use super::*;

fn writer() -> ResponseEventWriter {
    ResponseEventWriter::new("r", "qwen3:8b".into(), 7, ResponseSettings::default())
}

fn text(content: &str) -> ollama::Message {
    ollama::Message {
        role: "assistant".into(),
        content: content.into(),
        ..ollama::Message::default()
    }
}

fn thinking(content: &str) -> ollama::Message {
    ollama::Message {
        role: "assistant".into(),
        thinking: Some(content.into()),
        ..ollama::Message::default()
    }
}

fn calls(names: &[&str]) -> ollama::Message {
    ollama::Message {
        role: "assistant".into(),
        tool_calls: Some(
            names
                .iter()
                .map(|name| ollama::ToolCall {
                    id: Some(format!("call_{name}")),
                    function: ollama::ToolCallFunction {
                        index: None,
                        name: (*name).into(),
                        arguments: json!({"city": "Tokyo"}),
                    },
                })
                .collect(),
        ),
        ..ollama::Message::default()
    }
}

/// Splits SSE bytes into events, checking the framing: `event: <type>`, then one `data:` line
/// whose JSON repeats the type, then a blank line.
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// Replays `events` as the openai SDK's `responses.stream()` helper does and checks every
/// rule it and the specification hold a stream to; returns the terminal event's response.
fn replay(events: &[(String, Value)]) -> Result<Value, String> {
    let mut items: Vec<Value> = Vec::new();
    let mut done: Vec<Value> = Vec::new();
    let mut open: Option<usize> = None;
    let mut terminal = None;
    for (position, (name, data)) in events.iter().enumerate() {
        if terminal.is_some() {
            return Err(format!("{name} after the terminal event"));
        }
        if data["sequence_number"] != json!(position) {
            return Err(format!(
                "{name}: sequence_number {} at {position}",
                data["sequence_number"]
            ));
        }
        match (position, name.as_str()) {
            (0, "response.created") | (1, "response.in_progress") => {
                if data["response"]["status"] != "in_progress"
                    || data["response"]["output"] != json!([])
                {
                    return Err(format!("{name} is not a fresh response"));
                }
                continue;
            }
            (0 | 1, _) => return Err(format!("{name} before response.created/in_progress")),
            _ => {}
        }
        let index = data["output_index"].as_u64().map(|i| i as usize);
        let check_open = |open: Option<usize>| -> Result<usize, String> {
            match (open, index) {
                (Some(o), Some(i)) if o == i => Ok(o),
                _ => Err(format!("{name} at {index:?} while {open:?} is open")),
            }
        };
        match name.as_str() {
            "response.output_item.added" => {
                if open.is_some() {
                    return Err("an item opened while another is open".into());
                }
                if index != Some(items.len()) {
                    return Err(format!("added at {index:?}, expected {}", items.len()));
                }
                let item = data["item"].clone();
                if item["type"] == "function_call" && item["arguments"] != "" {
                    return Err("a function call must start with empty arguments".into());
                }
                items.push(item);
                open = Some(items.len() - 1);
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                let o = check_open(open)?;
                let key = if name.contains("summary") {
                    "summary"
                } else {
                    "content"
                };
                items[o][key] = json!([data["part"]]);
            }
            "response.output_text.delta" => {
                let o = check_open(open)?;
                if items[o]["type"] != "message" || items[o]["content"][0]["type"] != "output_text"
                {
                    return Err("a text delta needs an open message and its part".into());
                }
                let text = format!(
                    "{}{}",
                    items[o]["content"][0]["text"].as_str().unwrap(),
                    data["delta"].as_str().unwrap()
                );
                items[o]["content"][0]["text"] = json!(text);
            }
            "response.reasoning_summary_text.delta" => {
                let o = check_open(open)?;
                let text = format!(
                    "{}{}",
                    items[o]["summary"][0]["text"].as_str().unwrap(),
                    data["delta"].as_str().unwrap()
                );
                items[o]["summary"][0]["text"] = json!(text);
            }
            "response.function_call_arguments.delta" => {
                let o = check_open(open)?;
                let text = format!(
                    "{}{}",
                    items[o]["arguments"].as_str().unwrap(),
                    data["delta"].as_str().unwrap()
                );
                items[o]["arguments"] = json!(text);
            }
            "response.output_text.done" => {
                let o = check_open(open)?;
                if data["text"] != items[o]["content"][0]["text"] {
                    return Err("output_text.done differs from the deltas".into());
                }
            }
            "response.reasoning_summary_text.done" => {
                let o = check_open(open)?;
                if data["text"] != items[o]["summary"][0]["text"] {
                    return Err("summary_text.done differs from the deltas".into());
                }
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                check_open(open)?;
            }
            "response.function_call_arguments.done" => {
                let o = check_open(open)?;
                if data["arguments"] != items[o]["arguments"] || data["name"] != items[o]["name"] {
                    return Err("function_call_arguments.done differs from the call".into());
                }
            }
            "response.output_item.done" => {
                let o = check_open(open)?;
                let item = &data["item"];
                if item["id"] != items[o]["id"] || item["type"] != items[o]["type"] {
                    return Err("output_item.done names another item".into());
                }
                for key in ["content", "summary", "arguments"] {
                    if item.get(key).is_some() && item[key] != items[o][key] {
                        return Err(format!("output_item.done's {key} differs from the stream"));
                    }
                }
                done.push(item.clone());
                open = None;
            }
            "error" => {
                if !data.get("code").is_some_and(|c| c.is_string())
                    || !data["message"].is_string()
                    || data.get("param").is_none()
                {
                    return Err("error needs code, message and param".into());
                }
                if !matches!(events.get(position + 1), Some((next, _)) if next == "response.failed")
                {
                    return Err("error must be followed by response.failed".into());
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = &data["response"];
                if open.is_some() || done.len() != items.len() {
                    return Err("the response ended with an unfinished item".into());
                }
                if response["output"] != json!(done) {
                    return Err("the final output differs from the items streamed".into());
                }
                if !response["usage"]["total_tokens"].is_u64() || !response["completed_at"].is_i64()
                {
                    return Err("the final response needs usage and completed_at".into());
                }
                let expected = if name == "response.completed" {
                    "completed"
                } else {
                    "incomplete"
                };
                if response["status"] != expected {
                    return Err(format!("{name} with status {}", response["status"]));
                }
                terminal = Some(response.clone());
            }
            "response.failed" => {
                if data["response"]["status"] != "failed"
                    || !data["response"]["error"]["message"].is_string()
                {
                    return Err("response.failed needs status failed and an error".into());
                }
                terminal = Some(data["response"].clone());
            }
            other => return Err(format!("unexpected event {other}")),
        }
    }
    terminal.ok_or_else(|| "no terminal event".into())
}

#[test]
fn a_text_answer_streams_the_spec_sequence_byte_for_byte() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Hello"));
    writer.write_deltas(&mut out, text(""));
    writer.write_deltas(&mut out, text(" there"));
    writer.write_finish(&mut out, Some("stop"));
    writer.write_usage(&mut out, ResponseUsage::new(26, 5), 8);
    let settings = r#""instructions":null,"max_output_tokens":null,"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":null,"truncation":"disabled","user":null,"metadata":{}"#;
    let begun = format!(
        r#"{{"id":"resp_r","object":"response","created_at":7,"status":"in_progress","completed_at":null,"error":null,"incomplete_details":null,"model":"qwen3:8b","output":[],{settings},"usage":null}}"#
    );
    let item = r#"{"type":"message","id":"msg_r_0","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello there","annotations":[],"logprobs":[]}]}"#;
    let expected = [
        format!("event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{begun}}}\n\n"),
        format!("event: response.in_progress\ndata: {{\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{begun}}}\n\n"),
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_r_0\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n".into(),
        "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":3,\"item_id\":\"msg_r_0\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}}\n\n".into(),
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_r_0\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\",\"logprobs\":[]}\n\n".into(),
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":5,\"item_id\":\"msg_r_0\",\"output_index\":0,\"content_index\":0,\"delta\":\" there\",\"logprobs\":[]}\n\n".into(),
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":6,\"item_id\":\"msg_r_0\",\"output_index\":0,\"content_index\":0,\"text\":\"Hello there\",\"logprobs\":[]}\n\n".into(),
        "event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":7,\"item_id\":\"msg_r_0\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"Hello there\",\"annotations\":[],\"logprobs\":[]}}\n\n".into(),
        format!("event: response.output_item.done\ndata: {{\"type\":\"response.output_item.done\",\"sequence_number\":8,\"output_index\":0,\"item\":{item}}}\n\n"),
        format!(
            "event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{{\"id\":\"resp_r\",\"object\":\"response\",\"created_at\":7,\"status\":\"completed\",\"completed_at\":8,\"error\":null,\"incomplete_details\":null,\"model\":\"qwen3:8b\",\"output\":[{item}],{settings},\"usage\":{{\"input_tokens\":26,\"input_tokens_details\":{{\"cached_tokens\":0,\"cache_write_tokens\":0}},\"output_tokens\":5,\"output_tokens_details\":{{\"reasoning_tokens\":0}},\"total_tokens\":31}}}}}}\n\n"
        ),
    ]
    .concat();
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
    let response = replay(&events(&out)).unwrap();
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello there");
}

#[test]
fn reasoning_closes_before_text_and_text_before_tool_calls() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, thinking("Need "));
    writer.write_deltas(&mut out, thinking("weather."));
    writer.write_deltas(&mut out, text("Checking."));
    writer.write_deltas(&mut out, calls(&["get_weather", "get_time"]));
    writer.write_finish(&mut out, Some("stop"));
    writer.write_usage(&mut out, ResponseUsage::new(21, 7), 9);
    let events = events(&out);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let response = replay(&events).unwrap();
    assert_eq!(
        response["output"],
        json!([
            {"type": "reasoning", "id": "rs_r_0", "summary": [{"type": "summary_text", "text": "Need weather."}],
             "encrypted_content": "Need weather.", "status": "completed"},
            {"type": "message", "id": "msg_r_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "id": "fc_r_2", "status": "completed", "call_id": "call_get_weather",
             "name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"},
            {"type": "function_call", "id": "fc_r_3", "status": "completed", "call_id": "call_get_time",
             "name": "get_time", "arguments": "{\"city\":\"Tokyo\"}"}
        ])
    );
    let arguments_done = &events[17].1;
    assert_eq!(
        arguments_done["name"], "get_weather",
        "the spec requires the name"
    );
    assert_eq!(arguments_done["item_id"], "fc_r_2");
}

#[test]
fn the_replay_refuses_what_the_sdk_helper_refuses() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Checking."));
    writer.write_deltas(&mut out, calls(&["f"]));
    writer.write_usage(&mut out, ResponseUsage::new(1, 1), 2);
    let good = events(&out);
    replay(&good).unwrap();
    // Ollama's own layer: the function call takes the index of the still-open message.
    let mut colliding = good.clone();
    let call_added = colliding
        .iter()
        .rposition(|(name, _)| name == "response.output_item.added")
        .unwrap();
    colliding[call_added].1["output_index"] = json!(0);
    assert!(replay(&colliding).is_err());
    let mut no_end = good.clone();
    no_end.pop();
    assert!(replay(&no_end).is_err());
    let mut renumbered = good;
    renumbered[3].1["sequence_number"] = json!(9);
    assert!(replay(&renumbered).is_err());
}

#[test]
fn the_length_limit_ends_in_response_incomplete() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Once upon"));
    writer.write_finish(&mut out, Some("length"));
    writer.write_usage(&mut out, ResponseUsage::new(3, 2), 8);
    let events = events(&out);
    assert_eq!(names(&events).last(), Some(&"response.incomplete"));
    let response = replay(&events).unwrap();
    assert_eq!(
        response["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert_eq!(response["usage"]["total_tokens"], 5);
}

#[test]
fn a_failure_mid_stream_is_an_error_then_response_failed() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Hel"));
    let error = ErrorBody {
        message: "Ollama stopped answering.".into(),
        kind: "server_error",
        param: None,
        code: Some("upstream_error"),
    };
    writer.write_error(&mut out, &error);
    // Nothing follows the terminal event.
    writer.write_deltas(&mut out, text("lo"));
    writer.write_finish(&mut out, None);
    writer.write_usage(&mut out, ResponseUsage::new(1, 1), 9);
    writer.write_error(&mut out, &error);
    let events = events(&out);
    let tail: Vec<&str> = names(&events).into_iter().rev().take(2).collect();
    assert_eq!(tail, ["response.failed", "error"]);
    assert_eq!(
        events[events.len() - 2].1,
        json!({"type": "error", "sequence_number": events.len() - 2, "code": "upstream_error",
               "message": "Ollama stopped answering.", "param": null})
    );
    let response = replay(&events).unwrap();
    assert_eq!(
        response["error"],
        json!({"code": "server_error", "message": "Ollama stopped answering."})
    );
    assert_eq!(response["usage"], Value::Null);
}

#[test]
fn a_failure_before_any_line_still_starts_the_response() {
    let mut writer = writer();
    let mut out = Vec::new();
    let error = ErrorBody {
        message: "Rate limit reached.".into(),
        kind: "requests",
        param: None,
        code: Some("rate_limit_exceeded"),
    };
    writer.write_error(&mut out, &error);
    let events = events(&out);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
    assert_eq!(
        replay(&events).unwrap()["error"]["code"],
        "rate_limit_exceeded"
    );
}

#[test]
fn an_empty_answer_is_a_completed_response_with_no_output() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_finish(&mut out, Some("stop"));
    writer.write_usage(&mut out, ResponseUsage::new(4, 0), 8);
    let events = events(&out);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
    assert_eq!(replay(&events).unwrap()["output"], json!([]));
}

#[test]
fn a_text_delta_fits_the_event_capacity() {
    let mut writer = ResponseEventWriter::new(
        "0123456789abcdef0123456789abcdef",
        "llama3.2".into(),
        0,
        ResponseSettings::default(),
    );
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("first"));
    let before = out.len();
    writer.write_deltas(&mut out, text(" Rayleigh"));
    assert!(
        out.len() - before <= RESPONSE_EVENT_CAPACITY,
        "{}",
        out.len() - before
    );
}

/// What the stream machine can hand the writer, in any order.
#[derive(Debug, Clone)]
enum Call {
    Text(String),
    Thinking(String),
    ToolCalls(u8),
    Finish(Option<&'static str>),
    Usage,
    Error,
}

fn any_call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => ".{0,6}".prop_map(Call::Text),
        2 => ".{0,6}".prop_map(Call::Thinking),
        1 => (0u8..3).prop_map(Call::ToolCalls),
        1 => prop_oneof![Just(None), Just(Some("stop")), Just(Some("length"))].prop_map(Call::Finish),
        1 => Just(Call::Usage),
        1 => Just(Call::Error),
    ]
}

proptest! {
    /// Whatever the upstream lines and however the machine calls the writer (a finish, then
    /// usage; or an error at any point), the events are well formed and the stream holds
    /// exactly one terminal event, at its end.
    #[test]
    fn any_call_sequence_gives_a_well_formed_stream(
        calls_made in prop::collection::vec(any_call(), 0..24),
        end_with_error in any::<bool>(),
    ) {
        let mut writer = writer();
        let mut out = Vec::new();
        let mut tool_call = 0;
        for call in calls_made {
            match call {
                Call::Text(t) => writer.write_deltas(&mut out, text(&t)),
                Call::Thinking(t) => writer.write_deltas(&mut out, thinking(&t)),
                Call::ToolCalls(n) => {
                    let names: Vec<String> = (0..n).map(|_| { tool_call += 1; format!("f{tool_call}") }).collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    writer.write_deltas(&mut out, calls(&names));
                }
                Call::Finish(reason) => writer.write_finish(&mut out, reason),
                Call::Usage => writer.write_usage(&mut out, ResponseUsage::new(1, 2), 9),
                Call::Error => writer.write_error(&mut out, &ErrorBody {
                    message: "boom".into(), kind: "server_error", param: None, code: None,
                }),
            }
        }
        if end_with_error {
            writer.write_error(&mut out, &ErrorBody {
                message: "late".into(), kind: "server_error", param: None, code: None,
            });
        } else {
            writer.write_finish(&mut out, None);
            writer.write_usage(&mut out, ResponseUsage::new(1, 2), 9);
        }
        let events = events(&out);
        let terminals = events.iter().filter(|(name, _)| {
            matches!(name.as_str(), "response.completed" | "response.incomplete" | "response.failed")
        }).count();
        prop_assert_eq!(terminals, 1);
        if let Err(problem) = replay(&events) {
            prop_assert!(false, "{}", problem);
        }
    }
}
