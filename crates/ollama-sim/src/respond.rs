//! Rendering replies on Ollama's wire (NDJSON lines or one JSON object) and injecting faults
//! into them.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream;
use serde::Serialize;

use crate::SimError;
use crate::control::{
    ClaimedFaults, MODEL_ERROR_MESSAGE, SimControl, StreamGuard, StreamOutcome, Terminal,
};
use crate::gojson::{now_timestamp, to_go_json};
use crate::rules::ToolCall;

/// Content type of non-streaming answers and error bodies (gin's `c.JSON`).
pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Content type of streams.
pub(crate) const NDJSON: &str = "application/x-ndjson";
/// The line `malformed_after_tokens` inserts: the start of a real line, cut short.
pub const MALFORMED_LINE: &[u8] = b"{\"model\":\n";

/// Fixed, plausible durations (nanoseconds) so replies are byte-for-byte predictable apart from
/// `created_at`.
pub(crate) const LOAD_DURATION_NS: u64 = 12_500_000;
const PROMPT_EVAL_NS_PER_TOKEN: u64 = 250_000;
const EVAL_NS_PER_TOKEN: u64 = 5_000_000;
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
}

/// Which response shape to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Chat,
    Generate,
}

/// One streamed unit of output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
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

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
}

// Field order follows the recorded traffic: `done_reason` before `done` on chat lines.
#[derive(Serialize)]
struct ChatLine<'a> {
    model: &'a str,
    created_at: String,
    message: AssistantMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    done: bool,
    #[serde(flatten)]
    metrics: Option<&'a Metrics>,
}

#[derive(Serialize)]
struct GenerateLine<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a [u32]>,
    #[serde(flatten)]
    metrics: Option<&'a Metrics>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// Everything needed for one wire object; `None` done_reason means a `done: false` line.
struct LineParts<'a> {
    text: &'a str,
    tool_calls: &'a [ToolCall],
    done_reason: Option<&'a str>,
}

impl Reply {
    fn render(&self, parts: LineParts<'_>) -> String {
        let done = parts.done_reason.is_some();
        let metrics = done.then_some(&self.metrics);
        match self.route {
            Route::Chat => to_go_json(&ChatLine {
                model: &self.model,
                created_at: now_timestamp(),
                message: AssistantMessage {
                    role: "assistant",
                    content: parts.text,
                    tool_calls: parts.tool_calls,
                },
                done_reason: parts.done_reason,
                done,
                metrics,
            }),
            Route::Generate => to_go_json(&GenerateLine {
                model: &self.model,
                created_at: now_timestamp(),
                response: parts.text,
                done,
                done_reason: parts.done_reason,
                context: if done { self.context.as_deref() } else { None },
                metrics,
            }),
        }
    }

    fn piece_line(&self, piece: &Piece) -> Bytes {
        let parts = match piece {
            Piece::Text(text) => LineParts {
                text,
                tool_calls: &[],
                done_reason: None,
            },
            Piece::ToolCalls(calls) => LineParts {
                text: "",
                tool_calls: calls,
                done_reason: None,
            },
        };
        line(self.render(parts))
    }

    fn final_line(&self) -> Bytes {
        line(self.render(LineParts {
            text: "",
            tool_calls: &[],
            done_reason: Some(self.done_reason),
        }))
    }

    /// The single object of a non-streaming answer: all text joined, all tool calls collected.
    pub(crate) fn whole(&self) -> String {
        let mut text = String::new();
        let mut calls = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::ToolCalls(more) => calls.extend(more.iter().cloned()),
            }
        }
        self.render(LineParts {
            text: &text,
            tool_calls: &calls,
            done_reason: Some(self.done_reason),
        })
    }
}

fn line(mut json: String) -> Bytes {
    json.push('\n');
    Bytes::from(json)
}

/// An `{"error": …}` answer with gin's content type.
pub(crate) fn error_response(status: u16, message: &str) -> HttpResponse {
    json_response(status, to_go_json(&ErrorBody { error: message }))
}

