//! The streamed Responses API answer: Ollama's chat lines as the Responses API's named
//! Server-Sent Events, in the order the specification and the official SDKs' stream helpers
//! require.
//!
//! Pure: [`ResponseEventWriter`] appends bytes to a buffer and keeps the state one stream
//! needs: the `response` object (its finished items, its status), the item being streamed
//! and the events' `sequence_number`. Every item that is opened is closed before the next
//! one opens (Ollama's own layer gives a function call the index of a still-open message),
//! and every stream ends with exactly one terminal event: `response.completed`,
//! `response.incomplete` (stopped at the length limit) or `response.failed` (after an `error`
//! event).

use aiproxy_ollama as ollama;
use serde::Serialize;
use serde_json::Value;

use crate::error::ErrorBody;
use crate::response_object::{
    ItemStatus, OutputItem, OutputText, ResponseError, ResponseIds, ResponseObject,
    ResponseSettings, ResponseStatus, ResponseUsage, SummaryText, message_item, reasoning_item,
};
use crate::sse::write_named_event;

/// Room for one streamed event: a text delta with its `event:` line is about 220 bytes.
pub const RESPONSE_EVENT_CAPACITY: usize = 320;

/// Writes the events of one streamed response.
#[derive(Debug)]
pub struct ResponseEventWriter {
    ids: ResponseIds,
    /// The response as the lifecycle events show it: closed items only.
    response: ResponseObject,
    /// The next event's `sequence_number`.
    sequence: u64,
    /// `response.created` and `response.in_progress` are written.
    started: bool,
    /// The open item is closed and the status is set.
    finished: bool,
    /// The terminal event is written; nothing follows it.
    ended: bool,
    /// The item being streamed, if any.
    open: Option<OpenItem>,
    /// Tool calls so far, to name those Ollama sent without an id.
    tool_calls: usize,
}

/// The reasoning or message item being streamed, with its text so far.
#[derive(Debug)]
struct OpenItem {
    kind: OpenKind,
    id: String,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenKind {
    Reasoning,
    Message,
}

impl ResponseEventWriter {
    /// A writer for the response `resp_<request_id>` of `model`, created at `created_at` (Unix
    /// seconds), repeating the request's `settings`.
    pub fn new(
        request_id: &str,
        model: String,
        created_at: i64,
        settings: ResponseSettings,
    ) -> Self {
        let ids = ResponseIds::new(request_id);
        let response = ResponseObject::begin(&ids, model, created_at, settings);
        Self {
            ids,
            response,
            sequence: 0,
            started: false,
            finished: false,
            ended: false,
            open: None,
            tool_calls: 0,
        }
    }

    /// `response.created` then `response.in_progress`, once; every other method writes them
    /// first if they are not written yet.
    pub fn write_start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.write_lifecycle(out, "response.created");
        self.write_lifecycle(out, "response.in_progress");
    }

