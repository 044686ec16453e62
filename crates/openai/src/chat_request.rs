//! The chat completion request, as the official SDKs send it.
//!
//! Lenient where OpenAI is: unknown fields are ignored and `null` means absent.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::sampling::StopSequences;
use crate::sse::StreamOptions;
use crate::text_or_list::TextOrList;

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

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match TextOrList::deserialize(deserializer)? {
            TextOrList::Text(text) => MessageContent::Text(text),
            TextOrList::List(parts) => MessageContent::Parts(parts),
        })
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
