//! Newline-delimited JSON: a push decoder that turns arbitrary byte chunks into lines, and the
//! stream that drives it from an HTTP body.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use awc::error::PayloadError;
use bytes::Bytes;
use futures_util::stream::FusedStream;
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, Sleep};

use crate::error::OllamaError;
use crate::types::{ChatResponse, GenerateResponse};

#[cfg(test)]
mod tests;

/// The longest line [`NdjsonDecoder::new`] accepts. Stream lines are a few hundred bytes; this
/// bound only exists so a broken upstream cannot make the buffer grow without limit.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Splits a byte stream into NDJSON lines and decodes each one.
///
/// Chunks may end anywhere: inside a line, inside a UTF-8 character, between `\r` and `\n`.
/// The lines that come out do not depend on how the input was chunked. A line may end in
/// `\n` or `\r\n`; blank lines are skipped; after [`finish`](Self::finish), a last line without
/// a newline is still returned. A line longer than the limit is dropped as it arrives (memory
/// stays bounded by the limit) and reported once as an error in its place.
///
/// ```
/// use aiproxy_ollama::{ChatResponse, NdjsonDecoder};
///
/// let mut decoder = NdjsonDecoder::new();
/// decoder.push(b"{\"model\":\"m\",\"done\":false}\n{\"model\":\"m\",");
/// let first: ChatResponse = decoder.next_line().unwrap().unwrap();
/// assert!(!first.done);
/// assert!(decoder.next_line::<ChatResponse>().is_none()); // the second line is incomplete
/// decoder.push(b"\"done\":true}");
/// decoder.finish(); // the body ended without a final newline
/// assert!(decoder.next_line::<ChatResponse>().unwrap().unwrap().done);
/// ```
pub struct NdjsonDecoder {
    /// Complete lines (or over-long markers) waiting to be taken, oldest first.
    ready: VecDeque<Result<Vec<u8>, LineTooLong>>,
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
    /// Set while the rest of an over-long line is being skipped.
    skipping_long_line: bool,
    max_line_bytes: usize,
}

/// Marks where a line was dropped for exceeding the limit.
#[derive(Debug, Clone, Copy)]
struct LineTooLong;

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for NdjsonDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lines may hold user content, so only their sizes are shown.
        f.debug_struct("NdjsonDecoder")
            .field("ready_lines", &self.ready.len())
            .field("partial_bytes", &self.partial.len())
            .field("skipping_long_line", &self.skipping_long_line)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish()
    }
}

impl NdjsonDecoder {
    /// A decoder with the [`DEFAULT_MAX_LINE_BYTES`] limit.
    pub fn new() -> Self {
        Self::with_max_line_bytes(DEFAULT_MAX_LINE_BYTES)
    }

    /// A decoder that rejects lines longer than `max_line_bytes` (not counting the line end).
    pub fn with_max_line_bytes(max_line_bytes: usize) -> Self {
        NdjsonDecoder {
            ready: VecDeque::new(),
            partial: Vec::new(),
            skipping_long_line: false,
            max_line_bytes,
        }
    }

    /// Feeds the next chunk of the body.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while let Some(newline) = chunk.iter().position(|&byte| byte == b'\n') {
            self.extend_partial(&chunk[..newline]);
            self.end_line();
            chunk = &chunk[newline + 1..];
        }
        self.extend_partial(chunk);
    }

    /// Declares the end of the input, so that a last line without a trailing newline is
    /// returned too. Pushing after `finish` starts a new line.
    pub fn finish(&mut self) {
        self.end_line();
    }

    /// Takes the next complete line as raw bytes, without its line end. Blank lines are never
    /// returned; an over-long line comes out as [`OllamaError::InvalidResponse`].
    pub fn next_raw_line(&mut self) -> Option<Result<Vec<u8>, OllamaError>> {
        self.ready.pop_front().map(|line| {
            line.map_err(|LineTooLong| OllamaError::InvalidResponse {
                message: format!(
                    "a stream line exceeded {} bytes and was skipped",
                    self.max_line_bytes
                ),
            })
        })
    }

    /// Takes the next complete line and decodes it as `T`.
    ///
    /// A line with a top-level `error` member (Ollama's way of failing inside a 200 stream)
    /// becomes [`OllamaError::Stream`]; a line that is not valid JSON for `T`, or is too long,
    /// becomes [`OllamaError::InvalidResponse`]. Either way the following lines are unaffected.
    pub fn next_line<T: DeserializeOwned>(&mut self) -> Option<Result<T, OllamaError>> {
        self.next_raw_line()
            .map(|line| line.and_then(|line| decode_line(&line)))
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        if self.skipping_long_line || bytes.is_empty() {
            return;
        }
        if self.partial.len() + bytes.len() > self.max_line_bytes {
            // Give the memory back now rather than when the newline finally arrives.
            self.partial = Vec::new();
            self.skipping_long_line = true;
            self.ready.push_back(Err(LineTooLong));
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self) {
        if self.skipping_long_line {
            self.skipping_long_line = false;
            return;
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            self.ready.push_back(Ok(line));
        }
    }
}

