//! The Messages API request (`POST /v1/messages`), as Anthropic's SDKs and Claude Code send
//! it.
//!
//! Lenient where Anthropic's clients need it: unknown fields are ignored (SDK objects sent
//! back carry `citations: null`, `caller: null`, `cache_control`, …), `null` means absent,
//! and the sampling fields that API version 2026-10-21 removed (`temperature`, `top_p`,
//! `top_k`) are still taken, since older clients send them.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/messages` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "llama3.2", "max_tokens": 256, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}))]
pub struct MessagesRequest {
    /// The Ollama model, e.g. `llama3.2`.
    pub model: String,
    /// The most tokens to generate (Ollama's `num_predict`); required, at least 1.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// The conversation so far; at least one message.
    #[serde(default)]
    pub messages: Vec<InputMessage>,
    /// Instructions: text, or a list of text blocks.
    #[serde(default)]
    pub system: Option<SystemPrompt>,
    /// Sequences that stop generation.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Stream the answer as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// 0 to 1 (removed by API version 2026-10-21; still taken).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// 0 to 1 (removed by API version 2026-10-21; still taken).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sample from the top K tokens only (removed by API version 2026-10-21; still taken).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Custom tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// `auto`, `any`, `tool` (with `name`) or `none`.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking: `enabled`, `disabled` or `adaptive`.
    #[serde(default)]
    pub thinking: Option<ThinkingConfig>,
    /// `effort` (a thinking level when `thinking` is absent) and `format` (a JSON schema).
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
}

/// A message's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (and tool results).
    User,
    /// The model.
    Assistant,
    /// Instructions inside the conversation (API version 2026-10-21).
    System,
}

/// One message of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InputMessage {
    /// Who wrote it.
    pub role: Role,
    /// Text, or a list of content blocks.
    pub content: MessageContent,
}

/// A message's content, a tool result's content, or the system prompt: text, or blocks.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

// By hand rather than `#[serde(untagged)]`, which buffers the content and tries each variant
// on the copy, and then reports a failing block only as "did not match any variant".
impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = MessageContent;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content blocks")
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
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(MessageContent::Blocks(blocks))
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// The system prompt: text, or text blocks (other blocks are ignored).
pub type SystemPrompt = MessageContent;

/// A content block of a request message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image: base64 data, or a URL the proxy fetches.
    Image {
        /// Where the image is.
        source: ImageSource,
    },
    /// A tool call the assistant made.
    ToolUse {
        /// The call's id; the tool's result refers to it.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        #[serde(default)]
        #[schema(value_type = Object)]
        input: Value,
    },
    /// A tool's result, in a user message.
    ToolResult {
        /// The call this answers.
        tool_use_id: String,
        /// Text, or text and image blocks.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        content: Option<MessageContent>,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// The assistant's reasoning, sent back.
    Thinking {
        /// The reasoning text.
        #[serde(default)]
        thinking: String,
    },
    /// Reasoning Anthropic encrypted; nothing Ollama can read, so it is dropped.
    RedactedThinking {},
    /// Documents, search results, server tool blocks, …: dropped, as Ollama's own layer does.
    #[serde(other)]
    Other,
}

/// An image block's `source`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// The image itself.
    Base64 {
        /// `image/jpeg`, `image/png`, `image/gif` or `image/webp` (the bytes decide).
        #[serde(default)]
        media_type: Option<String>,
        /// Standard base64.
        data: String,
    },
    /// An http(s) URL, fetched by the proxy.
    Url {
        /// The URL.
        url: String,
    },
    /// Any other source (a stored `file`): refused.
    #[serde(other)]
    Other,
}

/// A tool definition.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Tool {
    /// The tool's name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// The JSON schema of its input (an object schema).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    /// `custom` or absent; Anthropic's server tools (`web_search_20250305`, `bash_20250124`,
    /// …) are refused.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `tool`: which one.
    #[serde(default)]
    pub name: Option<String>,
}

/// `thinking`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThinkingConfig {
    /// `enabled`, `disabled` or `adaptive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Accepted; Ollama takes no thinking budget.
    #[serde(default)]
    pub budget_tokens: Option<u64>,
}

/// `output_config`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OutputConfig {
    /// `low`, `medium`, `high`, `xhigh` or `max`: a thinking level when `thinking` is absent.
    #[serde(default)]
    pub effort: Option<String>,
    /// `{"type":"json_schema","schema":{…}}`: structured output.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub format: Option<Value>,
}
