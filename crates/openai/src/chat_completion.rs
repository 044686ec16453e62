//! The non-streamed chat answer (`chat.completion`), made from Ollama's and written as JSON.

use aiproxy_ollama as ollama;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::chat_request::FunctionCall;
use crate::usage::Usage;

/// `chat.completion`.
///
/// Written by [`ChatCompletion::write_json`] alone (it has no `Serialize`): a field added
/// here is added there.
#[derive(Debug, ToSchema)]
pub struct ChatCompletion {
    /// Unique per completion.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The model as requested.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<Choice>,
    /// Token counts from Ollama.
    pub usage: Usage,
    /// Always `fp_ollama`.
    pub system_fingerprint: &'static str,
}

/// One choice of a `chat.completion`.
#[derive(Debug, ToSchema)]
pub struct Choice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: AssistantMessage,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: Option<&'static str>,
}

/// The assistant's answer.
#[derive(Debug, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The text; null when the answer is only tool calls.
    pub content: Option<String>,
    /// The model's reasoning (Ollama's `thinking`), when it produced any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls, when the model made any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ResponseToolCall>>,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub refusal: Option<()>,
}

/// A tool call in an answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResponseToolCall {
    /// Position among the calls (streamed chunks need it; harmless elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The call's id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Name and JSON-string arguments.
    pub function: FunctionCall,
}

impl ChatCompletion {
    /// Ollama's whole answer as a `chat.completion` named `chatcmpl-<request_id>`;
    /// `request_id` also names the tool calls Ollama gave no id.
    pub fn from_ollama(
        answer: ollama::ChatResponse,
        request_id: &str,
        model: String,
        created: i64,
    ) -> Self {
        let message = answer.message.unwrap_or_default();
        let tool_calls = message
            .tool_calls
            .as_deref()
            .filter(|calls| !calls.is_empty())
            .map(|calls| tool_calls_to_openai(calls, request_id, 0));
        ChatCompletion {
            id: format!("chatcmpl-{request_id}"),
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                finish_reason: Some(finish_reason(
                    answer.done_reason.as_deref(),
                    tool_calls.is_some(),
                )),
                message: AssistantMessage {
                    role: "assistant",
                    content: if message.content.is_empty() && tool_calls.is_some() {
                        None
                    } else {
                        Some(message.content)
                    },
                    reasoning_content: message.thinking.filter(|t| !t.is_empty()),
                    tool_calls,
                    refusal: None,
                },
                logprobs: None,
            }],
            usage: Usage::from_ollama(answer.prompt_eval_count, answer.eval_count),
            system_fingerprint: "fp_ollama",
        }
    }

    /// Appends this completion as JSON.
    ///
    /// By hand because every non-streamed answer is written here: serde_json's derived
    /// `Serialize` escapes each field name at run time and writes it in three pieces; here the
    /// names are constants and only the values (the ids, the model and the answer's text) are
    /// escaped, about a third faster (`benches/wire.rs`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        push_field(out, b"{\"id\":", &self.id);
        push_field(out, b",\"object\":", self.object);
        push_field(out, b",\"created\":", &self.created);
        push_field(out, b",\"model\":", &self.model);
        out.extend_from_slice(b",\"choices\":[");
        for (position, choice) in self.choices.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            choice.write_json(out);
        }
        push_field(
            out,
            b"],\"usage\":{\"prompt_tokens\":",
            &self.usage.prompt_tokens,
        );
        push_field(
            out,
            b",\"completion_tokens\":",
            &self.usage.completion_tokens,
        );
        push_field(out, b",\"total_tokens\":", &self.usage.total_tokens);
        push_field(out, b"},\"system_fingerprint\":", self.system_fingerprint);
        out.push(b'}');
    }
}

impl Choice {
    fn write_json(&self, out: &mut Vec<u8>) {
        let message = &self.message;
        push_field(out, b"{\"index\":", &self.index);
        push_field(out, b",\"message\":{\"role\":", message.role);
        push_field(out, b",\"content\":", &message.content);
        if let Some(reasoning) = &message.reasoning_content {
            push_field(out, b",\"reasoning_content\":", reasoning);
        }
        if let Some(calls) = &message.tool_calls {
            push_field(out, b",\"tool_calls\":", calls);
        }
        push_field(out, b",\"refusal\":", &message.refusal);
        push_field(out, b"},\"logprobs\":", &self.logprobs);
        push_field(out, b",\"finish_reason\":", &self.finish_reason);
        out.push(b'}');
    }
}

