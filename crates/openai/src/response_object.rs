//! The Responses API's `response` object: the non-streamed answer, and the object the stream's
//! lifecycle events (`response.created`, `response.completed`, …) carry.

use aiproxy_ollama as ollama;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::chat_completion::tool_calls_to_openai;
use crate::responses_request::{ReasoningConfig, TextConfig, TextFormat};

/// A `response`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "resp_42", "object": "response", "created_at": 1767225600, "status": "completed", "completed_at": 1767225601, "error": null, "incomplete_details": null, "model": "llama3.2", "output": [{"type": "message", "id": "msg_42_0", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": "Hello there", "annotations": [], "logprobs": []}]}], "instructions": null, "max_output_tokens": null, "parallel_tool_calls": true, "previous_response_id": null, "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": null, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": null, "truncation": "disabled", "user": null, "metadata": {}, "usage": {"input_tokens": 26, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 31}}))]
pub struct ResponseObject {
    /// `resp_<request id>`.
    pub id: String,
    /// Always `response`.
    pub object: &'static str,
    /// Unix seconds.
    pub created_at: i64,
    /// `in_progress` while streaming, then `completed`, `incomplete` or `failed`.
    pub status: ResponseStatus,
    /// Unix seconds, once finished.
    pub completed_at: Option<i64>,
    /// Why the response failed.
    pub error: Option<ResponseError>,
    /// Why the response is incomplete (`max_output_tokens`).
    pub incomplete_details: Option<IncompleteDetails>,
    /// The model as requested.
    pub model: String,
    /// Reasoning, then the message, then the function calls, as the model produced them.
    pub output: Vec<OutputItem>,
    /// What the request set, repeated.
    #[serde(flatten)]
    pub settings: ResponseSettings,
    /// Token counts; null until the end of a stream.
    pub usage: Option<ResponseUsage>,
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Being generated.
    InProgress,
    /// Finished.
    Completed,
    /// Stopped at `max_output_tokens`.
    Incomplete,
    /// Failed part way.
    Failed,
}

/// `incomplete_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct IncompleteDetails {
    /// Always `max_output_tokens`.
    pub reason: &'static str,
}

/// `error` of a failed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ResponseError {
    /// `server_error` or `rate_limit_exceeded`.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The request's settings a response repeats; the official SDKs read several of them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResponseSettings {
    /// As requested.
    pub instructions: Option<String>,
    /// As requested.
    pub max_output_tokens: Option<u64>,
    /// As requested; `true` when absent.
    pub parallel_tool_calls: bool,
    /// Always null: the proxy keeps no responses.
    pub previous_response_id: Option<String>,
    /// As requested.
    pub reasoning: ReasoningConfig,
    /// Always `false`: nothing is stored.
    pub store: bool,
    /// As requested; null leaves the model's default.
    pub temperature: Option<f64>,
    /// As requested; plain text when absent.
    pub text: TextConfig,
    /// As requested; `auto` when absent.
    #[schema(value_type = Object)]
    pub tool_choice: Value,
    /// As requested.
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Value>,
    /// As requested.
    pub top_p: Option<f64>,
    /// As requested; `disabled` when absent.
    pub truncation: String,
    /// As requested.
    pub user: Option<String>,
    /// As requested; `{}` when absent.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl Default for ResponseSettings {
    fn default() -> Self {
        Self {
            instructions: None,
            max_output_tokens: None,
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: ReasoningConfig::default(),
            store: false,
            temperature: None,
            text: TextConfig {
                format: Some(TextFormat::Text),
            },
            tool_choice: Value::from("auto"),
            tools: Vec::new(),
            top_p: None,
            truncation: "disabled".into(),
            user: None,
            metadata: Map::new(),
        }
    }
}

/// One item of `output`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The model's reasoning (Ollama's `thinking`).
    Reasoning {
        /// `rs_<request id>_<output index>`.
        id: String,
        /// The whole reasoning, as one summary.
        summary: Vec<SummaryText>,
        /// The reasoning's plain text again, so clients that send reasoning back (as Ollama
        /// reads it) keep it.
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
        /// `in_progress`, `completed` or `incomplete`.
        status: ItemStatus,
    },
    /// The answer's text.
    Message {
        /// `msg_<request id>_<output index>`.
        id: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: ItemStatus,
        /// Always `assistant`.
        role: &'static str,
        /// One `output_text` part.
        content: Vec<OutputText>,
    },
    /// A call of one of the request's functions.
    FunctionCall {
        /// `fc_<request id>_<output index>`.
        id: String,
        /// `in_progress` or `completed`.
        status: ItemStatus,
        /// Ollama's call id (or `call_<request id>_<n>`); `function_call_output` refers to it.
        call_id: String,
        /// The function's name.
        name: String,
        /// The arguments, a JSON-encoded object.
        arguments: String,
    },
}

/// An output item's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Being streamed.
    InProgress,
    /// Whole.
    Completed,
    /// Cut at `max_output_tokens`.
    Incomplete,
}

/// An `output_text` part.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The text.
    pub text: String,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub annotations: Vec<Value>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub logprobs: Vec<Value>,
}

