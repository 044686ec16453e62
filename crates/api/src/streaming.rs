//! The one machine that streams Ollama's NDJSON answer to a client, whatever the client's
//! dialect.
//!
//! Two things vary and plug in: the kind of upstream line ([`UpstreamLine`]: `/api/chat` or
//! `/api/generate`), normalised to one [`Piece`], and the dialect's [`Encoder`], which turns
//! pieces into the bytes the client reads (OpenAI chat chunks, OpenAI text completion
//! chunks). The machine owns what every dialect shares: counting streamed tokens, committing
//! usage before the final events, handing the upstream connection back after `done`, ending
//! with an error event when Ollama fails mid-answer, and (through [`Accounting`]'s drop)
//! billing what was streamed when the client goes away.

use std::convert::Infallible;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, HttpResponseBuilder, web};
use aiproxy_domain::UsageStatus;
use aiproxy_ollama::{self as ollama, NdjsonStream, OllamaError, StreamItem};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::accounting::Accounting;
use crate::error::{ApiError, Chain};
use crate::state::AppState;

/// One upstream line in the shape every encoder reads.
#[derive(Debug, Default)]
pub(crate) struct Piece {
    /// What the line adds to the answer: text, reasoning, tool calls.
    pub(crate) message: Option<ollama::Message>,
    /// On the last line: why the answer ended, and Ollama's counts.
    pub(crate) done: Option<Done>,
}

/// How an answer ended.
#[derive(Debug, Default)]
pub(crate) struct Done {
    /// Ollama's `done_reason` (`stop`, `length`, …).
    pub(crate) reason: Option<String>,
    /// Ollama's `prompt_eval_count` (0 when absent).
    pub(crate) prompt_tokens: u64,
    /// Ollama's `eval_count` (0 when absent).
    pub(crate) completion_tokens: u64,
}

/// A kind of line in Ollama's streamed answers.
pub(crate) trait UpstreamLine: StreamItem + 'static {
    /// This line as a [`Piece`].
    fn into_piece(self) -> Piece;
}

impl UpstreamLine for ollama::ChatResponse {
    fn into_piece(self) -> Piece {
        Piece {
            message: self.message,
            done: self.done.then(|| Done {
                reason: self.done_reason,
                prompt_tokens: self.prompt_eval_count.unwrap_or(0),
                completion_tokens: self.eval_count.unwrap_or(0),
            }),
        }
    }
}

impl UpstreamLine for ollama::GenerateResponse {
    fn into_piece(self) -> Piece {
        Piece {
            message: Some(ollama::Message {
                content: self.response,
                thinking: self.thinking,
                ..ollama::Message::default()
            }),
            done: self.done.then(|| Done {
                reason: self.done_reason,
                prompt_tokens: self.prompt_eval_count.unwrap_or(0),
                completion_tokens: self.eval_count.unwrap_or(0),
            }),
        }
    }
}

/// How one dialect writes a streamed answer: pure, bytes appended to a buffer.
pub(crate) trait Encoder: 'static {
    /// The response's content type.
    const CONTENT_TYPE: &'static str;
    /// Room for one event, so a token's buffer is not grown from nothing.
    const EVENT_CAPACITY: usize;
    /// What one upstream message adds (nothing for an empty one).
    fn delta(&mut self, out: &mut Vec<u8>, message: ollama::Message);
    /// The end of the answer, before its usage is committed.
    fn finish(&mut self, out: &mut Vec<u8>, done_reason: Option<&str>);
    /// The last events, once the usage is committed.
    fn usage(&mut self, out: &mut Vec<u8>, prompt_tokens: u64, completion_tokens: u64);
    /// A failure after the answer began, as the stream's last event.
    fn error(&mut self, out: &mut Vec<u8>, error: &ApiError);
}

/// Finishes `response` with the stream of `upstream`'s answer, written by `encoder` and
/// billed to `accounting`.
pub(crate) fn stream_response<L: UpstreamLine, E: Encoder>(
    mut response: HttpResponseBuilder,
    state: &web::Data<AppState>,
    upstream: NdjsonStream<L>,
    accounting: Accounting,
    encoder: E,
) -> HttpResponse {
    let machine = Machine {
        gauge: StreamGauge::open(state),
        upstream: Some(upstream),
        accounting: Some(accounting),
        encoder,
    };
    response
        .insert_header((CONTENT_TYPE, E::CONTENT_TYPE))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(machine.into_body())
}

struct Machine<L: StreamItem, E> {
    /// Counts this stream in `aiproxy_open_streams` while it lives.
    #[expect(dead_code, reason = "held for its Drop")]
    gauge: StreamGauge,
    /// Taken when the answer is complete, to hand the connection back to the pool.
    upstream: Option<NdjsonStream<L>>,
    /// Taken when the usage row is written.
    accounting: Option<Accounting>,
    encoder: E,
}

