//! `POST /v1/completions` (the legacy text API) → Ollama's `/api/generate`.

use std::convert::Infallible;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::{GenerateRequest, GenerateStream, OllamaClient};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::accounting::{Accounting, Admitted, admit, ensure_model_allowed};
use crate::auth::AuthedUser;
use crate::body::{content_length, read_json};
use crate::chat::fail_before_answer;
use crate::error::{ApiError, ErrorResponse};
use crate::metrics::StreamGauge;
use crate::openai::{StopSequences, StreamOptions, Usage};
use crate::state::AppState;
use crate::translate::finish_reason;

/// `POST /v1/completions` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "llama3.2", "prompt": "Once upon a time", "max_tokens": 32}))]
pub struct CompletionRequest {
    /// The model.
    pub model: String,
    /// The prompt: a string (or a list holding exactly one string).
    #[schema(value_type = Object)]
    pub prompt: Value,
    /// Text after the completion (fill-in-the-middle models).
    #[serde(default)]
    pub suffix: Option<String>,
    /// The most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// 0 to 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Option<StopSequences>,
    /// -2 to 2.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// -2 to 2.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Stream as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_usage` adds a final usage chunk.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Must be 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// Not available.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Not available.
    #[serde(default)]
    pub echo: Option<bool>,
}

/// A `text_completion` (or one chunk of a streamed one).
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The model.
    pub model: String,
    /// One choice (none in the final usage chunk).
    pub choices: Vec<TextChoice>,
    /// Token counts (absent on streamed chunks unless asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}

/// One choice of a text completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextChoice {
    /// The text.
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop` or `length`; null on streamed chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// Creates a text completion (legacy API).
#[utoipa::path(
    tag = "user",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream: true` Server-Sent Events of `text_completion` chunks ending in `data: [DONE]`", content(
            (TextCompletion = "application/json"),
            (crate::openai::SseEvent = "text/event-stream"),
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
    let prompt = match &request.prompt {
        Value::String(text) => text.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return Err(ApiError::bad_request(
                "`prompt` must be a string (Ollama completes one prompt per request).",
                Some("prompt".into()),
            ));
        }
    };
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("`n` must be 1.", Some("n".into())));
    }
    if request.logprobs.is_some_and(|n| n > 0) || request.echo == Some(true) {
        return Err(ApiError::bad_request(
            "`logprobs` and `echo` are not available through this proxy.",
            Some("logprobs".into()),
        ));
    }
    let mut options = Map::new();
    for (name, value) in [
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ] {
        if let Some(v) = value {
            options.insert(name.into(), Value::from(v));
        }
    }
    if let Some(seed) = request.seed {
        options.insert("seed".into(), Value::from(seed));
    }
    match &request.stop {
        Some(StopSequences::One(s)) => {
            options.insert("stop".into(), Value::from(vec![s.clone()]));
        }
        Some(StopSequences::Many(s)) => {
            options.insert("stop".into(), Value::from(s.clone()));
        }
        None => {}
    }

    let Admitted {
        accounting,
        budget,
        mut response,
        request_id,
        created_at,
    } = admit(
        &req,
        &state,
        &user,
        &request.model,
        Endpoint::Completions,
        request.max_tokens,
    )?;
    if let Some(budget) = budget {
        options.insert("num_predict".into(), Value::from(budget));
    }
    let upstream = GenerateRequest {
        model: request.model.clone(),
        prompt,
        suffix: request.suffix.clone(),
        options: (!options.is_empty()).then_some(options),
        ..GenerateRequest::default()
    };
    let id = format!("cmpl-{request_id}");

    if request.stream.unwrap_or(false) {
        let stream = match client.generate_stream(&upstream).await {
            Ok(stream) => {
                accounting.upstream_answered();
                stream
            }
            Err(err) => return Err(fail_before_answer(accounting, err).await),
        };
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let sse = TextSse {
            gauge: StreamGauge::open(&state),
            upstream: Some(stream),
            accounting: Some(accounting),
            id,
            model: request.model,
            created: created_at.as_unix_seconds(),
            include_usage,
        };
        return Ok(response
            .insert_header((CONTENT_TYPE, "text/event-stream"))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .streaming(sse.into_body()));
    }

    let answer = match client.generate(&upstream).await {
        Ok(answer) => {
            accounting.upstream_answered();
            answer
        }
        Err(err) => return Err(fail_before_answer(accounting, err).await),
    };
    let usage = Usage::new(
        answer.prompt_eval_count.unwrap_or(0),
        answer.eval_count.unwrap_or(0),
    );
    accounting
        .finish(
            usage.prompt_tokens,
            usage.completion_tokens,
            UsageStatus::Ok,
        )
        .await?;
    Ok(crate::body::json_response(
        response,
        &TextCompletion {
            id,
            object: "text_completion",
            created: created_at.as_unix_seconds(),
            model: request.model,
            choices: vec![TextChoice {
                text: answer.response,
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason(answer.done_reason.as_deref(), false)),
            }],
            usage: Some(Some(usage)),
        },
    ))
}

struct TextSse {
    /// Counts this stream in `aiproxy_open_streams` while it lives.
    #[expect(dead_code, reason = "held for its Drop")]
    gauge: StreamGauge,
    /// Taken when the answer is complete, to hand the connection back to the pool.
    upstream: Option<GenerateStream>,
    accounting: Option<Accounting>,
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
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
                    let mut out = Vec::with_capacity(4 * crate::sse::EVENT_CAPACITY);
                    if !chunk.response.is_empty() {
                        self.write(&mut out, Some(chunk.response), None, None);
                    }
                    let usage = Usage::new(
                        chunk.prompt_eval_count.unwrap_or(0),
                        chunk.eval_count.unwrap_or(0),
                    );
                    self.write(
                        &mut out,
                        Some(String::new()),
                        Some(finish_reason(chunk.done_reason.as_deref(), false)),
                        None,
                    );
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
                    if self.include_usage {
                        self.write(&mut out, None, None, Some(usage));
                    }
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    return Some(Bytes::from(out));
                }
                Some(Ok(chunk)) => {
                    if chunk.response.is_empty() {
                        continue;
                    }
                    if let Some(accounting) = self.accounting.as_mut() {
                        accounting.streamed_tokens += 1;
                        accounting.first_token_sent();
                    }
                    let mut out = Vec::with_capacity(crate::sse::EVENT_CAPACITY);
                    self.write(&mut out, Some(chunk.response), None, None);
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
                    let tokens = accounting.streamed_tokens;
                    if let Err(store_err) = accounting.finish(0, tokens, UsageStatus::Error).await {
                        tracing::error!(error = %store_err, "could not record a failed stream");
                    }
                    return Some(Bytes::from(ApiError::Upstream(err).to_stream_event()));
                }
                None => {
                    let accounting = self.accounting.take()?;
                    let tokens = accounting.streamed_tokens;
                    let _ = accounting.finish(0, tokens, UsageStatus::Error).await;
                    return None;
                }
            }
        }
    }

    /// A text chunk (`text` set), or the usage chunk (`usage` set, no choices).
    fn write(
        &self,
        out: &mut Vec<u8>,
        text: Option<String>,
        finish_reason: Option<&'static str>,
        usage: Option<Usage>,
    ) {
        let chunk = TextCompletion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices: text
                .map(|text| TextChoice {
                    text,
                    index: 0,
                    logprobs: None,
                    finish_reason,
                })
                .into_iter()
                .collect(),
            usage: self.include_usage.then_some(usage),
        };
        out.extend_from_slice(b"data: ");
        // Serialising strings, numbers and options into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }
}
