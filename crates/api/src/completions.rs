//! `POST /v1/completions` (the legacy text API) → Ollama's `/api/generate`.

use std::convert::Infallible;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::{GenerateStream, OllamaClient};
use aiproxy_openai::{
    CompletionRequest, EVENT_CAPACITY, ErrorResponse, SseEvent, TextChunkWriter, TextCompletion,
    Usage, completion_request_to_ollama,
};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::accounting::{Accounting, fail_before_answer};
use crate::admission::{Admitted, admit, ensure_model_allowed};
use crate::auth::AuthedUser;
use crate::body::{content_length, read_json};
use crate::chat::StreamGauge;
use crate::error::ApiError;
use crate::request_id::request_id;
use crate::state::AppState;

/// Creates a text completion (legacy API).
#[utoipa::path(
    tag = "user",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream: true` Server-Sent Events of `text_completion` chunks ending in `data: [DONE]`", content(
            (TextCompletion = "application/json"),
            (SseEvent = "text/event-stream"),
        )),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
        (status = 429, description = "Over a rate limit", body = ErrorResponse),
        (status = 502, description = "Ollama unreachable or failed", body = ErrorResponse),
    ),
    security(("user_key" = []))
)]
#[post("/v1/completions")]
pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    user: AuthedUser,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let request: CompletionRequest =
        read_json(payload, content_length(&req), state.settings.max_body_bytes).await?;
    let user = user.0;
    ensure_model_allowed(&user, &request.model)?;
    let mut translated = completion_request_to_ollama(request)?;
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
        Endpoint::Completions,
        request_id.clone(),
    );
    if let Some(budget) = budget {
        translated.limit_completion(budget);
    }

    if translated.stream {
        let stream = match client.generate_stream(&translated.request).await {
            Ok(stream) => {
                accounting.upstream_answered();
                stream
            }
            Err(err) => return Err(fail_before_answer(accounting, err).await),
        };
        let sse = TextSse {
            gauge: StreamGauge::open(&state),
            upstream: Some(stream),
            accounting: Some(accounting),
            writer: TextChunkWriter::new(&request_id, model, created, translated.include_usage),
        };
        return Ok(response
            .insert_header((CONTENT_TYPE, "text/event-stream"))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .streaming(sse.into_body()));
    }

    let answer = match client.generate(&translated.request).await {
        Ok(answer) => {
            accounting.upstream_answered();
            answer
        }
        Err(err) => return Err(fail_before_answer(accounting, err).await),
    };
    let usage = Usage::from_ollama(answer.prompt_eval_count, answer.eval_count);
    accounting
        .finish(
            usage.prompt_tokens,
            usage.completion_tokens,
            UsageStatus::Ok,
        )
        .await?;
    let completion = TextCompletion::from_ollama(answer, &request_id, model, created);
    Ok(crate::json_response::json_response(response, &completion))
}

struct TextSse {
    /// Counts this stream in `aiproxy_open_streams` while it lives.
    #[expect(dead_code, reason = "held for its Drop")]
    gauge: StreamGauge,
    /// Taken when the answer is complete, to hand the connection back to the pool.
    upstream: Option<GenerateStream>,
    accounting: Option<Accounting>,
    writer: TextChunkWriter,
}

impl TextSse {
    fn into_body(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + 'static {
        futures_util::stream::unfold(self, |mut this| async move {
            let bytes = this.next_event().await?;
            Some((Ok(bytes), this))
        })
    }

    async fn next_event(&mut self) -> Option<Bytes> {
        loop {
            self.accounting.as_ref()?;
            let upstream = self.upstream.as_mut()?;
            match upstream.next().await {
                Some(Ok(chunk)) if chunk.done => {
                    if let Some(upstream) = self.upstream.take() {
                        upstream.release();
                    }
                    let mut out = Vec::with_capacity(4 * EVENT_CAPACITY);
                    self.writer.write_text(&mut out, chunk.response);
                    let usage = Usage::from_ollama(chunk.prompt_eval_count, chunk.eval_count);
                    self.writer
                        .write_finish(&mut out, chunk.done_reason.as_deref());
                    let accounting = self.accounting.take()?;
                    let committed = accounting
                        .finish(
                            usage.prompt_tokens,
                            usage.completion_tokens,
                            UsageStatus::Ok,
                        )
                        .await;
                    if let Err(err) = committed {
                        out.extend_from_slice(&ApiError::Storage(err).to_stream_event());
                        return Some(Bytes::from(out));
                    }
                    self.writer.write_usage(&mut out, usage);
                    return Some(Bytes::from(out));
                }
                Some(Ok(chunk)) => {
                    if chunk.response.is_empty() {
                        continue;
                    }
                    if let Some(accounting) = self.accounting.as_mut() {
                        accounting.token_streamed();
                    }
                    let mut out = Vec::with_capacity(EVENT_CAPACITY);
                    self.writer.write_text(&mut out, chunk.response);
                    return Some(Bytes::from(out));
                }
                Some(Err(aiproxy_ollama::OllamaError::InvalidResponse { message })) => {
                    // One unreadable line (the client skips it and reads on) costs at most a
                    // token of text; ending the whole answer for it would cost the rest.
                    tracing::warn!(%message, "skipped a line from Ollama that is not JSON");
                    continue;
                }
                Some(Err(err)) => {
                    let accounting = self.accounting.take()?;
                    if let Err(store_err) = accounting.finish_streamed_as_error().await {
                        tracing::error!(error = %store_err, "could not record a failed stream");
                    }
                    return Some(Bytes::from(ApiError::Upstream(err).to_stream_event()));
                }
                None => {
                    let accounting = self.accounting.take()?;
                    let _ = accounting.finish_streamed_as_error().await;
                    return None;
                }
            }
        }
    }
}
