//! The streamed chat answer: Ollama's chat lines as `chat.completion.chunk` events.
//!
//! Pure: [`ChatChunkWriter`] writes bytes into a buffer and keeps the little state a stream
//! needs (whether the role was sent, how many tool calls so far).

use aiproxy_ollama as ollama;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::chat_completion::{ResponseToolCall, finish_reason, tool_calls_to_openai};
use crate::sse::{DONE_EVENT, write_event};
use crate::usage::Usage;

/// `chat.completion.chunk`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionChunk<'a> {
    /// Shared by every chunk of one completion.
    pub id: &'a str,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// Shared by every chunk of one completion.
    pub created: i64,
    /// The model as requested.
    pub model: &'a str,
    /// Always `fp_ollama`.
    pub system_fingerprint: &'static str,
    /// One choice, or none in the final usage chunk.
    pub choices: &'a [ChunkChoice],
    /// `null` on every chunk but the last when usage was asked for; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}

/// One choice of a chunk.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What is new.
    pub delta: Delta,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// Set on the last choice chunk.
    pub finish_reason: Option<&'static str>,
}

/// What a chunk adds.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Delta {
    /// `assistant`, in the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// New reasoning text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls, each whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ResponseToolCall>>,
}

/// Writes the SSE events of one streamed chat completion.
#[derive(Debug)]
pub struct ChatChunkWriter {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    sent_role: bool,
    tool_calls_sent: usize,
}

impl ChatChunkWriter {
    /// A writer for the completion `chatcmpl-<request_id>` of `model`, created at `created`
    /// (Unix seconds). With `include_usage`, every chunk carries `"usage": null` and
    /// [`Self::write_usage`] writes the final usage chunk.
    pub fn new(request_id: &str, model: String, created: i64, include_usage: bool) -> Self {
        Self {
            id: format!("chatcmpl-{request_id}"),
            model,
            created,
            include_usage,
            sent_role: false,
            tool_calls_sent: 0,
        }
    }

    /// The chunk with the finish reason (`stop`, `length` or `tool_calls`) and an empty delta.
    pub fn write_finish(&mut self, out: &mut Vec<u8>, done_reason: Option<&str>) {
        let reason = finish_reason(done_reason, self.tool_calls_sent > 0);
        self.write_chunk(
            out,
            &[ChunkChoice {
                index: 0,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(reason),
            }],
            None,
        );
    }

    /// The usage chunk (empty `choices`), if the client asked for it, then `[DONE]`.
    pub fn write_usage(&self, out: &mut Vec<u8>, usage: Usage) {
        if self.include_usage {
            self.write_chunk(out, &[], Some(usage));
        }
        out.extend_from_slice(DONE_EVENT);
    }

    /// Appends the chunks for one upstream message: reasoning, then content, then tool calls
    /// (each whole, as Ollama produces them). Empty deltas are skipped.
    pub fn write_deltas(&mut self, out: &mut Vec<u8>, message: ollama::Message) {
        if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
            let delta = Delta {
                reasoning_content: Some(thinking),
                ..self.first_delta()
            };
            self.write_delta(out, delta);
        }
        let calls = message.tool_calls.filter(|c| !c.is_empty());
        if !message.content.is_empty() || (calls.is_none() && !self.sent_role) {
            let delta = Delta {
                content: Some(message.content),
                ..self.first_delta()
            };
            self.write_delta(out, delta);
        }
        if let Some(calls) = calls {
            let converted = tool_calls_to_openai(&calls, &self.id, self.tool_calls_sent);
            self.tool_calls_sent += converted.len();
            let delta = Delta {
                tool_calls: Some(converted),
                ..self.first_delta()
            };
            self.write_delta(out, delta);
        }
    }

    /// An empty delta that carries the role if it has not been sent yet.
    fn first_delta(&mut self) -> Delta {
        let role = (!self.sent_role).then_some("assistant");
        self.sent_role = true;
        Delta {
            role,
            ..Delta::default()
        }
    }

    fn write_delta(&self, out: &mut Vec<u8>, delta: Delta) {
        self.write_chunk(
            out,
            &[ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: None,
            }],
            None,
        );
    }

    fn write_chunk(&self, out: &mut Vec<u8>, choices: &[ChunkChoice], usage: Option<Usage>) {
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: "fp_ollama",
            choices,
            usage: self.include_usage.then_some(usage),
        };
        write_event(out, &chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(bytes: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(serde_json::Value::String(d.into())))
            .collect()
    }

    fn text(content: &str) -> ollama::Message {
        ollama::Message {
            role: "assistant".into(),
            content: content.into(),
            ..ollama::Message::default()
        }
    }

    #[test]
    fn role_once_then_content_then_finish_usage_and_done() {
        let mut writer = ChatChunkWriter::new("1", "m".into(), 7, true);
        let mut out = Vec::new();
        writer.write_deltas(&mut out, text("Hel"));
        writer.write_deltas(&mut out, text(""));
        writer.write_deltas(&mut out, text("lo"));
        writer.write_finish(&mut out, Some("stop"));
        writer.write_usage(&mut out, Usage::new(3, 2));
        let events = events(&out);
        assert_eq!(events.len(), 5, "the empty delta was skipped");
        assert_eq!(
            events[0]["choices"][0]["delta"],
            serde_json::json!({"role": "assistant", "content": "Hel"})
        );
        assert_eq!(
            events[1]["choices"][0]["delta"],
            serde_json::json!({"content": "lo"})
        );
        assert!(events[1]["usage"].is_null() && events[1].get("usage").is_some());
        assert_eq!(events[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[3]["usage"]["total_tokens"], 5);
        assert_eq!(events[4], "[DONE]");
    }

    #[test]
    fn tool_calls_number_on_and_finish_as_tool_calls() {
        let mut writer = ChatChunkWriter::new("c", "m".into(), 0, false);
        let mut out = Vec::new();
        let call = |name: &str| ollama::ToolCall {
            id: None,
            function: ollama::ToolCallFunction {
                index: None,
                name: name.into(),
                arguments: serde_json::json!({"a": 1}),
            },
        };
        let mut message = text("");
        message.tool_calls = Some(vec![call("f")]);
        writer.write_deltas(&mut out, message.clone());
        message.tool_calls = Some(vec![call("g")]);
        writer.write_deltas(&mut out, message);
        writer.write_finish(&mut out, Some("stop"));
        let events = events(&out);
        assert_eq!(
            events[0]["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        assert_eq!(
            events[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(events[2]["choices"][0]["finish_reason"], "tool_calls");
        assert!(events[0].get("usage").is_none());
    }

    proptest! {
        /// Whatever NDJSON lines Ollama sends, the writer emits well-formed SSE events of
        /// valid JSON, and never panics.
        #[test]
        fn arbitrary_lines_give_well_formed_events(lines in prop::collection::vec(".{0,40}", 0..20)) {
            let mut writer = ChatChunkWriter::new("c", "m".into(), 0, true);
            let mut out = Vec::new();
            for line in &lines {
                if let Ok(chunk) = serde_json::from_str::<ollama::ChatResponse>(line)
                    && let Some(message) = chunk.message
                {
                    writer.write_deltas(&mut out, message);
                }
                writer.write_deltas(&mut out, text(line));
            }
            writer.write_finish(&mut out, None);
            writer.write_usage(&mut out, Usage::new(0, 0));
            let text = String::from_utf8(out).unwrap();
            for event in text.split_terminator("\n\n") {
                let data = event.strip_prefix("data: ").unwrap();
                prop_assert!(data == "[DONE]" || serde_json::from_str::<serde_json::Value>(data).is_ok());
            }
        }
    }
}