impl<L: UpstreamLine, E: Encoder> Machine<L, E> {
    fn into_body(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + 'static {
        futures_util::stream::unfold(self, |mut this| async move {
            let bytes = this.next_event().await?;
            Some((Ok(bytes), this))
        })
    }

    /// The next bytes to send, or `None` when the stream is over.
    async fn next_event(&mut self) -> Option<Bytes> {
        loop {
            let (Some(accounting), Some(upstream)) =
                (self.accounting.as_mut(), self.upstream.as_mut())
            else {
                return None;
            };
            match upstream.next().await {
                Some(Ok(line)) => {
                    let piece = line.into_piece();
                    if let Some(done) = piece.done {
                        if let Some(upstream) = self.upstream.take() {
                            upstream.release();
                        }
                        return Some(self.finish(piece.message, done).await);
                    }
                    let Some(message) = piece.message else {
                        continue;
                    };
                    if !message.content.is_empty()
                        || message.thinking.as_deref().is_some_and(|t| !t.is_empty())
                    {
                        accounting.token_streamed();
                    }
                    let mut out = Vec::with_capacity(E::EVENT_CAPACITY);
                    self.encoder.delta(&mut out, message);
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                Some(Err(OllamaError::InvalidResponse { message })) => {
                    // One unreadable line (the client skips it and reads on) costs at most a
                    // token of text; ending the whole answer for it would cost the rest.
                    tracing::warn!(%message, "skipped a line from Ollama that is not JSON");
                }
                Some(Err(err)) => {
                    // Headers are gone; the failure becomes the stream's last event. Usage
                    // for what was delivered is still recorded.
                    if let Some(accounting) = self.accounting.take()
                        && let Err(store_err) = accounting.finish_streamed_as_error().await
                    {
                        tracing::error!(error = %Chain(&store_err), "could not record a failed stream");
                    }
                    let mut out = Vec::with_capacity(E::EVENT_CAPACITY);
                    self.encoder.error(&mut out, &ApiError::Upstream(err));
                    return Some(Bytes::from(out));
                }
                None => {
                    // The client library reports a body that ends early as an error, so a
                    // plain end is only reached after `done`.
                    let accounting = self.accounting.take()?;
                    let _ = accounting.finish_streamed_as_error().await;
                    return None;
                }
            }
        }
    }

    /// The last content (if any) and the end of the answer, then, only once the usage row is
    /// committed, the usage events.
    async fn finish(&mut self, last: Option<ollama::Message>, done: Done) -> Bytes {
        let mut out = Vec::with_capacity(4 * E::EVENT_CAPACITY);
        if let Some(message) = last {
            self.encoder.delta(&mut out, message);
        }
        self.encoder.finish(&mut out, done.reason.as_deref());
        let committed = match self.accounting.take() {
            Some(accounting) => {
                accounting
                    .finish(done.prompt_tokens, done.completion_tokens, UsageStatus::Ok)
                    .await
            }
            None => Ok(()),
        };
        match committed {
            Ok(()) => self
                .encoder
                .usage(&mut out, done.prompt_tokens, done.completion_tokens),
            Err(err) => self.encoder.error(&mut out, &ApiError::Storage(err)),
        }
        Bytes::from(out)
    }
}

/// Counts an open stream until dropped.
struct StreamGauge(web::Data<AppState>);

impl StreamGauge {
    fn open(state: &web::Data<AppState>) -> Self {
        state.metrics.stream_opened();
        Self(state.clone())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.metrics.stream_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_generate_lines_become_the_same_pieces() {
        let chat: ollama::ChatResponse = serde_json::from_str(
            r#"{"message":{"role":"assistant","content":"Hi","thinking":"hm"},"done":false}"#,
        )
        .unwrap();
        let generate: ollama::GenerateResponse =
            serde_json::from_str(r#"{"response":"Hi","thinking":"hm","done":false}"#).unwrap();
        for piece in [chat.into_piece(), generate.into_piece()] {
            let message = piece.message.unwrap();
            assert_eq!(
                (message.content.as_str(), message.thinking.as_deref()),
                ("Hi", Some("hm"))
            );
            assert!(piece.done.is_none());
        }

        let chat: ollama::ChatResponse = serde_json::from_str(
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","eval_count":7}"#,
        )
        .unwrap();
        let generate: ollama::GenerateResponse = serde_json::from_str(
            r#"{"response":"","done":true,"done_reason":"length","eval_count":7}"#,
        )
        .unwrap();
        for piece in [chat.into_piece(), generate.into_piece()] {
            let done = piece.done.unwrap();
            assert_eq!(done.reason.as_deref(), Some("length"));
            assert_eq!((done.prompt_tokens, done.completion_tokens), (0, 7));
        }
    }
}
