//! `POST /v1/chat/completions`: the hot path.

use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::{self as ollama, OllamaClient};
use aiproxy_openai::{
    ChatChunkWriter, ChatCompletion, ChatCompletionRequest, EVENT_CAPACITY, SseEvent, Usage,
    chat_request_to_ollama,
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
        ModelCallErrors,
    ),
    security(("user_key" = []))
)]
#[post("/v1/chat/completions")]
pub async fn chat_completions(
    req: HttpRequest,
    user: AuthedUser,
    body: JsonBody<ChatCompletionRequest>,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let request = body.read().await?;
    let user = user.0;
    ensure_model_allowed(&user, &request.model)?;
    let mut translated = chat_request_to_ollama(request)?;
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
        let writer = ChatChunkWriter::new(&request_id, model, created, translated.include_usage);
        return Ok(stream_response(
            response, &state, upstream, accounting, writer,
        ));
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

/// OpenAI's `chat.completion.chunk` events, for the stream machine.
impl Encoder for ChatChunkWriter {
    const CONTENT_TYPE: &'static str = "text/event-stream";
    const EVENT_CAPACITY: usize = EVENT_CAPACITY;

    fn delta(&mut self, out: &mut Vec<u8>, message: ollama::Message) {
        self.write_deltas(out, message);
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
