//! Serde types for the JSON bodies of Ollama's native API, shaped after `api/types.go`.
//!
//! Requests serialize only the fields that are set, so Ollama applies its own defaults for the
//! rest. Responses are lenient: every field a real server may leave out (or send as `null`)
//! is optional or falls back to its default, and unknown fields are ignored, because Ollama
//! adds fields often and older servers omit ones that newer servers send.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

mod image;
mod native;
#[cfg(test)]
mod tests;

pub use image::{ImageError, image_from_base64, image_kind};
pub use native::{
    BYTES_PER_TOKEN_ESTIMATE, KeepAlive, LineSummary, NativeEndpoint, NativeRequest,
    NativeRequestError, Text, estimate_tokens,
};

/// Reads `null` as the type's default, so a server that writes `"content": null` or
/// `"models": null` is treated like one that omitted the field.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// The body of `POST /api/chat`.
///
/// `stream` is overwritten by [`OllamaClient::chat`](crate::OllamaClient::chat) and
/// [`OllamaClient::chat_stream`](crate::OllamaClient::chat_stream); every other field is sent
/// exactly as given (`options` as the caller's map, key for key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name, `name:tag` (the tag defaults to `latest` on the server).
    pub model: String,
    /// The conversation so far. An empty list only loads the model.
    pub messages: Vec<Message>,
    /// Tool definitions, `{"type":"function","function":{name, description, parameters}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"json"` for JSON mode, or a JSON schema object for structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Model and runtime parameters (`num_predict`, `temperature`, `stop`, `seed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Whether the reply is streamed; the client methods set this themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// How long the model stays loaded: a Go duration string (`"5m"`) or seconds as a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// `true`/`false`, or `"low"`/`"medium"`/`"high"` for models that take a level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
}

impl ChatRequest {
    /// Sets `options.num_predict` (the completion budget), creating `options` if needed.
    pub fn set_num_predict(&mut self, tokens: u64) {
        set_num_predict(&mut self.options, tokens);
    }

    /// An estimate of the prompt's tokens before Ollama counts them: [`estimate_tokens`] of
    /// the text of every message (content, reasoning, tool calls) and of the tool
    /// definitions, images left out.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        let mut bytes = JsonBytes(0);
        for message in &self.messages {
            bytes.0 +=
                (message.content.len() + message.thinking.as_ref().map_or(0, String::len)) as u64;
            for call in message.tool_calls.iter().flatten() {
                bytes.0 += call.function.name.len() as u64;
                // Counting into a sink cannot fail.
                let _ = serde_json::to_writer(&mut bytes, &call.function.arguments);
            }
        }
        if let Some(tools) = &self.tools {
            let _ = serde_json::to_writer(&mut bytes, tools);
        }
        estimate_tokens(bytes.0)
    }
}

/// Sets `num_predict` in a request's `options`, creating them when there were none.
fn set_num_predict(options: &mut Option<Map<String, Value>>, tokens: u64) {
    options
        .get_or_insert_with(Map::new)
        .insert("num_predict".into(), Value::from(tokens));
}

/// A writer that only counts the bytes written to it.
struct JsonBytes(u64);

impl std::io::Write for JsonBytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One chat message, in a request's history or in a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub role: String,
    /// The text; the native API has no content parts, so this is always a plain string.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
    /// Images as padded standard base64, without a `data:` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// The model's reasoning, for thinking models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Tool calls made by the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// On a `tool` message: the name of the tool whose result this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// On a `tool` message: the id of the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A tool call. Servers before 2025 send neither `id` nor `function.index`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id (`call_` plus 8 characters on current servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What to call and with which arguments.
    #[serde(default, deserialize_with = "null_as_default")]
    pub function: ToolCallFunction,
}

/// The function part of a [`ToolCall`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFunction {
    /// Position of this call among the calls of one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The tool's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The arguments as a JSON **object** (not a string, unlike OpenAI); `null` when absent.
    #[serde(default)]
    pub arguments: Value,
}

/// A reply of `POST /api/chat`: the whole answer, or one line of a stream.
///
/// Metrics are optional because Ollama omits zero values and cloud models omit most durations;
/// durations are in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// RFC 3339 timestamp of this object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
    /// The message (or, in a stream, the delta carried by this line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// `true` on the last object; only that one carries `done_reason` and the metrics.
    #[serde(default, deserialize_with = "null_as_default")]
    pub done: bool,
    /// `stop`, `length`, `load` or `unload`; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// Total time spent on the request, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    /// Time spent loading the model, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    /// Number of prompt tokens evaluated (the prompt-token count for usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
    /// Time spent evaluating the prompt, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_duration: Option<u64>,
    /// Number of tokens generated (the completion-token count for usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u64>,
    /// Time spent generating, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_duration: Option<u64>,
}

/// The body of `POST /api/generate` (raw completion).
///
/// `stream` is overwritten by the client methods; every other field is sent as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The model name.
    pub model: String,
    /// The prompt. An empty prompt only loads the model.
    pub prompt: String,
    /// Text after the insertion point, for fill-in-the-middle models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Images as padded standard base64, without a `data:` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// Overrides the model's system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `"json"` or a JSON schema object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Model and runtime parameters, sent as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    /// Whether the reply is streamed; the client methods set this themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `true` sends the prompt without applying the model's template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<bool>,
    /// How long the model stays loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Thinking switch or level, as for chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
}

impl GenerateRequest {
    /// Sets `options.num_predict` (the completion budget), creating `options` if needed.
    pub fn set_num_predict(&mut self, tokens: u64) {
        set_num_predict(&mut self.options, tokens);
    }
}