/// A complete JSON answer.
pub(crate) fn json_response(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(status_code(status))
        .content_type(JSON_UTF8)
        .body(body)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Waits `delay` without blocking the worker.
pub(crate) async fn pause(delay: Duration) {
    if !delay.is_zero() {
        actix_rt::time::sleep(delay).await;
    }
}

/// Parks the request forever; actix drops it when the client goes away.
pub(crate) async fn never() -> HttpResponse {
    std::future::pending::<HttpResponse>().await
}

/// Sends a generated reply, applying the claimed faults and the live delays.
pub(crate) async fn send_reply(control: &SimControl, reply: Reply, stream: bool) -> HttpResponse {
    let faults = control.claim_faults(crate::control::FaultScope::Inference);
    if faults.hang {
        return never().await;
    }
    pause(control.settings().first_token_delay).await;
    if let Some((status, message)) = &faults.fail_status {
        return error_response(*status, message);
    }
    if stream {
        send_stream(control, reply, &faults).await
    } else {
        send_whole(control, reply, &faults).await
    }
}

async fn send_whole(control: &SimControl, reply: Reply, faults: &ClaimedFaults) -> HttpResponse {
    let tokens = u32::try_from(reply.pieces.len()).unwrap_or(u32::MAX);
    pause(control.settings().token_delay.saturating_mul(tokens)).await;
    let body = reply.whole();
    match faults.terminal {
        Some((Terminal::Error, _)) => error_response(500, MODEL_ERROR_MESSAGE),
        Some((Terminal::Stall, _)) => never().await,
        Some((Terminal::Close, _)) => {
            let full_length = body.len() as u64;
            let half = Bytes::copy_from_slice(&body.as_bytes()[..body.len() / 2]);
            let cut = stream::once(async move { Ok::<_, SimError>(half) })
                .chain(stream::once(async { Err(abort_connection().await) }));
            HttpResponse::Ok()
                .content_type(JSON_UTF8)
                .body(SizedStream::new(full_length, cut))
        }
        None if faults.malformed_after.is_some() => HttpResponse::Ok()
            .content_type(JSON_UTF8)
            .body(body[..body.len() / 2].to_owned()),
        None => json_response(200, body),
    }
}

/// Gives the dispatcher a chance to flush what was written, then yields the error that makes
/// actix drop the connection without the terminating chunk.
async fn abort_connection() -> SimError {
    actix_rt::task::yield_now().await;
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    SimError::InjectedClose
}

/// What the stream sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Piece(usize),
    Final,
    ErrorLine,
    Malformed,
    Close,
    Stall,
}

impl Step {
    /// Whether this step writes a line (and so waits `token_delay` when it is not the first).
    fn is_line(self) -> bool {
        !matches!(self, Step::Close | Step::Stall)
    }
}

fn plan_steps(pieces: usize, faults: &ClaimedFaults) -> VecDeque<Step> {
    let terminal = faults
        .terminal
        .map(|(kind, after)| (kind, after.min(pieces)));
    let malformed_at = faults.malformed_after.map(|after| after.min(pieces));
    let mut steps = VecDeque::new();
    for sent in 0..=pieces {
        if malformed_at == Some(sent) {
            steps.push_back(Step::Malformed);
        }
        if let Some((kind, at)) = terminal
            && at == sent
        {
            steps.push_back(match kind {
                Terminal::Error => Step::ErrorLine,
                Terminal::Close => Step::Close,
                Terminal::Stall => Step::Stall,
            });
            return steps;
        }
        steps.push_back(if sent < pieces {
            Step::Piece(sent)
        } else {
            Step::Final
        });
    }
    steps
}

struct StreamState {
    reply: Reply,
    steps: VecDeque<Step>,
    control: SimControl,
    lines_sent: usize,
    guard: StreamGuard,
}

impl StreamState {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, SimError>, Self)> {
        let step = self.steps.pop_front()?;
        if step.is_line() {
            if self.lines_sent > 0 {
                pause(self.control.settings().token_delay).await;
            }
            self.lines_sent += 1;
        }
        let chunk = match step {
            Step::Piece(index) => self.reply.piece_line(&self.reply.pieces[index]),
            Step::Final => {
                self.guard.finish(StreamOutcome::Completed);
                self.reply.final_line()
            }
            Step::ErrorLine => {
                self.guard.finish(StreamOutcome::Errored);
                line(to_go_json(&ErrorBody {
                    error: MODEL_ERROR_MESSAGE,
                }))
            }
            Step::Malformed => Bytes::from_static(MALFORMED_LINE),
            Step::Close => {
                self.guard.finish(StreamOutcome::AbortedByServer);
                self.steps.clear();
                let error = abort_connection().await;
                return Some((Err(error), self));
            }
            Step::Stall => std::future::pending::<Bytes>().await,
        };
        Some((Ok(chunk), self))
    }
}

