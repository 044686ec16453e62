//! The Responses API request (`POST /v1/responses`), as the official SDKs send it.
//!
//! Stateless: the whole conversation comes in `input`. Lenient where OpenAI is: unknown fields
//! are ignored and `null` means absent.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::chat_request::{OllamaExtension, Role};
use crate::text_or_list::TextOrList;

/// `POST /v1/responses` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "llama3.2", "input": "Why is the sky blue?", "max_output_tokens": 200}))]
pub struct ResponsesRequest {
    /// The Ollama model, e.g. `llama3.2`.
    pub model: String,
    /// A user message as text, or the conversation as a list of items (messages, function
    /// calls and their outputs, reasoning).
    #[serde(default)]
    pub input: Option<ResponsesInput>,
    /// Instructions, sent first as a system message.
    #[serde(default)]
    pub instructions: Option<String>,
    /// The most tokens to generate, reasoning included (Ollama's `num_predict`); at least 1.
    #[serde(default)]
    pub max_output_tokens: Option<i64>,
    /// Sampling temperature, 0 to 2; absent leaves the model's default.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Stream the answer as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Tools the model may call; only `{"type":"function","name",…}` tools.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or `{"type":"function","name":…}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Accepted and echoed; Ollama decides itself.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// The output format: `{"format":{"type":"text"|"json_object"|"json_schema",…}}`.
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// `{"effort": …}`: maps to Ollama's `think`.
    #[serde(default)]
    pub reasoning: Option<ReasoningConfig>,
    /// Accepted; nothing is stored (the answer says `store: false`).
    #[serde(default)]
    pub store: Option<bool>,
    /// Refused: the proxy keeps no responses; send the whole conversation in `input`.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Refused: the proxy keeps no conversations; send the whole conversation in `input`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub conversation: Option<Value>,
    /// Echoed in the answer.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Echoed in the answer (`disabled` when absent).
    #[serde(default)]
    pub truncation: Option<String>,
    /// An end-user id for the caller's own tracking; echoed.
    #[serde(default)]
    pub user: Option<String>,
    /// Refused when true: a background response would have to be kept for polling.
    #[serde(default)]
    pub background: Option<bool>,
    /// Log probabilities are not available through this proxy.
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// Ollama-only settings, as in chat completions.
    #[serde(default)]
    pub ollama: Option<OllamaExtension>,
}

/// `input`: text, or a list of items.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum ResponsesInput {
    /// One user message.
    Text(String),
    /// The conversation.
    Items(Vec<InputItem>),
}

impl<'de> Deserialize<'de> for ResponsesInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match TextOrList::deserialize(deserializer)? {
            TextOrList::Text(text) => ResponsesInput::Text(text),
            TextOrList::List(items) => ResponsesInput::Items(items),
        })
    }
}

/// One item of `input`.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum InputItem {
    /// A message (`type` may be left out when `role` is given).
    Message(InputMessage),
    /// A function call the model made earlier.
    FunctionCall(FunctionCallInput),
    /// The result of a function call.
    FunctionCallOutput(FunctionCallOutputInput),
    /// The model's reasoning, as an earlier answer gave it.
    Reasoning(ReasoningInput),
    /// An item of a type the proxy cannot take (`item_reference`, built-in tool calls, …);
    /// refused in translation, naming the item.
    #[schema(value_type = Object)]
    Unsupported(String),
}

// By hand: `type` may be missing (a message given as `{"role", "content"}`), which serde's
// tagged enums do not allow, and an unknown type must reach translation to be refused with
// the item's position.
impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let item = Map::<String, Value>::deserialize(deserializer)?;
        let kind = match item.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(kind)) => Some(kind.clone()),
            Some(_) => return Err(D::Error::custom("an input item's `type` must be a string")),
        };
        let item = Value::Object(item);
        let parsed = match kind.as_deref() {
            None if item.get("role").is_none() => {
                return Err(D::Error::custom(
                    "an input item needs a `type` (or a `role`, for a message)",
                ));
            }
            None | Some("message") => serde_json::from_value(item).map(InputItem::Message),
            Some("function_call") => serde_json::from_value(item).map(InputItem::FunctionCall),
            Some("function_call_output") => {
                serde_json::from_value(item).map(InputItem::FunctionCallOutput)
            }
            Some("reasoning") => serde_json::from_value(item).map(InputItem::Reasoning),
            Some(other) => Ok(InputItem::Unsupported(other.to_owned())),
        };
        parsed.map_err(D::Error::custom)
    }
}

/// A message item.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InputMessage {
    /// `user`, `assistant`, `system` or `developer`.
    pub role: Role,
    /// Text, or a list of parts.
    pub content: InputContent,
}

/// A message's content, or a function call's output.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum InputContent {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<InputPart>),
}

impl<'de> Deserialize<'de> for InputContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match TextOrList::deserialize(deserializer)? {
            TextOrList::Text(text) => InputContent::Text(text),
            TextOrList::List(parts) => InputContent::Parts(parts),
        })
    }
}

/// One part of a message's content.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputPart {
    /// Text from the user (or instructions).
    InputText {
        /// The text.
        text: String,
    },
    /// Text of an earlier answer, sent back.
    OutputText {
        /// The text.
        text: String,
    },
    /// A refusal of an earlier answer, sent back.
    Refusal {
        /// The refusal's text.
        refusal: String,
    },
    /// An image, as a `data:` URI or an http(s) URL in `image_url`.
    InputImage {
        /// A `data:image/...;base64,` URI or an http(s) URL.
        #[serde(default)]
        image_url: Option<String>,
        /// A stored file: refused, the proxy stores no files.
        #[serde(default)]
        file_id: Option<String>,
    },
    /// A file: refused, Ollama takes no files.
    InputFile {},
    /// Any other part type: refused, naming the part.
    #[serde(other)]
    Unsupported,
}

/// A function call the model made, sent back as history.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionCallInput {
    /// The id the call's output refers to.
    pub call_id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, a JSON-encoded object.
    #[serde(default)]
    pub arguments: String,
}

/// A function call's result.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionCallOutputInput {
    /// The call this answers.
    pub call_id: String,
    /// The result: text, or text and image parts.
    pub output: InputContent,
}

/// Reasoning from an earlier answer.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReasoningInput {
    /// Summaries of the reasoning.
    #[serde(default)]
    pub summary: Option<Vec<ReasoningText>>,
    /// The reasoning as this proxy (like Ollama) hands it out: its plain text.
    #[serde(default)]
    pub encrypted_content: Option<String>,
    /// The reasoning text itself.
    #[serde(default)]
    pub content: Option<Vec<ReasoningText>>,
}

/// A `summary_text` or `reasoning_text` part.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReasoningText {
    /// The text.
    #[serde(default)]
    pub text: String,
}

/// `text`: the output format.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TextConfig {
    /// Plain text, any JSON object, or JSON following a schema.
    #[serde(default)]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Plain text (the default).
    Text,
    /// Any JSON object (Ollama's `format: "json"`).
    JsonObject,
    /// JSON following `schema`.
    JsonSchema {
        /// A name for the schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The JSON schema.
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        schema: Option<Value>,
        /// What the schema is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Accepted and echoed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// `reasoning`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReasoningConfig {
    /// `none`, `minimal`, `low`, `medium`, `high`, `xhigh` or `max`.
    #[serde(default)]
    pub effort: Option<String>,
    /// Accepted and echoed: the reasoning is summarised whole when the model produces some.
    #[serde(default)]
    pub summary: Option<String>,
}
