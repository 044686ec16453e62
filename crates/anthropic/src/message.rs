//! The non-streamed Messages answer (a `message`), made from Ollama's, and the pieces the
//! stream shares with it: ids, the stop reason, tool calls as `tool_use` blocks, usage.

use aiproxy_ollama as ollama;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A `message`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": "msg_42", "type": "message", "role": "assistant", "model": "llama3.2", "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 21, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}))]
pub struct MessageResponse {
    /// `msg_<request id>`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `assistant`.
    pub role: &'static str,
    /// The model as requested.
    pub model: String,
    /// Thinking, then text, then tool calls.
    pub content: Vec<ResponseBlock>,
    /// Why the answer ended.
    pub stop_reason: Option<StopReason>,
    /// Always null: Ollama does not say which stop sequence matched.
    pub stop_sequence: Option<String>,
    /// Token counts from Ollama.
    pub usage: MessageUsage,
}

/// A content block of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    /// The model's reasoning (Ollama's `thinking`).
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Always empty: Ollama signs nothing (the SDKs require the key).
        signature: String,
    },
    /// The answer's text.
    Text {
        /// The text.
        text: String,
    },
    /// A call of one of the request's tools.
    ToolUse {
        /// Ollama's call id, or `toolu_<request id>_<n>`.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        #[schema(value_type = Object)]
        input: Value,
    },
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn (Ollama's `stop`).
    EndTurn,
    /// `max_tokens` (or the proxy's budget) was reached (Ollama's `length`).
    MaxTokens,
    /// A stop sequence matched. Never produced: Ollama reports a matched stop sequence as
    /// `stop`, and strips it, so it cannot be told from the end of the turn.
    StopSequence,
    /// The model called tools.
    ToolUse,
}

impl StopReason {
    /// The stop reason for Ollama's `done_reason`, tool calls first.
    pub fn from_ollama(done_reason: Option<&str>, made_tool_calls: bool) -> Self {
        match done_reason {
            _ if made_tool_calls => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::EndTurn,
        }
    }
}

/// Token counts, as the Messages API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct MessageUsage {
    /// Prompt tokens (Ollama's `prompt_eval_count`).
    pub input_tokens: u64,
    /// Generated tokens, thinking included (Ollama's `eval_count`).
    pub output_tokens: u64,
    /// Always 0: Ollama reports no prompt caching.
    pub cache_creation_input_tokens: u64,
    /// Always 0: Ollama reports no prompt caching.
    pub cache_read_input_tokens: u64,
}

impl MessageUsage {
    /// Counts, with no cache use.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
        }
    }
}

/// `msg_<request id>`.
pub(crate) fn message_id(request_id: &str) -> String {
    format!("msg_{request_id}")
}

/// Ollama's tool call as a `tool_use` block; a call without an id is named
/// `toolu_<request id>_<position>`.
pub(crate) fn tool_use_block(
    call: &ollama::ToolCall,
    request_id: &str,
    position: usize,
) -> ResponseBlock {
    ResponseBlock::ToolUse {
        id: call
            .id
            .clone()
            .unwrap_or_else(|| format!("toolu_{request_id}_{position}")),
        name: call.function.name.clone(),
        input: tool_input(&call.function.arguments),
    }
}

/// Ollama's arguments as a `tool_use` input, which must be an object: `null` is `{}`, and a
/// string holding a JSON object is that object.
fn tool_input(arguments: &Value) -> Value {
    match arguments {
        Value::Null => Value::Object(Map::new()),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(object @ Value::Object(_)) => object,
            _ => arguments.clone(),
        },
        other => other.clone(),
    }
}

