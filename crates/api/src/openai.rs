//! OpenAI's wire types, as the official SDKs send and expect them.
//!
//! Requests are lenient where OpenAI is (unknown fields are ignored, `null` means absent);
//! responses carry every field the SDKs require.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/chat/completions` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}))]
pub struct ChatCompletionRequest {
    /// The Ollama model, e.g. `llama3.2` or `llama3.2:3b`.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Stream the answer as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options; `include_usage` adds a final chunk with the usage.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Deprecated name of `max_completion_tokens`; still honoured.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The most tokens to generate (Ollama's `num_predict`).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed for reproducible sampling.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Up to four sequences that stop generation.
    #[serde(default)]
    pub stop: Option<StopSequences>,
    /// -2 to 2.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// -2 to 2.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// `{"type":"json_object"}` or `{"type":"json_schema","json_schema":{"schema":…}}`.
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// Function tools the model may call.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or `{"type":"function","function":{"name":…}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Accepted for compatibility; Ollama decides itself.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// How many choices; Ollama can only produce 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// Log probabilities are not available through this proxy.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Log probabilities are not available through this proxy.
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// `none`, `minimal`, `low`, `medium`, `high`: maps to Ollama's `think`.
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    /// An end-user id for the caller's own tracking; not used by the proxy.
    #[serde(default)]
    pub user: Option<String>,
    /// Ollama-only settings, passed through: `{"options": {"num_ctx": 8192, "top_k": 20},
    /// "keep_alive": "10m", "think": false}`.
    #[serde(default)]
    pub ollama: Option<OllamaExtension>,
}

/// The `ollama` extension field: settings only Ollama understands.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OllamaExtension {
    /// Extra entries for Ollama's `options` (`num_ctx`, `top_k`, `min_p`, `repeat_penalty`, …).
    /// Fields the OpenAI request sets explicitly win over these.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Map<String, Value>>,
    /// How long Ollama keeps the model loaded: a duration like `"10m"` or seconds.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub keep_alive: Option<Value>,
    /// Ollama's `think`: `true`, `false`, or `"low"`/`"medium"`/`"high"`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub think: Option<Value>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a final chunk with the usage of the whole request.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    /// One sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

/// `response_format`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Plain text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    /// A name for the schema (not used by Ollama).
    #[serde(default)]
    pub name: Option<String>,
    /// The JSON schema itself.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub strict: Option<bool>,
}

/// A message's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (sent to Ollama as `system`).
    Developer,
    /// Instructions.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Text, or a list of text and image parts; may be null on an assistant message with
    /// tool calls.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// For `tool` messages, the tool's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tool calls the assistant made.
    #[serde(default)]
    pub tool_calls: Option<Vec<RequestToolCall>>,
    /// For `tool` messages, which call this answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// A message's content.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

// By hand rather than `#[serde(untagged)]`, which buffers every message's content and then
// tries each variant on the copy: this runs for every message of every request.
impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = MessageContent;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(text.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(text))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(MessageContent::Parts(parts))
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One part of a multi-part message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, by `data:` URI or http(s) URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

/// `image_url`: an object with `url`, or (as some clients send) the URL string itself.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ImageUrl {
    /// `{"url": "...", "detail": "auto"}`.
    Object {
        /// A `data:image/...;base64,` URI or an http(s) URL.
        url: String,
        /// Ignored: Ollama has no detail levels.
        #[serde(default)]
        detail: Option<String>,
    },
    /// The URL alone.
    Bare(String),
}

impl ImageUrl {
    /// The URL, whichever form it came in.
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url, .. } | ImageUrl::Bare(url) => url,
        }
    }
}

/// A tool call in an assistant message of the request (arguments as a JSON string).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestToolCall {
    /// The call's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The function called.
    pub function: FunctionCall,
}

/// A function call: name and JSON-encoded arguments.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON string.
    #[serde(default)]
    pub arguments: String,
}

/// `chat.completion`.
#[derive(Debug, Serialize, ToSchema)]
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

