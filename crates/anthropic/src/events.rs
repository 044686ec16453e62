//! The streamed Messages answer: Ollama's chat lines as the Messages API's Server-Sent Events,
//! each with the `event:` line the SDKs need (without it they read nothing).
//!
//! Pure: [`MessageEventWriter`] appends bytes to a buffer and keeps the state one stream
//! needs: the block being streamed and the next block's index (the SDKs append each started
//! block, so indexes are 0, 1, 2, … in order). The sequence is `message_start`, `ping`, then
//! per block `content_block_start`, its deltas and `content_block_stop`, then `message_delta`
//! (stop reason and the real usage) and `message_stop`; or, on a failure, an `error` event.

use aiproxy_ollama as ollama;
use serde::Serialize;

use crate::error::{ErrorKind, ErrorResponse};
use crate::message::{MessageUsage, ResponseBlock, StopReason, message_id, tool_use_block};

/// Room for one streamed event: a text delta with its `event:` line is about 120 bytes.
pub const MESSAGE_EVENT_CAPACITY: usize = 192;

/// Writes the events of one streamed message.
#[derive(Debug)]
pub struct MessageEventWriter {
    request_id: String,
    model: String,
    estimated_input_tokens: u64,
    started: bool,
    /// The stop reason is settled and every block is closed.
    finished: bool,
    /// `message_stop` or `error` is written; nothing follows it.
    ended: bool,
    /// The text or thinking block being streamed, and its index.
    open: Option<(OpenKind, usize)>,
    /// The next block's index.
    blocks: usize,
    tool_calls: usize,
    stop_reason: StopReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenKind {
    Thinking,
    Text,
}

impl MessageEventWriter {
    /// A writer for the message `msg_<request_id>` of `model`. `message_start` reports
    /// `estimated_input_tokens` (Ollama counts the prompt only at the end);
    /// `message_delta` then carries the real count.
    pub fn new(request_id: &str, model: String, estimated_input_tokens: u64) -> Self {
        Self {
            request_id: request_id.to_owned(),
            model,
            estimated_input_tokens,
            started: false,
            finished: false,
            ended: false,
            open: None,
            blocks: 0,
            tool_calls: 0,
            stop_reason: StopReason::EndTurn,
        }
    }

    /// `message_start` then one `ping`, once; the other methods (but
    /// [`Self::write_error`]) write them first if they are not written yet.
    pub fn write_start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        write_event(
            out,
            "message_start",
            &MessageStart {
                kind: "message_start",
                message: StartMessage {
                    id: message_id(&self.request_id),
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: MessageUsage::new(self.estimated_input_tokens, 0),
                },
            },
        );
        write_event(out, "ping", &Ping { kind: "ping" });
    }