impl OutputText {
    /// A part holding `text`.
    pub fn new(text: String) -> Self {
        Self {
            kind: "output_text",
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// A `summary_text` part.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SummaryText {
    /// Always `summary_text`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

impl SummaryText {
    /// A part holding `text`.
    pub fn new(text: String) -> Self {
        Self {
            kind: "summary_text",
            text,
        }
    }
}

/// Token counts, as the Responses API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ResponseUsage {
    /// Prompt tokens (Ollama's `prompt_eval_count`).
    pub input_tokens: u64,
    /// Always zeros: Ollama reports no cache use.
    pub input_tokens_details: InputTokensDetails,
    /// Generated tokens, reasoning included (Ollama's `eval_count`).
    pub output_tokens: u64,
    /// Always zeros: Ollama does not count reasoning apart.
    pub output_tokens_details: OutputTokensDetails,
    /// Their sum.
    pub total_tokens: u64,
}

/// `input_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct InputTokensDetails {
    /// Always 0.
    pub cached_tokens: u64,
    /// Always 0.
    pub cache_write_tokens: u64,
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct OutputTokensDetails {
    /// Always 0.
    pub reasoning_tokens: u64,
}

impl ResponseUsage {
    /// Counts with their total.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            input_tokens_details: InputTokensDetails::default(),
            output_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: input_tokens.saturating_add(output_tokens),
        }
    }
}

/// The ids of one response and of its items, made from the request id.
#[derive(Debug, Clone)]
pub(crate) struct ResponseIds {
    request_id: String,
}

impl ResponseIds {
    pub(crate) fn new(request_id: &str) -> Self {
        Self {
            request_id: request_id.to_owned(),
        }
    }

    pub(crate) fn response(&self) -> String {
        format!("resp_{}", self.request_id)
    }

    /// The id of the item at `output_index`: `prefix` is `rs`, `msg` or `fc`.
    pub(crate) fn item(&self, prefix: &str, output_index: usize) -> String {
        format!("{prefix}_{}_{output_index}", self.request_id)
    }

    /// The function call items for Ollama's `calls`, the first at `output_index`, the calls
    /// numbered from `first_call` (for the ids of calls Ollama sent without one).
    pub(crate) fn function_calls(
        &self,
        calls: &[ollama::ToolCall],
        output_index: usize,
        first_call: usize,
    ) -> Vec<OutputItem> {
        tool_calls_to_openai(calls, &self.request_id, first_call)
            .into_iter()
            .enumerate()
            .map(|(i, call)| OutputItem::FunctionCall {
                id: self.item("fc", output_index + i),
                status: ItemStatus::Completed,
                call_id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect()
    }
}

/// A finished reasoning item: the whole reasoning as its one summary part, and again as its
/// `encrypted_content`.
pub(crate) fn reasoning_item(id: String, part: SummaryText, status: ItemStatus) -> OutputItem {
    OutputItem::Reasoning {
        id,
        encrypted_content: Some(part.text.clone()),
        summary: vec![part],
        status,
    }
}

/// A finished message item with its one text part.
pub(crate) fn message_item(id: String, part: OutputText, status: ItemStatus) -> OutputItem {
    OutputItem::Message {
        id,
        status,
        role: "assistant",
        content: vec![part],
    }
}

impl ResponseObject {
    /// A response that has not begun: `in_progress`, no output, no usage.
    pub(crate) fn begin(
        ids: &ResponseIds,
        model: String,
        created_at: i64,
        settings: ResponseSettings,
    ) -> Self {
        Self {
            id: ids.response(),
            object: "response",
            created_at,
            status: ResponseStatus::InProgress,
            completed_at: None,
            error: None,
            incomplete_details: None,
            model,
            output: Vec::new(),
            settings,
            usage: None,
        }
    }

    /// Marks the response finished, `incomplete` when Ollama stopped at the length limit.
    pub(crate) fn end(&mut self, done_reason: Option<&str>) {
        if done_reason == Some("length") {
            self.status = ResponseStatus::Incomplete;
            self.incomplete_details = Some(IncompleteDetails {
                reason: "max_output_tokens",
            });
        } else {
            self.status = ResponseStatus::Completed;
        }
    }

    /// Ollama's whole answer as the response `resp_<request_id>`, created at `created_at` and
    /// completed at `completed_at` (Unix seconds).
    ///
    /// Unlike Ollama's own layer, the text is kept next to tool calls, and an answer cut at
    /// the length limit is `incomplete`.
    pub fn from_ollama(
        answer: ollama::ChatResponse,
        request_id: &str,
        model: String,
        created_at: i64,
        completed_at: i64,
        settings: ResponseSettings,
    ) -> Self {
        let ids = ResponseIds::new(request_id);
        let mut response = Self::begin(&ids, model, created_at, settings);
        response.end(answer.done_reason.as_deref());
        let item_status = match response.status {
            ResponseStatus::Incomplete => ItemStatus::Incomplete,
            _ => ItemStatus::Completed,
        };
        let message = answer.message.unwrap_or_default();
        if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
            let id = ids.item("rs", response.output.len());
            response
                .output
                .push(reasoning_item(id, SummaryText::new(thinking), item_status));
        }
        let calls = message.tool_calls.unwrap_or_default();
        if !message.content.is_empty() || calls.is_empty() {
            let id = ids.item("msg", response.output.len());
            response.output.push(message_item(
                id,
                OutputText::new(message.content),
                item_status,
            ));
        }
        let calls = ids.function_calls(&calls, response.output.len(), 0);
        response.output.extend(calls);
        response.completed_at = Some(completed_at);
        response.usage = Some(ResponseUsage::new(
            answer.prompt_eval_count.unwrap_or(0),
            answer.eval_count.unwrap_or(0),
        ));
        response
    }

    /// Appends this response as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Strings, numbers and derived `Serialize`s do not fail, and writing into a `Vec`
        // cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

#[cfg(test)]
mod tests;