/// A reply of `POST /api/generate`: the whole answer, or one line of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateResponse {
    /// The model that answered.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// RFC 3339 timestamp of this object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_at: String,
    /// The generated text (or, in a stream, this line's piece of it).
    #[serde(default, deserialize_with = "null_as_default")]
    pub response: String,
    /// The model's reasoning, for thinking models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// `true` on the last object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub done: bool,
    /// `stop`, `length`, `load` or `unload`; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// The token context (deprecated by Ollama; final object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<i64>>,
    /// Total time spent on the request, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    /// Time spent loading the model, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    /// Number of prompt tokens evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
    /// Time spent evaluating the prompt, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_duration: Option<u64>,
    /// Number of tokens generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u64>,
    /// Time spent generating, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_duration: Option<u64>,
}

/// The body of `POST /api/embed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// The embedding model.
    pub model: String,
    /// A string, or an array of strings (one embedding each).
    pub input: Value,
    /// `false` makes an over-long input an error instead of being cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// Shortens the vectors, for models that support it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// How long the model stays loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Model and runtime parameters, sent as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
}

/// The reply of `POST /api/embed`: one vector per input, in input order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// The model that answered.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The vectors.
    #[serde(default, deserialize_with = "null_as_default")]
    pub embeddings: Vec<Vec<f32>>,
    /// Total time spent on the request, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    /// Time spent loading the model, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    /// Number of input tokens (the prompt-token count for usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u64>,
}

/// The reply of `GET /api/tags`: the installed models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagsResponse {
    /// The models; empty when none are installed (also when the server sends `null`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub models: Vec<ModelInfo>,
}

/// One installed model, as listed by `/api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name to use in requests, e.g. `llama3.2:latest`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Same as `name` on current servers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// When the model was last changed, RFC 3339 with the server's offset.
    #[serde(default, deserialize_with = "null_as_default")]
    pub modified_at: String,
    /// Size on disk in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 digest of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Family, size and quantization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ModelDetails>,
    /// `completion`, `tools`, `vision`, `embedding`, `thinking`, ...; sent by servers since v0.33.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

/// The reply of `GET /api/ps`: the models loaded in memory right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsResponse {
    /// The loaded models, longest remaining keep-alive first; empty when none is loaded.
    #[serde(default, deserialize_with = "null_as_default")]
    pub models: Vec<RunningModel>,
}

/// One loaded model, as listed by `/api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningModel {
    /// The model's name, e.g. `llama3.2:latest`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Same as `name` on current servers.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// Size in memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 digest of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Family, size and quantization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ModelDetails>,
    /// When the model will be unloaded, RFC 3339 with the server's offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The part of `size` held in GPU memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_vram: Option<u64>,
    /// The context window the model was loaded with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
}

/// Details of a model, shared by `/api/tags` and `/api/show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelDetails {
    /// The model this one was derived from (often `""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_model: Option<String>,
    /// File format, e.g. `gguf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Model family, e.g. `llama`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// All families the model belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<String>>,
    /// Parameter count as text, e.g. `3.2B`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_size: Option<String>,
    /// Quantization, e.g. `Q4_K_M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization_level: Option<String>,
}

/// The reply of `POST /api/show`, reduced to the fields the proxy uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowResponse {
    /// Family, size and quantization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ModelDetails>,
    /// What the model can do; `vision` means it accepts images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// When the model was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
    /// GGUF metadata, e.g. `"llama.context_length": 8192`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_info: Option<Map<String, Value>>,
    /// The prompt template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The Modelfile parameters as text, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<String>,
    /// The licence text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// The reply of `GET /api/version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// The server version, e.g. `0.33.0`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
}

/// The body of `POST /api/show`.
#[derive(Debug, Serialize)]
pub(crate) struct ShowRequest<'a> {
    pub(crate) model: &'a str,
}

/// A [`ChatRequest`] as sent: borrowed, with `stream` forced.
///
/// Borrowing avoids copying large image payloads just to change one flag, and the exhaustive
/// destructuring in [`ChatBody::new`] makes the compiler flag a field added to [`ChatRequest`]
/// but forgotten here.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a Map<String, Value>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<&'a Value>,
}

impl<'a> ChatBody<'a> {
    pub(crate) fn new(request: &'a ChatRequest, stream: bool) -> Self {
        let ChatRequest {
            model,
            messages,
            tools,
            format,
            options,
            stream: _,
            keep_alive,
            think,
        } = request;
        ChatBody {
            model,
            messages,
            tools: tools.as_ref(),
            format: format.as_ref(),
            options: options.as_ref(),
            stream,
            keep_alive: keep_alive.as_ref(),
            think: think.as_ref(),
        }
    }
}

/// A [`GenerateRequest`] as sent: borrowed, with `stream` forced (see [`ChatBody`]).
#[derive(Debug, Serialize)]
pub(crate) struct GenerateBody<'a> {
    model: &'a str,
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    suffix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a Map<String, Value>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<&'a Value>,
}

impl<'a> GenerateBody<'a> {
    pub(crate) fn new(request: &'a GenerateRequest, stream: bool) -> Self {
        let GenerateRequest {
            model,
            prompt,
            suffix,
            images,
            system,
            format,
            options,
            stream: _,
            raw,
            keep_alive,
            think,
        } = request;
        GenerateBody {
            model,
            prompt,
            suffix: suffix.as_deref(),
            images: images.as_ref(),
            system: system.as_deref(),
            format: format.as_ref(),
            options: options.as_ref(),
            stream,
            raw: *raw,
            keep_alive: keep_alive.as_ref(),
            think: think.as_ref(),
        }
    }
}