impl ChatCompletion {
    /// Appends this completion as JSON: exactly the bytes its `Serialize` writes, faster.
    ///
    /// Every non-streaming answer is written here. serde_json escapes each field name at run
    /// time and writes it in three pieces; here the names are constants, so only the values
    /// (the ids, the model and the answer's text) are escaped. `tests` compares the two.
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

/// One choice of a `chat.completion`.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
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

/// Token counts.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Usage {
    /// Tokens in the prompt (Ollama's `prompt_eval_count`).
    pub prompt_tokens: u64,
    /// Tokens generated (Ollama's `eval_count`).
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl Usage {
    /// Counts with their total.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

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

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<Model>,
}

/// One model.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "llama3.2:latest", "object": "model", "created": 1746405464, "owned_by": "library"}))]
pub struct Model {
    /// The model's name with its tag.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// When the model was last modified, Unix seconds.
    pub created: i64,
    /// The namespace: `library` for official models.
    pub owned_by: String,
}

/// One Server-Sent Event of a streamed answer, as the stream carries it.
#[derive(Debug, ToSchema)]
pub struct SseEvent {
    /// A JSON chunk (`chat.completion.chunk` or `text_completion`), a JSON `{"error": {...}}`
    /// as the last event when Ollama fails after the stream began, or `[DONE]` at the end of a
    /// successful answer.
    pub data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(json: &str) -> Result<MessageContent, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn content_is_a_string_or_a_list_of_parts() {
        assert!(matches!(content(r#""hi""#), Ok(MessageContent::Text(t)) if t == "hi"));
        assert!(matches!(content(r#""a\nb""#), Ok(MessageContent::Text(t)) if t == "a\nb"));
        let parts = content(
            r#"[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]"#,
        );
        assert!(
            matches!(&parts, Ok(MessageContent::Parts(p)) if p.len() == 2),
            "{parts:?}"
        );
        assert!(matches!(content("[]"), Ok(MessageContent::Parts(p)) if p.is_empty()));
    }

    fn completion(content: Option<&str>, reasoning: Option<&str>, calls: usize) -> ChatCompletion {
        let tool_calls = (calls > 0).then(|| {
            (0..calls)
                .map(|n| ResponseToolCall {
                    index: (n % 2 == 1).then_some(u32::try_from(n).unwrap_or(0)),
                    id: format!("call_{n}"),
                    kind: "function",
                    function: FunctionCall {
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris \"FR\""}"#.into(),
                    },
                })
                .collect()
        });
        let choice = |index| Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content: content.map(str::to_owned),
                reasoning_content: reasoning.map(str::to_owned),
                tool_calls: tool_calls.clone(),
                refusal: None,
            },
            logprobs: None,
            finish_reason: Some(if calls > 0 { "tool_calls" } else { "stop" }),
        };
        ChatCompletion {
            id: "chatcmpl-\"quoted\"\u{7f}".into(),
            object: "chat.completion",
            created: -1,
            model: "llama3.2:1b\\latest".into(),
            choices: vec![choice(0), choice(1)],
            usage: Usage::new(u64::MAX, 3),
            system_fingerprint: "fp_ollama",
        }
    }

    #[test]
    fn a_completion_is_written_byte_for_byte_as_serde_writes_it() {
        let texts = [
            Some("The sky is blue."),
            Some(""),
            None,
            Some("line\nbreak \"quote\" back\\slash \u{1} tab\t é 日本 \u{2028} 🦀"),
        ];
        for content in texts {
            for reasoning in [None, Some("think\r\n\u{0}")] {
                for calls in [0, 2] {
                    let completion = completion(content, reasoning, calls);
                    let mut fast = Vec::new();
                    completion.write_json(&mut fast);
                    let derived = serde_json::to_vec(&completion).expect("serialises");
                    assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&derived)
                    );
                }
            }
        }
    }

    #[test]
    fn other_content_is_refused_with_what_was_expected() {
        let error = content("42").unwrap_err().to_string();
        assert!(
            error.contains("expected a string or an array of content parts"),
            "{error}"
        );
        let error = content(r#"[{"type":"video","url":"x"}]"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant `video`"), "{error}");
    }
}