async fn send_stream(control: &SimControl, reply: Reply, faults: &ClaimedFaults) -> HttpResponse {
    match faults.terminal {
        // Ollama sends its head together with the first line, so a failure before any line is
        // a plain error status (with `application/json`, no charset, chunked) ...
        Some((Terminal::Error, 0)) => {
            let body = Bytes::from(to_go_json(&ErrorBody {
                error: MODEL_ERROR_MESSAGE,
            }));
            return HttpResponse::InternalServerError()
                .content_type("application/json")
                .streaming(stream::once(async move { Ok::<_, SimError>(body) }));
        }
        // ... and a stall before any line sends nothing at all.
        Some((Terminal::Stall, 0)) => return never().await,
        _ => {}
    }
    let state = StreamState {
        steps: plan_steps(reply.pieces.len(), faults),
        guard: control.open_stream(),
        control: control.clone(),
        lines_sent: 0,
        reply,
    };
    HttpResponse::Ok()
        .content_type(NDJSON)
        .streaming(stream::unfold(state, StreamState::next_chunk))
}

/// The answer to an empty chat or generate request: Ollama loads (or with `keep_alive: 0`
/// unloads) the model and answers one JSON object, even when `stream` is true.
pub(crate) fn load_response(route: Route, model: &str, done_reason: &'static str) -> HttpResponse {
    let reply = Reply {
        route,
        model: model.to_owned(),
        pieces: Vec::new(),
        done_reason,
        metrics: Metrics::default(),
        context: None,
    };
    json_response(200, reply.whole())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn reply(route: Route) -> Reply {
        Reply {
            route,
            model: "llama3.2".into(),
            pieces: vec![Piece::Text("Echo:".into()), Piece::Text(" <hi>".into())],
            done_reason: "stop",
            metrics: Metrics::for_counts(3, 2),
            context: Some(vec![1, 2, 3, 4, 5]),
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn chat_lines_have_ollamas_fields() {
        let reply = reply(Route::Chat);
        let token = reply.piece_line(&reply.pieces[1]);
        assert!(token.ends_with(b"\n"));
        assert!(
            std::str::from_utf8(&token)
                .unwrap()
                .contains("\\u003chi\\u003e")
        );
        let token = parse(&token);
        assert_eq!(
            token["message"],
            json!({"role": "assistant", "content": " <hi>"})
        );
        assert_eq!(token["done"], json!(false));
        assert!(token.get("done_reason").is_none() && token.get("eval_count").is_none());

        let last = parse(&reply.final_line());
        assert_eq!(last["done_reason"], "stop");
        assert_eq!(last["message"]["content"], "");
        assert_eq!(last["prompt_eval_count"], 3);
        assert_eq!(last["eval_count"], 2);
        assert_eq!(last["eval_duration"], 2 * EVAL_NS_PER_TOKEN);
        assert!(last.get("context").is_none());
    }

    #[test]
    fn generate_final_carries_context_and_whole_joins_pieces() {
        let reply = reply(Route::Generate);
        let whole = parse(reply.whole().as_bytes());
        assert_eq!(whole["response"], "Echo: <hi>");
        assert_eq!(whole["context"], json!([1, 2, 3, 4, 5]));
        assert_eq!(whole["done"], true);
        let token = parse(&reply.piece_line(&reply.pieces[0]));
        assert!(token.get("context").is_none());
    }

    #[test]
    fn zero_metrics_are_omitted() {
        let value = serde_json::to_value(Metrics::for_counts(4, 0)).unwrap();
        assert!(value.get("eval_count").is_none() && value.get("eval_duration").is_none());
        assert_eq!(value["prompt_eval_count"], 4);
    }

    #[test]
    fn plans_place_faults_after_n_pieces_or_before_done() {
        let faults = |terminal, malformed| ClaimedFaults {
            terminal,
            malformed_after: malformed,
            ..ClaimedFaults::default()
        };
        use Step::*;
        assert_eq!(
            Vec::from(plan_steps(2, &ClaimedFaults::default())),
            vec![Piece(0), Piece(1), Final]
        );
        assert_eq!(
            Vec::from(plan_steps(3, &faults(Some((Terminal::Error, 1)), None))),
            vec![Piece(0), ErrorLine]
        );
        assert_eq!(
            Vec::from(plan_steps(2, &faults(Some((Terminal::Close, 9)), None))),
            vec![Piece(0), Piece(1), Close]
        );
        assert_eq!(
            Vec::from(plan_steps(2, &faults(Some((Terminal::Stall, 1)), Some(1)))),
            vec![Piece(0), Malformed, Stall]
        );
        assert_eq!(
            Vec::from(plan_steps(1, &faults(None, Some(0)))),
            vec![Malformed, Piece(0), Final]
        );
    }
}
