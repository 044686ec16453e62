//! `POST /v1/chat/completions`: the hot path.

use std::convert::Infallible;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::{self as ollama, ChatStream, OllamaClient};
use aiproxy_openai::{
    ChatChunkWriter, ChatCompletion, ChatCompletionRequest, EVENT_CAPACITY, ErrorResponse,
    SseEvent, Usage, chat_request_to_ollama,
};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::accounting::{Accounting, fail_before_answer};
use crate::admission::{Admitted, admit, ensure_model_allowed};
use crate::auth::AuthedUser;
use crate::body::{content_length, read_json};
use crate::error::ApiError;
use crate::request_id::request_id;
use crate::state::AppState;

/// Creates a chat completion: Ollama's `/api/chat`, in OpenAI's shape.
///
/// With `"stream": true` the answer arrives as Server-Sent Events (`chat.completion.chunk`),
/// each token as soon as Ollama produces it, ending with `data: [DONE]`. Ollama-only settings
/// go in the `ollama` extension field.
#[utoipa::path(
    tag = "user",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream: true` Server-Sent Events of `chat.completion.chunk` objects ending in `data: [DONE]`", content(
            (ChatCompletion = "application/json"),
            (SseEvent = "text/event-stream"),
        )),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Missing, wrong or expired key", body = ErrorResponse),
        (status = 403, description = "Model not allowed for this user", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 429, description = "Over a rate limit or the quota", body = ErrorResponse),
        (status = 502, description = "Ollama unreachable or failed", body = ErrorResponse),
        (status = 503, description = "Ollama busy or the database unavailable", body = ErrorResponse),
        (status = 504, description = "Ollama timed out", body = ErrorResponse),
    ),
    security(("user_key" = []))
)]
#[post("/v1/chat/completions")]
pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    user: AuthedUser,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let request: ChatCompletionRequest =
        read_json(payload, content_length(&req), state.settings.max_body_bytes).await?;
    let user = user.0;
    ensure_model_allowed(&user, &request.model)?;
    let mut translated = chat_request_to_ollama(request)?;
    let model = translated.request.model.clone();

    let Admitted {
        ticket,
        budget,
        mut response,
    } = admit(&state, &user, translated.max_tokens)?;
    let created = ticket.admitted_at().as_unix_seconds();
    let request_id = request_id(&req);
    let accounting = Accounting::open(
        &state,
        ticket,
        &user.id,
        model.clone(),
        Endpoint::ChatCompletions,
        request_id.clone(),
    );
    if let Some(budget) = budget {
        translated.limit_completion(budget);
    }
    // Fetched after admission so a user over a limit cannot make the proxy fetch anything; a
    // refused image leaves no usage row (the request still counts against its windows).
    if !translated.pending_images.is_empty()
        && let Err(err) =
            crate::image_fetch::fill_images(&mut translated, &state.settings.image_fetch).await
    {
        accounting.cancel();
        return Err(err);
    }

    if translated.stream {
        let upstream = match client.chat_stream(&translated.request).await {
            Ok(upstream) => {
                accounting.upstream_answered();
                upstream
            }
            Err(err) => return Err(fail_before_answer(accounting, err).await),
        };
        let stream = SseStream {
            gauge: StreamGauge::open(&state),
            upstream: Some(upstream),
            accounting: Some(accounting),
            writer: ChatChunkWriter::new(&request_id, model, created, translated.include_usage),
        };
        return Ok(response
            .insert_header((CONTENT_TYPE, "text/event-stream"))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .insert_header(("x-accel-buffering", "no"))
            .streaming(stream.into_body()));
    }

    let answer = match client.chat(&translated.request).await {
        Ok(answer) => {
            accounting.upstream_answered();
            answer
        }
        Err(err) => return Err(fail_before_answer(accounting, err).await),
    };
    let usage = Usage::from_ollama(answer.prompt_eval_count, answer.eval_count);
    // The client gets the answer only once its usage is on disk.
    accounting
        .finish(
            usage.prompt_tokens,
            usage.completion_tokens,
            UsageStatus::Ok,
        )
        .await?;
    let completion = ChatCompletion::from_ollama(answer, &request_id, model, created);
    let mut body = Vec::with_capacity(crate::json_response::JSON_CAPACITY);
    completion.write_json(&mut body);
    Ok(crate::json_response::json_bytes_response(response, body))
}

/// Ollama's NDJSON stream, re-emitted as OpenAI Server-Sent Events.
struct SseStream {
    /// Counts this stream in `aiproxy_open_streams` while it lives.
    #[expect(dead_code, reason = "held for its Drop")]
    gauge: StreamGauge,
    /// Taken when the answer is complete, to hand the connection back to the pool.
    upstream: Option<ChatStream>,
    accounting: Option<Accounting>,
    writer: ChatChunkWriter,
}

impl SseStream {
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
                Some(Ok(chunk)) if chunk.done => {
                    if let Some(upstream) = self.upstream.take() {
                        upstream.release();
                    }
                    return Some(self.finish(chunk).await);
                }
                Some(Ok(chunk)) => {
                    let mut out = Vec::with_capacity(EVENT_CAPACITY);
                    if let Some(message) = chunk.message {
                        if !message.content.is_empty()
                            || message.thinking.as_deref().is_some_and(|t| !t.is_empty())
                        {
                            accounting.token_streamed();
                        }
                        self.writer.write_deltas(&mut out, message);
                    }
                    if !out.is_empty() {
                        return Some(Bytes::from(out));
                    }
                }
                Some(Err(aiproxy_ollama::OllamaError::InvalidResponse { message })) => {
                    // One unreadable line (the client skips it and reads on) costs at most a
                    // token of text; ending the whole answer for it would cost the rest.
                    tracing::warn!(%message, "skipped a line from Ollama that is not JSON");
                    continue;
                }
                Some(Err(err)) => {
                    // Headers are gone; the failure becomes the stream's last event. Usage
                    // for what was delivered is still recorded.
                    if let Some(accounting) = self.accounting.take()
                        && let Err(store_err) = accounting.finish_streamed_as_error().await
                    {
                        tracing::error!(error = %store_err, "could not record a failed stream");
                    }
                    return Some(Bytes::from(ApiError::Upstream(err).to_stream_event()));
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

    /// The last content (if any), the finish chunk, the usage chunk and `[DONE]`, sent only
    /// after the usage row is committed.
    async fn finish(&mut self, last: ollama::ChatResponse) -> Bytes {
        let mut out = Vec::with_capacity(4 * EVENT_CAPACITY);
        if let Some(message) = last.message {
            self.writer.write_deltas(&mut out, message);
        }
        self.writer
            .write_finish(&mut out, last.done_reason.as_deref());
        let usage = Usage::from_ollama(last.prompt_eval_count, last.eval_count);
        let committed = match self.accounting.take() {
            Some(accounting) => {
                accounting
                    .finish(
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        UsageStatus::Ok,
                    )
                    .await
            }
            None => Ok(()),
        };
        if let Err(err) = committed {
            out.extend_from_slice(&ApiError::Storage(err).to_stream_event());
            return Bytes::from(out);
        }
        self.writer.write_usage(&mut out, usage);
        Bytes::from(out)
    }
}

/// Counts an open stream until dropped.
pub(crate) struct StreamGauge(web::Data<AppState>);

impl StreamGauge {
    pub(crate) fn open(state: &web::Data<AppState>) -> Self {
        state.metrics.stream_opened();
        Self(state.clone())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.metrics.stream_closed();
    }
}
