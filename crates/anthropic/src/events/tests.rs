use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn writer() -> MessageEventWriter {
    MessageEventWriter::new("r", "qwen3:8b".into(), 12)
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

/// Splits SSE bytes into events, checking the framing the SDKs need: an `event:` line, one
/// `data:` line whose JSON repeats the name as its `type`, a blank line.
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

/// Replays `events` as the anthropic SDK's `messages.stream()` helper accumulates them,
/// checking what it and the API's documentation require; returns the final message (or, for
/// a stream that ends in `error`, the error event).
fn replay(events: &[(String, Value)]) -> Result<Value, String> {
    let mut message: Option<Value> = None;
    let mut json_inputs: Vec<String> = Vec::new();
    let mut open: Option<usize> = None;
    let mut ended = false;
    let mut delta_seen = false;
    for (name, data) in events {
        if ended {
            return Err(format!("{name} after the stream's end"));
        }
        if name == "error" {
            if !data["error"]["type"].is_string() || !data["error"]["message"].is_string() {
                return Err("error needs a type and a message".into());
            }
            ended = true;
            message = Some(data.clone());
            continue;
        }
        if name == "ping" {
            continue;
        }
        let Some(snapshot) = message.as_mut() else {
            if name != "message_start" {
                return Err(format!("{name} before message_start"));
            }
            let start = &data["message"];
            if start["content"] != json!([])
                || !start["usage"]["input_tokens"].is_u64()
                || !start["stop_reason"].is_null()
            {
                return Err("message_start needs empty content, usage and no stop reason".into());
            }
            message = Some(start.clone());
            continue;
        };
        let index = data["index"].as_u64().map(|i| i as usize);
        let content = snapshot["content"].as_array_mut().unwrap();
        match name.as_str() {
            "content_block_start" => {
                if open.is_some() || delta_seen {
                    return Err(
                        "a block started while another is open, or after message_delta".into(),
                    );
                }
                if index != Some(content.len()) {
                    return Err(format!("block index {index:?}, expected {}", content.len()));
                }
                content.push(data["content_block"].clone());
                json_inputs.push(String::new());
                open = index;
            }
            "content_block_delta" => {
                let Some(i) = index.filter(|i| Some(*i) == open) else {
                    return Err(format!("a delta for {index:?} while {open:?} is open"));
                };
                let block = &mut content[i];
                let delta = &data["delta"];
                match (delta["type"].as_str(), block["type"].as_str()) {
                    (Some("text_delta"), Some("text")) => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        );
                        block["text"] = json!(text);
                    }
                    (Some("thinking_delta"), Some("thinking")) => {
                        let text = format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        );
                        block["thinking"] = json!(text);
                    }
                    (Some("input_json_delta"), Some("tool_use")) => {
                        json_inputs[i].push_str(delta["partial_json"].as_str().unwrap());
                    }
                    other => return Err(format!("delta {other:?} does not fit its block")),
                }
            }
            "content_block_stop" => {
                let Some(i) = index.filter(|i| Some(*i) == open) else {
                    return Err(format!("a stop for {index:?} while {open:?} is open"));
                };
                if content[i]["type"] == "tool_use" {
                    let input: Value = serde_json::from_str(&json_inputs[i])
                        .map_err(|e| format!("tool input is not JSON: {e}"))?;
                    if !input.is_object() {
                        return Err("tool input must be an object".into());
                    }
                    content[i]["input"] = input;
                }
                open = None;
            }
            "message_delta" => {
                if open.is_some() {
                    return Err("message_delta with a block open".into());
                }
                if !data["usage"]["output_tokens"].is_u64()
                    || !data["delta"]["stop_reason"].is_string()
                {
                    return Err("message_delta needs usage.output_tokens and a stop reason".into());
                }
                snapshot["stop_reason"] = data["delta"]["stop_reason"].clone();
                snapshot["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                for (key, value) in data["usage"].as_object().unwrap() {
                    snapshot["usage"][key] = value.clone();
                }
                delta_seen = true;
            }
            "message_stop" => {
                if !delta_seen {
                    return Err("message_stop before message_delta".into());
                }
                ended = true;
            }
            other => return Err(format!("unexpected event {other}")),
        }
    }
    if !ended {
        return Err("the stream did not end".into());
    }
    message.ok_or_else(|| "no message".into())
}

#[test]
fn a_text_answer_streams_the_documented_sequence_byte_for_byte() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Hello"));
    writer.write_deltas(&mut out, text(""));
    writer.write_deltas(&mut out, text(" there"));
    writer.write_finish(&mut out, Some("stop"));
    writer.write_usage(&mut out, 21, 7);
    let expected = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_r\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"qwen3:8b\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":21,\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
    let message = replay(&events(&out)).unwrap();
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Hello there"}])
    );
    assert_eq!(
        message["usage"]["input_tokens"], 21,
        "the real count replaces the estimate"
    );
}