/// Decodes one NDJSON line, recognising Ollama's `{"error": ...}` lines first.
fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Result<T, OllamaError> {
    #[derive(Deserialize)]
    struct ErrorLine {
        #[serde(default)]
        error: Option<serde_json::Value>,
    }

    // A cheap pre-check keeps the common case to a single parse: a line without the bytes
    // `"error"` cannot have an `error` key (an escaped quote inside a string reads `\"`).
    if mentions_error_key(line)
        && let Ok(ErrorLine { error: Some(error) }) = from_json_bytes::<ErrorLine>(line)
        && !error.is_null()
    {
        let message = match error {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        };
        return Err(OllamaError::Stream { message });
    }
    from_json_bytes(line).map_err(|error| OllamaError::InvalidResponse {
        // serde's message names the position and the expected type, never the input.
        message: format!("a stream line is not the JSON expected: {error}"),
    })
}

/// Whether the bytes `"error"` occur in `line`. Only its quotes are tried as starts:
/// comparing every window called `memcmp` once per byte of every streamed line.
fn mentions_error_key(line: &[u8]) -> bool {
    line.iter()
        .enumerate()
        .any(|(at, &byte)| byte == b'"' && line[at..].starts_with(br#""error""#))
}

/// Parses JSON as `serde_json::from_slice` does, checking UTF-8 once for the whole text
/// rather than once for every string and key in it (a third of an answer's parse).
pub(crate) fn from_json_bytes<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        // `from_slice` reports where the bad byte is.
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// A line type of an Ollama stream: something that knows whether it is the last one.
pub trait StreamItem: DeserializeOwned {
    /// `true` for the final object of a stream (`"done": true`).
    fn is_done(&self) -> bool;
}

impl StreamItem for ChatResponse {
    fn is_done(&self) -> bool {
        self.done
    }
}

impl StreamItem for GenerateResponse {
    fn is_done(&self) -> bool {
        self.done
    }
}

/// The longest wait after the `done` line for the body to end, before the connection is
/// closed rather than reused.
const BODY_END_GRACE: Duration = Duration::from_secs(1);

/// The body of a streaming response, as returned by awc, boxed so the stream type does not
/// depend on awc's compression features.
pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;

/// A stream of decoded NDJSON lines from a streaming Ollama response.
///
/// It yields each line as it arrives, and:
/// - `Err(OllamaError::Stream)` for an `{"error": ...}` line, and then ends;
/// - `Err(OllamaError::Interrupted)` if the body ends or breaks before a `done: true` line,
///   and then ends;
/// - `Err(OllamaError::Timeout { phase: Idle })` if no bytes arrive within the idle timeout,
///   and then ends;
/// - `Err(OllamaError::InvalidResponse)` for a line that is not valid JSON (or too long), and
///   then goes on with the next line;
/// - `None` after the `done: true` item. Before yielding it, the stream waits for the end of
///   the HTTP body (which follows at once; at most 1 s), so the connection can be reused.
///
/// Dropping it before the end closes the upstream connection at once (awc closes a connection
/// whose body was not read to the end instead of pooling it), so Ollama notices and stops
/// generating. When the stream is read until `None`, the connection goes back to the pool.
/// Like awc it is `!Send`: poll it on the actix worker that created it.
pub struct NdjsonStream<T> {
    /// `None` once the stream has ended; dropping the body closes or releases the connection.
    body: Option<BodyStream>,
    decoder: NdjsonDecoder,
    idle_timeout: Duration,
    idle_deadline: Pin<Box<Sleep>>,
    /// Whether `idle_deadline` counts from the current wait. It is re-armed when a wait
    /// starts, so time the consumer spends between polls never counts as upstream idleness.
    idle_deadline_armed: bool,
    state: StreamState,
    _item: PhantomData<fn() -> T>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    /// Reading the body.
    Streaming,
    /// The body ended; yielding the lines that are still buffered.
    BodyEnded,
    /// The `done` line was yielded; the body's end may still be in flight.
    Done,
    /// Nothing more will be yielded.
    Finished,
}

/// The stream returned by [`OllamaClient::chat_stream`](crate::OllamaClient::chat_stream).
pub type ChatStream = NdjsonStream<ChatResponse>;

/// The stream returned by
/// [`OllamaClient::generate_stream`](crate::OllamaClient::generate_stream).
pub type GenerateStream = NdjsonStream<GenerateResponse>;

impl<T> fmt::Debug for NdjsonStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NdjsonStream")
            .field("state", &self.state)
            .field("decoder", &self.decoder)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<T: StreamItem> NdjsonStream<T> {
    pub(crate) fn new(body: BodyStream, idle_timeout: Duration) -> Self {
        NdjsonStream {
            body: Some(body),
            decoder: NdjsonDecoder::new(),
            idle_timeout,
            idle_deadline: Box::pin(tokio::time::sleep_until(deadline_after(idle_timeout))),
            idle_deadline_armed: true,
            state: StreamState::Streaming,
            _item: PhantomData,
        }
    }

    /// Lets go of the stream. Once the `done` item has been taken, the end of the body is read
    /// in the background (it follows at once; at most the 1 s grace), so the connection goes
    /// back to awc's pool instead of being closed and the caller need not wait for it. Before
    /// `done`, this is a plain drop: the connection closes and Ollama stops generating.
    ///
    /// Spawns onto the current actix worker (a tokio `LocalSet`), like every client method.
    pub fn release(mut self)
    where
        T: 'static,
    {
        if self.state == StreamState::Done && self.body.is_some() {
            tokio::task::spawn_local(async move { while self.next().await.is_some() {} });
        }
    }

    /// Ends the stream and drops the body, which closes the connection unless awc already saw
    /// the end of the body (then it is back in the pool).
    fn finish(&mut self) {
        self.state = StreamState::Finished;
        self.body = None;
    }

    /// Turns a decoded line into the item to yield, moving the state along.
    fn on_line(&mut self, line: Result<T, OllamaError>) -> Result<T, OllamaError> {
        // The consumer has control now; its time does not count against the upstream.
        self.idle_deadline_armed = false;
        match &line {
            Ok(item) if item.is_done() => self.state = StreamState::Done,
            Err(OllamaError::Stream { .. }) => self.finish(),
            Ok(_) | Err(_) => {}
        }
        line
    }

    /// After the `done` line: waits, briefly, for the end of the body, so that awc sees the
    /// terminating chunk and puts the connection back into the pool instead of closing it.
    /// Ollama sends that chunk right after the `done` line, but in a separate write, so it is
    /// often not there yet when the line is decoded.
    fn poll_body_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Bounded, so a server that keeps sending after `done` cannot keep us here.
        const MAX_TRAILING_CHUNKS: usize = 8;
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(());
        };
        if !self.idle_deadline_armed {
            let grace = self.idle_timeout.min(BODY_END_GRACE);
            self.idle_deadline.as_mut().reset(deadline_after(grace));
            self.idle_deadline_armed = true;
        }
        for _ in 0..MAX_TRAILING_CHUNKS {
            match body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                Poll::Pending if self.idle_deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

impl<T: StreamItem> Stream for NdjsonStream<T> {
    type Item = Result<T, OllamaError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.state {
                StreamState::Finished => return Poll::Ready(None),
                StreamState::Done => {
                    if this.poll_body_end(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.finish();
                    return Poll::Ready(None);
                }
                StreamState::BodyEnded => {
                    if let Some(line) = this.decoder.next_line::<T>() {
                        return Poll::Ready(Some(this.on_line(line)));
                    }
                    this.finish();
                    return Poll::Ready(Some(Err(OllamaError::Interrupted {
                        message: "the stream ended before the final (done) line".to_owned(),
                    })));
                }
                StreamState::Streaming => {}
            }

            if let Some(line) = this.decoder.next_line::<T>() {
                return Poll::Ready(Some(this.on_line(line)));
            }

            let Some(body) = this.body.as_mut() else {
                this.finish();
                return Poll::Ready(None);
            };
            match body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.decoder.push(&chunk);
                    this.idle_deadline_armed = false;
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(%error, "Ollama stream broke");
                    this.finish();
                    return Poll::Ready(Some(Err(OllamaError::from_payload(&error))));
                }
                Poll::Ready(None) => {
                    this.decoder.finish();
                    this.state = StreamState::BodyEnded;
                }
                Poll::Pending => {
                    if !this.idle_deadline_armed {
                        let deadline = deadline_after(this.idle_timeout);
                        this.idle_deadline.as_mut().reset(deadline);
                        this.idle_deadline_armed = true;
                    }
                    if this.idle_deadline.as_mut().poll(cx).is_ready() {
                        tracing::debug!(idle_timeout = ?this.idle_timeout, "Ollama stream stalled");
                        this.finish();
                        return Poll::Ready(Some(Err(OllamaError::Timeout {
                            phase: crate::TimeoutPhase::Idle,
                        })));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: StreamItem> FusedStream for NdjsonStream<T> {
    fn is_terminated(&self) -> bool {
        self.state == StreamState::Finished
    }
}

/// `now + timeout`, saturating far in the future instead of overflowing for huge timeouts.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}