impl MessageResponse {
    /// Ollama's whole answer as the message `msg_<request_id>`.
    pub fn from_ollama(answer: ollama::ChatResponse, request_id: &str, model: String) -> Self {
        let message = answer.message.unwrap_or_default();
        let calls = message.tool_calls.unwrap_or_default();
        let mut content = Vec::with_capacity(2 + calls.len());
        if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
            content.push(ResponseBlock::Thinking {
                thinking,
                signature: String::new(),
            });
        }
        if !message.content.is_empty() {
            content.push(ResponseBlock::Text {
                text: message.content,
            });
        }
        content.extend(
            calls
                .iter()
                .enumerate()
                .map(|(position, call)| tool_use_block(call, request_id, position)),
        );
        MessageResponse {
            id: message_id(request_id),
            kind: "message",
            role: "assistant",
            model,
            content,
            stop_reason: Some(StopReason::from_ollama(
                answer.done_reason.as_deref(),
                !calls.is_empty(),
            )),
            stop_sequence: None,
            usage: MessageUsage::new(
                answer.prompt_eval_count.unwrap_or(0),
                answer.eval_count.unwrap_or(0),
            ),
        }
    }

    /// Appends this message as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Strings, numbers and derived `Serialize`s do not fail, and writing into a `Vec`
        // cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(message: ollama::Message, done_reason: &str) -> ollama::ChatResponse {
        ollama::ChatResponse {
            message: Some(message),
            done: true,
            done_reason: Some(done_reason.into()),
            prompt_eval_count: Some(21),
            eval_count: Some(7),
            ..ollama::ChatResponse::default()
        }
    }

    fn written(message: &MessageResponse) -> Value {
        let mut out = Vec::new();
        message.write_json(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_text_answer_is_a_message_the_sdk_reads() {
        let message = ollama::Message {
            role: "assistant".into(),
            content: "Hello!".into(),
            ..ollama::Message::default()
        };
        let response =
            MessageResponse::from_ollama(answer(message, "stop"), "42", "qwen3:8b".into());
        assert_eq!(
            written(&response),
            json!({"id": "msg_42", "type": "message", "role": "assistant", "model": "qwen3:8b",
                   "content": [{"type": "text", "text": "Hello!"}],
                   "stop_reason": "end_turn", "stop_sequence": null,
                   "usage": {"input_tokens": 21, "output_tokens": 7,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
        );
    }

    #[test]
    fn thinking_text_and_tool_calls_come_in_that_order() {
        let call = |id: Option<&str>, arguments: Value| ollama::ToolCall {
            id: id.map(str::to_owned),
            function: ollama::ToolCallFunction {
                index: None,
                name: "get_weather".into(),
                arguments,
            },
        };
        let message = ollama::Message {
            role: "assistant".into(),
            content: "Checking.".into(),
            thinking: Some("Need weather.".into()),
            tool_calls: Some(vec![
                call(Some("call_1"), json!({"city": "Tokyo"})),
                call(None, Value::Null),
                call(None, json!("{\"city\":\"Oslo\"}")),
            ]),
            ..ollama::Message::default()
        };
        let response = MessageResponse::from_ollama(answer(message, "stop"), "r", "m".into());
        assert_eq!(
            written(&response)["content"],
            json!([
                {"type": "thinking", "thinking": "Need weather.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Tokyo"}},
                {"type": "tool_use", "id": "toolu_r_1", "name": "get_weather", "input": {}},
                {"type": "tool_use", "id": "toolu_r_2", "name": "get_weather", "input": {"city": "Oslo"}}
            ])
        );
        assert_eq!(response.stop_reason, Some(StopReason::ToolUse));
    }

    #[test]
    fn stop_reasons_map_from_ollama() {
        assert_eq!(
            StopReason::from_ollama(Some("stop"), false),
            StopReason::EndTurn
        );
        assert_eq!(StopReason::from_ollama(None, false), StopReason::EndTurn);
        assert_eq!(
            StopReason::from_ollama(Some("length"), false),
            StopReason::MaxTokens
        );
        assert_eq!(
            StopReason::from_ollama(Some("length"), true),
            StopReason::ToolUse
        );
        let empty = MessageResponse::from_ollama(
            answer(ollama::Message::default(), "length"),
            "r",
            "m".into(),
        );
        assert_eq!(written(&empty)["content"], json!([]));
        assert_eq!(written(&empty)["stop_reason"], "max_tokens");
    }
}