#[test]
fn thinking_text_and_tool_calls_are_blocks_in_order() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, thinking("Need "));
    writer.write_deltas(&mut out, thinking("weather."));
    writer.write_deltas(&mut out, text("Checking."));
    writer.write_deltas(&mut out, calls(&["get_weather", "get_time"]));
    writer.write_finish(&mut out, Some("stop"));
    writer.write_usage(&mut out, 21, 9);
    let events = events(&out);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        events[9].1,
        json!({"type": "content_block_start", "index": 2, "content_block":
               {"type": "tool_use", "id": "call_get_weather", "name": "get_weather", "input": {}}})
    );
    assert_eq!(
        events[10].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Tokyo\"}"})
    );
    let message = replay(&events).unwrap();
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "Need weather.", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_get_weather", "name": "get_weather", "input": {"city": "Tokyo"}},
            {"type": "tool_use", "id": "call_get_time", "name": "get_time", "input": {"city": "Tokyo"}}
        ])
    );
    assert_eq!(message["stop_reason"], "tool_use");
}

#[test]
fn the_length_limit_is_max_tokens() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Once upon"));
    writer.write_finish(&mut out, Some("length"));
    writer.write_usage(&mut out, 3, 2);
    let message = replay(&events(&out)).unwrap();
    assert_eq!(message["stop_reason"], "max_tokens");
    assert_eq!(message["usage"]["output_tokens"], 2);
}

#[test]
fn a_failure_mid_stream_is_one_error_event() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("Hel"));
    writer.write_error(&mut out, ErrorKind::Overloaded, "Overloaded");
    writer.write_deltas(&mut out, text("lo"));
    writer.write_finish(&mut out, None);
    writer.write_usage(&mut out, 1, 1);
    writer.write_error(&mut out, ErrorKind::Api, "again");
    let streamed = events(&out);
    assert_eq!(
        names(&streamed),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        streamed[4].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    replay(&streamed).unwrap();

    // Before anything was written, the error is the whole stream (the SDK raises it).
    let mut out = Vec::new();
    MessageEventWriter::new("r", "m".into(), 0).write_error(
        &mut out,
        ErrorKind::Api,
        "Ollama failed.",
    );
    assert_eq!(names(&events(&out)), ["error"]);
}

#[test]
fn an_empty_answer_still_ends_properly() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_finish(&mut out, Some("stop"));
    writer.write_usage(&mut out, 4, 0);
    let events = events(&out);
    assert_eq!(
        names(&events),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
    assert_eq!(replay(&events).unwrap()["content"], json!([]));
}

#[test]
fn the_replay_refuses_what_the_sdk_helper_refuses() {
    let mut writer = writer();
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("x"));
    writer.write_deltas(&mut out, calls(&["f"]));
    writer.write_usage(&mut out, 1, 1);
    let good = events(&out);
    replay(&good).unwrap();
    let mut skipped_index = good.clone();
    let tool_start = skipped_index
        .iter()
        .rposition(|(name, _)| name == "content_block_start")
        .unwrap();
    skipped_index[tool_start].1["index"] = json!(5);
    assert!(replay(&skipped_index).is_err());
    let mut no_usage = good.clone();
    let delta = no_usage
        .iter()
        .position(|(name, _)| name == "message_delta")
        .unwrap();
    no_usage[delta].1.as_object_mut().unwrap().remove("usage");
    assert!(replay(&no_usage).is_err());
    let mut no_start = good;
    no_start.remove(0);
    assert!(replay(&no_start).is_err());
}

#[test]
fn a_text_delta_fits_the_event_capacity() {
    let mut writer =
        MessageEventWriter::new("0123456789abcdef0123456789abcdef", "llama3.2".into(), 9);
    let mut out = Vec::new();
    writer.write_deltas(&mut out, text("first"));
    let before = out.len();
    writer.write_deltas(&mut out, text(" Rayleigh"));
    assert!(
        out.len() - before <= MESSAGE_EVENT_CAPACITY,
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
    /// However the machine calls the writer, the events are framed, ordered as the SDK needs,
    /// and the stream ends with exactly one `message_stop` or `error`.
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
                Call::Usage => writer.write_usage(&mut out, 1, 2),
                Call::Error => writer.write_error(&mut out, ErrorKind::Api, "boom"),
            }
        }
        if end_with_error {
            writer.write_error(&mut out, ErrorKind::Overloaded, "late");
        } else {
            writer.write_finish(&mut out, None);
            writer.write_usage(&mut out, 1, 2);
        }
        let events = events(&out);
        let terminals = events.iter().filter(|(name, _)| name == "message_stop" || name == "error").count();
        prop_assert_eq!(terminals, 1);
        if let Err(problem) = replay(&events) {
            prop_assert!(false, "{}", problem);
        }
    }
}