    /// The events for one upstream message: thinking, then text, then each tool call as a
    /// whole block (Ollama sends calls whole). Empty parts write nothing.
    pub fn write_deltas(&mut self, out: &mut Vec<u8>, message: ollama::Message) {
        if self.finished {
            return;
        }
        self.write_start(out);
        if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
            let index = self.open_block(out, OpenKind::Thinking);
            write_delta(
                out,
                index,
                Delta::Thinking {
                    thinking: &thinking,
                },
            );
        }
        if !message.content.is_empty() {
            let index = self.open_block(out, OpenKind::Text);
            write_delta(
                out,
                index,
                Delta::Text {
                    text: &message.content,
                },
            );
        }
        if let Some(calls) = message.tool_calls.filter(|c| !c.is_empty()) {
            self.close_block(out);
            for call in &calls {
                let block = tool_use_block(call, &self.request_id, self.tool_calls);
                self.tool_calls += 1;
                self.write_tool_use(out, block);
            }
        }
    }

    /// The end of the answer: closes the open block and settles the stop reason. The
    /// closing events wait for [`Self::write_usage`], so they carry the committed usage.
    pub fn write_finish(&mut self, out: &mut Vec<u8>, done_reason: Option<&str>) {
        if self.finished {
            return;
        }
        self.write_start(out);
        self.close_block(out);
        self.stop_reason = StopReason::from_ollama(done_reason, self.tool_calls > 0);
        self.finished = true;
    }

    /// `message_delta` with the stop reason and the real usage, then `message_stop`.
    pub fn write_usage(&mut self, out: &mut Vec<u8>, input_tokens: u64, output_tokens: u64) {
        if self.ended {
            return;
        }
        self.write_finish(out, None);
        write_event(
            out,
            "message_delta",
            &MessageDelta {
                kind: "message_delta",
                delta: StopDelta {
                    stop_reason: self.stop_reason,
                    stop_sequence: None,
                },
                usage: DeltaUsage {
                    input_tokens,
                    output_tokens,
                },
            },
        );
        write_event(
            out,
            "message_stop",
            &Ping {
                kind: "message_stop",
            },
        );
        self.ended = true;
    }

    /// A failure after the stream began: one `error` event in Anthropic's error shape, the
    /// stream's last (the SDKs raise it as an API error).
    pub fn write_error(&mut self, out: &mut Vec<u8>, kind: ErrorKind, message: &str) {
        if self.ended {
            return;
        }
        write_event(out, "error", &ErrorResponse::new(kind, message));
        self.finished = true;
        self.ended = true;
    }

    /// Makes a block of `kind` the open one (closing another) and returns its index.
    fn open_block(&mut self, out: &mut Vec<u8>, kind: OpenKind) -> usize {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close_block(out);
        let index = self.next_block();
        let block = match kind {
            OpenKind::Thinking => ResponseBlock::Thinking {
                thinking: String::new(),
                signature: String::new(),
            },
            OpenKind::Text => ResponseBlock::Text {
                text: String::new(),
            },
        };
        write_block_start(out, index, &block);
        self.open = Some((kind, index));
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            write_block_stop(out, index);
        }
    }

    fn next_block(&mut self) -> usize {
        let index = self.blocks;
        self.blocks += 1;
        index
    }

    /// A whole `tool_use` block: started with an empty input, the input in one
    /// `input_json_delta`, stopped.
    fn write_tool_use(&mut self, out: &mut Vec<u8>, block: ResponseBlock) {
        let ResponseBlock::ToolUse { id, name, input } = block else {
            return;
        };
        let index = self.next_block();
        let started = ResponseBlock::ToolUse {
            id,
            name,
            input: serde_json::Value::Object(serde_json::Map::new()),
        };
        write_block_start(out, index, &started);
        write_delta(
            out,
            index,
            Delta::InputJson {
                partial_json: &input.to_string(),
            },
        );
        write_block_stop(out, index);
    }
}

/// Appends one event: `event: <name>`, its `data:` line, a blank line.
fn write_event(out: &mut Vec<u8>, name: &str, data: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // The values written here (strings, numbers and derived `Serialize`s) do not fail, and
    // writing into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

fn write_block_start(out: &mut Vec<u8>, index: usize, block: &ResponseBlock) {
    write_event(
        out,
        "content_block_start",
        &BlockStart {
            kind: "content_block_start",
            index,
            content_block: block,
        },
    );
}

fn write_delta(out: &mut Vec<u8>, index: usize, delta: Delta<'_>) {
    write_event(
        out,
        "content_block_delta",
        &BlockDelta {
            kind: "content_block_delta",
            index,
            delta,
        },
    );
}

fn write_block_stop(out: &mut Vec<u8>, index: usize) {
    write_event(
        out,
        "content_block_stop",
        &BlockStop {
            kind: "content_block_stop",
            index,
        },
    );
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<StopReason>,
    stop_sequence: Option<&'a str>,
    usage: MessageUsage,
}

/// `ping` and `message_stop`: a type and nothing else.
#[derive(Serialize)]
struct Ping {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: &'a ResponseBlock,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: Delta<'a>,
}

/// A block's delta, tagged `text_delta`, `thinking_delta` or `input_json_delta`.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: DeltaUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: StopReason,
    stop_sequence: Option<String>,
}

#[derive(Serialize)]
struct DeltaUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[cfg(test)]
mod tests;