    /// The events for one upstream message: reasoning, then text, then tool calls (each
    /// whole, as Ollama produces them). Empty parts write nothing.
    pub fn write_deltas(&mut self, out: &mut Vec<u8>, message: ollama::Message) {
        if self.finished {
            return;
        }
        self.write_start(out);
        if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
            self.open_item(out, OpenKind::Reasoning);
            let seq = self.next_sequence();
            if let Some(open) = &mut self.open {
                write_named_event(
                    out,
                    "response.reasoning_summary_text.delta",
                    &SummaryTextDelta {
                        kind: "response.reasoning_summary_text.delta",
                        sequence_number: seq,
                        item_id: &open.id,
                        output_index: self.response.output.len(),
                        summary_index: 0,
                        delta: &thinking,
                    },
                );
                open.text.push_str(&thinking);
            }
        }
        if !message.content.is_empty() {
            self.open_item(out, OpenKind::Message);
            let seq = self.next_sequence();
            if let Some(open) = &mut self.open {
                write_named_event(
                    out,
                    "response.output_text.delta",
                    &TextDelta {
                        kind: "response.output_text.delta",
                        sequence_number: seq,
                        item_id: &open.id,
                        output_index: self.response.output.len(),
                        content_index: 0,
                        delta: &message.content,
                        logprobs: &[],
                    },
                );
                open.text.push_str(&message.content);
            }
        }
        if let Some(calls) = message.tool_calls.filter(|c| !c.is_empty()) {
            self.close_item(out, ItemStatus::Completed);
            let items =
                self.ids
                    .function_calls(&calls, self.response.output.len(), self.tool_calls);
            self.tool_calls += calls.len();
            for item in items {
                self.write_function_call(out, item);
            }
        }
    }

    /// The end of the answer: closes the open item and settles the status (`incomplete` when
    /// Ollama's `done_reason` is `length`). The terminal event waits for
    /// [`Self::write_usage`], so it can carry the committed usage.
    pub fn write_finish(&mut self, out: &mut Vec<u8>, done_reason: Option<&str>) {
        if self.finished {
            return;
        }
        self.write_start(out);
        let status = if done_reason == Some("length") {
            ItemStatus::Incomplete
        } else {
            ItemStatus::Completed
        };
        self.close_item(out, status);
        self.response.end(done_reason);
        self.finished = true;
    }

    /// The terminal event, `response.completed` or `response.incomplete`, with the whole
    /// response, its usage and `completed_at` (Unix seconds).
    pub fn write_usage(&mut self, out: &mut Vec<u8>, usage: ResponseUsage, completed_at: i64) {
        if self.ended {
            return;
        }
        self.write_finish(out, None);
        self.response.usage = Some(usage);
        self.response.completed_at = Some(completed_at);
        let name = match self.response.status {
            ResponseStatus::Incomplete => "response.incomplete",
            _ => "response.completed",
        };
        self.write_lifecycle(out, name);
        self.ended = true;
    }

    /// A failure after the stream began: an `error` event with the error's code, message and
    /// field, then `response.failed` as the terminal event.
    pub fn write_error(&mut self, out: &mut Vec<u8>, error: &ErrorBody) {
        if self.ended {
            return;
        }
        self.write_start(out);
        let code = error.code.unwrap_or(error.kind);
        let seq = self.next_sequence();
        write_named_event(
            out,
            "error",
            &ErrorEvent {
                kind: "error",
                sequence_number: seq,
                code: Some(code),
                message: &error.message,
                param: error.param.as_deref(),
            },
        );
        self.response.status = ResponseStatus::Failed;
        self.response.error = Some(ResponseError {
            code: if code == "rate_limit_exceeded" {
                "rate_limit_exceeded"
            } else {
                "server_error"
            },
            message: error.message.clone(),
        });
        self.write_lifecycle(out, "response.failed");
        self.finished = true;
        self.ended = true;
    }

    fn next_sequence(&mut self) -> u64 {
        let seq = self.sequence;
        self.sequence += 1;
        seq
    }

    fn write_lifecycle(&mut self, out: &mut Vec<u8>, name: &'static str) {
        let seq = self.next_sequence();
        write_named_event(
            out,
            name,
            &Lifecycle {
                kind: name,
                sequence_number: seq,
                response: &self.response,
            },
        );
    }

    fn write_item(&mut self, out: &mut Vec<u8>, name: &'static str, item: &OutputItem) {
        let seq = self.next_sequence();
        write_named_event(
            out,
            name,
            &ItemEvent {
                kind: name,
                sequence_number: seq,
                output_index: self.response.output.len(),
                item,
            },
        );
    }

    /// Makes an item of `kind` the open one: closes another open item, then announces the
    /// new one and its (empty) part.
    fn open_item(&mut self, out: &mut Vec<u8>, kind: OpenKind) {
        if self.open.as_ref().is_some_and(|open| open.kind == kind) {
            return;
        }
        self.close_item(out, ItemStatus::Completed);
        let index = self.response.output.len();
        let (id, added) = match kind {
            OpenKind::Reasoning => {
                let id = self.ids.item("rs", index);
                let added = OutputItem::Reasoning {
                    id: id.clone(),
                    summary: Vec::new(),
                    encrypted_content: None,
                    status: ItemStatus::InProgress,
                };
                (id, added)
            }
            OpenKind::Message => {
                let id = self.ids.item("msg", index);
                let added = OutputItem::Message {
                    id: id.clone(),
                    status: ItemStatus::InProgress,
                    role: "assistant",
                    content: Vec::new(),
                };
                (id, added)
            }
        };
        self.write_item(out, "response.output_item.added", &added);
        let seq = self.next_sequence();
        match kind {
            OpenKind::Reasoning => write_named_event(
                out,
                "response.reasoning_summary_part.added",
                &SummaryPartEvent {
                    kind: "response.reasoning_summary_part.added",
                    sequence_number: seq,
                    item_id: &id,
                    output_index: index,
                    summary_index: 0,
                    part: &SummaryText::new(String::new()),
                },
            ),
            OpenKind::Message => write_named_event(
                out,
                "response.content_part.added",
                &ContentPartEvent {
                    kind: "response.content_part.added",
                    sequence_number: seq,
                    item_id: &id,
                    output_index: index,
                    content_index: 0,
                    part: &OutputText::new(String::new()),
                },
            ),
        }
        self.open = Some(OpenItem {
            kind,
            id,
            text: String::new(),
        });
    }

    /// Closes the open item, if any: its text and part are done, then the item, which joins
    /// the response's output.
    fn close_item(&mut self, out: &mut Vec<u8>, status: ItemStatus) {
        let Some(OpenItem { kind, id, text }) = self.open.take() else {
            return;
        };
        let index = self.response.output.len();
        let item = match kind {
            OpenKind::Reasoning => {
                let part = SummaryText::new(text);
                let seq = self.next_sequence();
                write_named_event(
                    out,
                    "response.reasoning_summary_text.done",
                    &SummaryTextDone {
                        kind: "response.reasoning_summary_text.done",
                        sequence_number: seq,
                        item_id: &id,
                        output_index: index,
                        summary_index: 0,
                        text: &part.text,
                    },
                );
                let seq = self.next_sequence();
                write_named_event(
                    out,
                    "response.reasoning_summary_part.done",
                    &SummaryPartEvent {
                        kind: "response.reasoning_summary_part.done",
                        sequence_number: seq,
                        item_id: &id,
                        output_index: index,
                        summary_index: 0,
                        part: &part,
                    },
                );
                reasoning_item(id, part, status)
            }
            OpenKind::Message => {
                let part = OutputText::new(text);
                let seq = self.next_sequence();
                write_named_event(
                    out,
                    "response.output_text.done",
                    &TextDone {
                        kind: "response.output_text.done",
                        sequence_number: seq,
                        item_id: &id,
                        output_index: index,
                        content_index: 0,
                        text: &part.text,
                        logprobs: &[],
                    },
                );
                let seq = self.next_sequence();
                write_named_event(
                    out,
                    "response.content_part.done",
                    &ContentPartEvent {
                        kind: "response.content_part.done",
                        sequence_number: seq,
                        item_id: &id,
                        output_index: index,
                        content_index: 0,
                        part: &part,
                    },
                );
                message_item(id, part, status)
            }
        };
        self.write_item(out, "response.output_item.done", &item);
        self.response.output.push(item);
    }

    /// One whole function call: added (empty arguments), the arguments in one delta, their
    /// end (with the name), the item done.
    fn write_function_call(&mut self, out: &mut Vec<u8>, item: OutputItem) {
        let OutputItem::FunctionCall {
            id,
            call_id,
            name,
            arguments,
            ..
        } = &item
        else {
            return;
        };
        let index = self.response.output.len();
        let added = OutputItem::FunctionCall {
            id: id.clone(),
            status: ItemStatus::InProgress,
            call_id: call_id.clone(),
            name: name.clone(),
            arguments: String::new(),
        };
        self.write_item(out, "response.output_item.added", &added);
        let seq = self.next_sequence();
        write_named_event(
            out,
            "response.function_call_arguments.delta",
            &ArgumentsDelta {
                kind: "response.function_call_arguments.delta",
                sequence_number: seq,
                item_id: id,
                output_index: index,
                delta: arguments,
            },
        );
        let seq = self.next_sequence();
        write_named_event(
            out,
            "response.function_call_arguments.done",
            &ArgumentsDone {
                kind: "response.function_call_arguments.done",
                sequence_number: seq,
                item_id: id,
                output_index: index,
                name,
                arguments,
            },
        );
        self.write_item(out, "response.output_item.done", &item);
        self.response.output.push(item);
    }
}

#[derive(Serialize)]
struct Lifecycle<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    response: &'a ResponseObject,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    output_index: usize,
    item: &'a OutputItem,
}

#[derive(Serialize)]
struct ContentPartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    part: &'a OutputText,
}

#[derive(Serialize)]
struct SummaryPartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    summary_index: u32,
    part: &'a SummaryText,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: &'a [Value],
}

#[derive(Serialize)]
struct TextDone<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    text: &'a str,
    logprobs: &'a [Value],
}

#[derive(Serialize)]
struct SummaryTextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    summary_index: u32,
    delta: &'a str,
}

#[derive(Serialize)]
struct SummaryTextDone<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    summary_index: u32,
    text: &'a str,
}

#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgumentsDone<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    code: Option<&'a str>,
    message: &'a str,
    param: Option<&'a str>,
}

#[cfg(test)]
mod tests;
