//! `POST /v1/completions` (the legacy text API) → Ollama's `/api/generate`.

use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::{self as ollama, OllamaClient};
use aiproxy_openai::{
    CompletionRequest, EVENT_CAPACITY, SseEvent, TextChunkWriter, TextCompletion, Usage,
    completion_request_to_ollama,
};

use crate::accounting::{Accounting, fail_before_answer};
use crate::admission::{Admitted, admit, ensure_model_allowed};
use crate::auth::AuthedUser;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::error_responses::ModelCallErrors;
use crate::request_id::request_id;
use crate::state::AppState;
use crate::streaming::{Encoder, stream_response};

/// Creates a text completion (legacy API).
#[utoipa::path(
    tag = "user",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream: true` Server-Sent Events of `text_completion` chunks ending in `data: [DONE]`", content(
            (TextCompletion = "application/json"),
            (SseEvent = "text/event-stream"),
        )),
        ModelCallErrors,
    ),
    security(("user_key" = []))
)]
#[post("/v1/completions")]
pub async fn completions(
    req: HttpRequest,
    user: AuthedUser,
    body: JsonBody<CompletionRequest>,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let request = body.read().await?;
    let user = user.0;
    ensure_model_allowed(&user, &request.model)?;
    let mut translated = completion_request_to_ollama(request)?;
    let model = translated.request.model.clone();

    let Admitted {
        ticket,
        budget,
        response,
    } = admit(&state, &user, translated.max_tokens).await?;
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
        let writer = TextChunkWriter::new(&request_id, model, created, translated.include_usage);
        return Ok(stream_response(
            response, &state, stream, accounting, writer,
        ));
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

/// OpenAI's `text_completion` chunks, for the stream machine.
impl Encoder for TextChunkWriter {
    const CONTENT_TYPE: &'static str = "text/event-stream";
    const EVENT_CAPACITY: usize = EVENT_CAPACITY;

    fn delta(&mut self, out: &mut Vec<u8>, message: ollama::Message) {
        self.write_text(out, message.content);
    }

    fn finish(&mut self, out: &mut Vec<u8>, done_reason: Option<&str>) {
        self.write_finish(out, done_reason);
    }

    fn usage(&mut self, out: &mut Vec<u8>, prompt_tokens: u64, completion_tokens: u64) {
        self.write_usage(out, Usage::new(prompt_tokens, completion_tokens));
    }

    fn error(&mut self, out: &mut Vec<u8>, error: &ApiError) {
        error.write_stream_event(out);
    }
}
