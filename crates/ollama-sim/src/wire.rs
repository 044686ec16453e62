//! What every answer is made of, whatever the dialect: the reply with its pieces and metrics,
//! the encoder each dialect implements to put a reply on the wire, and each dialect's error
//! shape.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;

use crate::gojson::to_go_json;
use crate::rules::ToolCall;

/// gin's `c.JSON`: native answers, native errors, and errors the compatibility layers raise
/// while decoding a request.
pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";
/// What Ollama's compatibility writers set before re-encoding an answer or an error.
pub(crate) const JSON: &str = "application/json";
/// Native streams.
pub(crate) const NDJSON: &str = "application/x-ndjson";
/// Streams of the compatibility dialects.
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// Fixed, plausible durations (nanoseconds) so replies are byte-for-byte predictable apart from
/// `created_at`.
pub(crate) const LOAD_DURATION_NS: u64 = 12_500_000;
const PROMPT_EVAL_NS_PER_TOKEN: u64 = 250_000;
pub(crate) const EVAL_NS_PER_TOKEN: u64 = 5_000_000;
const OVERHEAD_NS: u64 = 1_000_000;

/// Ollama's `Metrics`; every field is `omitempty`, so a zero is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    total_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_duration: Option<u64>,
}

fn non_zero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

impl Metrics {
    pub(crate) fn for_counts(prompt_eval_count: u64, eval_count: u64) -> Self {
        let prompt_eval_duration = prompt_eval_count.saturating_mul(PROMPT_EVAL_NS_PER_TOKEN);
        let eval_duration = eval_count.saturating_mul(EVAL_NS_PER_TOKEN);
        Self {
            total_duration: non_zero(
                LOAD_DURATION_NS + prompt_eval_duration + eval_duration + OVERHEAD_NS,
            ),
            load_duration: non_zero(LOAD_DURATION_NS),
            prompt_eval_count: non_zero(prompt_eval_count),
            prompt_eval_duration: non_zero(prompt_eval_duration),
            eval_count: non_zero(eval_count),
            eval_duration: non_zero(eval_duration),
        }
    }

    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.prompt_eval_count.unwrap_or(0)
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        self.eval_count.unwrap_or(0)
    }
}

/// Which native response shape a reply has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Chat,
    Generate,
}

/// One streamed unit of output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    /// A word of a thinking model's thinking (before the answer).
    Thinking(String),
    Text(String),
    ToolCalls(Vec<ToolCall>),
}

/// A complete reply, before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub route: Route,
    /// The model name exactly as the client sent it.
    pub model: String,
    pub pieces: Vec<Piece>,
    pub done_reason: &'static str,
    pub metrics: Metrics,
    /// `/api/generate` only (absent in raw mode).
    pub context: Option<Vec<u32>>,
}

impl Reply {
    /// Every text piece joined.
    pub(crate) fn text(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Text(text) => Some(text.as_str()),
                Piece::Thinking(_) | Piece::ToolCalls(_) => None,
            })
            .collect()
    }

    /// Every thinking piece joined.
    pub(crate) fn thinking(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Thinking(text) => Some(text.as_str()),
                Piece::Text(_) | Piece::ToolCalls(_) => None,
            })
            .collect()
    }

    /// Every tool call, in order.
    pub(crate) fn tool_calls(&self) -> Vec<ToolCall> {
        self.pieces
            .iter()
            .flat_map(|piece| match piece {
                Piece::Thinking(_) | Piece::Text(_) => &[][..],
                Piece::ToolCalls(calls) => calls.as_slice(),
            })
            .cloned()
            .collect()
    }
}

/// Puts a reply on the wire in one dialect. The stream machine calls `piece` for each piece and
/// `finish` for the end, in the order Ollama's native handler produces its lines; each dialect
/// turns them into what Ollama's compatibility layer would send.
pub(crate) trait Encoder: 'static {
    /// The error shape of this dialect.
    fn dialect(&self) -> Dialect;
    /// The content type of a streamed answer.
    fn stream_content_type(&self) -> &'static str;
    /// Whether a stream carries `Cache-Control: no-cache` (Ollama sets it for Responses and
    /// Anthropic streams).
    fn stream_no_cache(&self) -> bool {
        false
    }
    /// The bytes for one piece (the first also opens the stream where the dialect needs it).
    fn piece(&mut self, reply: &Reply, piece: &Piece) -> Bytes;
    /// The bytes for the native `done` line: closing events, usage, terminator.
    fn finish(&mut self, reply: &Reply) -> Bytes;
    /// What the dialect makes of Ollama's mid-stream `{"error": …}` line; `None` is nothing.
    fn error_line(&mut self, reply: &Reply) -> Option<Bytes>;
    /// The broken line `malformed_after_tokens` inserts.
    fn malformed(&self) -> &'static [u8];
    /// A non-streamed answer: body and content type.
    fn whole(&mut self, reply: &Reply) -> (String, &'static str);
}