/// Appends `name` (with its punctuation) and then `value` as JSON. Writing into a `Vec` cannot
/// fail, and the values written here (strings, integers, and types whose `Serialize` is
/// derived) have no failing `Serialize`.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &(impl Serialize + ?Sized)) {
    out.extend_from_slice(name);
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Maps Ollama's `done_reason` to OpenAI's `finish_reason`.
pub(crate) fn finish_reason(done_reason: Option<&str>, made_tool_calls: bool) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if made_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Converts Ollama's tool calls (arguments as an object) to OpenAI's (arguments as a JSON
/// string), giving calls without an id one of ours.
pub(crate) fn tool_calls_to_openai(
    calls: &[ollama::ToolCall],
    id_seed: &str,
    first_index: usize,
) -> Vec<ResponseToolCall> {
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let position = first_index + i;
            ResponseToolCall {
                index: u32::try_from(position).ok(),
                id: call
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("call_{id_seed}_{position}")),
                kind: "function",
                function: FunctionCall {
                    name: call.function.name.clone(),
                    arguments: match &call.function.arguments {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn written(completion: &ChatCompletion) -> Value {
        let mut out = Vec::new();
        completion.write_json(&mut out);
        serde_json::from_slice(&out).expect("write_json writes JSON")
    }

    fn answer(message: ollama::Message, done_reason: &str) -> ollama::ChatResponse {
        ollama::ChatResponse {
            message: Some(message),
            done: true,
            done_reason: Some(done_reason.into()),
            prompt_eval_count: Some(31),
            eval_count: None,
            ..ollama::ChatResponse::default()
        }
    }

    #[test]
    fn a_text_answer_is_written_with_every_field_the_sdks_need() {
        let text = "line\nbreak \"quote\" back\\slash \u{1} tab\t é 日本 \u{2028} 🦀";
        let message = ollama::Message {
            content: text.into(),
            ..ollama::Message::default()
        };
        let completion = ChatCompletion::from_ollama(
            answer(message, "length"),
            "\"q\"\u{7f}",
            "llama3.2:1b\\latest".into(),
            -1,
        );
        assert_eq!(
            written(&completion),
            json!({
                "id": "chatcmpl-\"q\"\u{7f}",
                "object": "chat.completion",
                "created": -1,
                "model": "llama3.2:1b\\latest",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "length"
                }],
                "usage": {"prompt_tokens": 31, "completion_tokens": 0, "total_tokens": 31},
                "system_fingerprint": "fp_ollama"
            })
        );
    }

    #[test]
    fn reasoning_and_tool_calls_appear_only_when_there_are_some() {
        let call = |id: Option<&str>| ollama::ToolCall {
            id: id.map(str::to_owned),
            function: ollama::ToolCallFunction {
                index: None,
                name: "get_weather".into(),
                arguments: json!({"city": "Paris \"FR\""}),
            },
        };
        let message = ollama::Message {
            thinking: Some("think\r\n\u{0}".into()),
            tool_calls: Some(vec![call(Some("call_x")), call(None)]),
            ..ollama::Message::default()
        };
        let completion = ChatCompletion::from_ollama(answer(message, "stop"), "r1", "m".into(), 0);
        let value = written(&completion);
        let message = &value["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null, "tool calls alone: no text");
        assert_eq!(message["reasoning_content"], "think\r\n\u{0}");
        assert_eq!(
            message["tool_calls"],
            json!([
                {"index": 0, "id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris \\\"FR\\\"\"}"}},
                {"index": 1, "id": "call_r1_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris \\\"FR\\\"\"}"}}
            ])
        );
        assert_eq!(value["choices"][0]["finish_reason"], "tool_calls");

        let plain = ChatCompletion::from_ollama(
            answer(ollama::Message::default(), "stop"),
            "r2",
            "m".into(),
            0,
        );
        let message = &written(&plain)["choices"][0]["message"];
        assert_eq!(
            message["content"], "",
            "an empty answer is empty text, not null"
        );
        assert!(message.get("reasoning_content").is_none() && message.get("tool_calls").is_none());
    }

    #[test]
    fn finish_reasons_follow_openai() {
        assert_eq!(finish_reason(Some("length"), true), "length");
        assert_eq!(finish_reason(Some("stop"), true), "tool_calls");
        assert_eq!(finish_reason(Some("stop"), false), "stop");
        assert_eq!(finish_reason(None, false), "stop");
    }
}