/// A line of NDJSON.
pub(crate) fn ndjson_line(mut json: String) -> Bytes {
    json.push('\n');
    Bytes::from(json)
}

/// One server-sent event without a name: `data: <json>\n\n`.
pub(crate) fn data_event(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// One named server-sent event: `event: <name>\ndata: <json>\n\n`.
pub(crate) fn named_event(out: &mut Vec<u8>, name: &str, json: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    data_event(out, json);
}

/// The error shapes: Ollama's `{"error": …}`, OpenAI's and Anthropic's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Ollama,
    OpenAi,
    Anthropic,
}

#[derive(Serialize)]
struct OllamaError<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorDetail<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<()>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorDetail<'a>,
    request_id: String,
}

#[derive(Serialize)]
struct AnthropicErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl Dialect {
    /// The error body, as the dialect's layer encodes it: gin's `c.JSON` for Ollama (no newline),
    /// `json.Encoder` for the compatibility writers (a trailing newline).
    pub(crate) fn error_body(self, status: u16, message: &str) -> String {
        match self {
            Dialect::Ollama => to_go_json(&OllamaError { error: message }),
            Dialect::OpenAi => {
                // openai.NewError: only 400 and 404 get their own type.
                let kind = match status {
                    400 => "invalid_request_error",
                    404 => "not_found_error",
                    _ => "api_error",
                };
                let body = OpenAiError {
                    error: OpenAiErrorDetail {
                        message,
                        kind,
                        param: None,
                        code: None,
                    },
                };
                let mut text = to_go_json(&body);
                text.push('\n');
                text
            }
            Dialect::Anthropic => {
                let kind = match status {
                    400 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    429 => "rate_limit_error",
                    503 | 529 => "overloaded_error",
                    _ => "api_error",
                };
                let body = AnthropicError {
                    kind: "error",
                    error: AnthropicErrorDetail { kind, message },
                    request_id: format!("req_{}", hex_id(24)),
                };
                let mut text = to_go_json(&body);
                text.push('\n');
                text
            }
        }
    }

    /// An error raised by the native handler, as this dialect answers it. The compatibility
    /// writers re-encode it with `Content-Type: application/json` (no charset).
    pub(crate) fn error(self, status: u16, message: &str) -> HttpResponse {
        let content_type = match self {
            Dialect::Ollama => JSON_UTF8,
            Dialect::OpenAi | Dialect::Anthropic => JSON,
        };
        body_response(status, content_type, self.error_body(status, message))
    }

    /// An error raised while decoding a compatibility request, before the native handler runs:
    /// gin's `AbortWithStatusJSON`, so `application/json; charset=utf-8` and no newline.
    pub(crate) fn decode_error(self, status: u16, message: &str) -> HttpResponse {
        let mut body = self.error_body(status, message);
        if body.ends_with('\n') {
            body.pop();
        }
        body_response(status, JSON_UTF8, body)
    }
}

/// A complete answer with a content type.
pub(crate) fn body_response(status: u16, content_type: &str, body: String) -> HttpResponse {
    HttpResponse::build(status_code(status))
        .content_type(content_type)
        .body(body)
}

/// A complete JSON answer as gin's `c.JSON` sends it.
pub(crate) fn json_response(status: u16, body: String) -> HttpResponse {
    body_response(status, JSON_UTF8, body)
}

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A number for an id: Ollama draws its ids at random; the simulator counts, so ids differ
/// between requests without any randomness.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// `len` lowercase hex digits that look random (Anthropic-style ids), from [`next_id`].
pub(crate) fn hex_id(len: usize) -> String {
    let mut state = next_id();
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        // splitmix64: a counter in, well-spread bits out.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn error_shapes_follow_each_layer() {
        assert_eq!(
            Dialect::Ollama.error_body(404, "model 'x' not found"),
            r#"{"error":"model 'x' not found"}"#
        );
        let openai: Value =
            serde_json::from_str(&Dialect::OpenAi.error_body(404, "model 'x' not found")).unwrap();
        assert_eq!(
            openai,
            json!({"error": {"message": "model 'x' not found", "type": "not_found_error", "param": null, "code": null}})
        );
        assert!(Dialect::OpenAi.error_body(500, "x").contains("api_error"));
        let anthropic: Value =
            serde_json::from_str(&Dialect::Anthropic.error_body(503, "busy")).unwrap();
        assert_eq!(anthropic["type"], "error");
        assert_eq!(
            anthropic["error"],
            json!({"type": "overloaded_error", "message": "busy"})
        );
        let request_id = anthropic["request_id"].as_str().unwrap();
        assert!(request_id.starts_with("req_") && request_id.len() == 28);
    }

    #[test]
    fn hex_ids_differ_and_have_the_asked_length() {
        let (a, b) = (hex_id(24), hex_id(24));
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
