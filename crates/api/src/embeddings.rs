//! `POST /v1/embeddings` → Ollama's `/api/embed`.

use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::OllamaClient;
use aiproxy_openai::{EmbeddingList, EmbeddingRequest, embedding_request_to_ollama};

use crate::accounting::{Accounting, fail_before_answer};
use crate::admission::{Admitted, admit, ensure_model_allowed};
use crate::auth::AuthedUser;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::error_responses::ModelCallErrors;
use crate::request_id::request_id;
use crate::state::AppState;

/// Creates embeddings of one or more texts.
#[utoipa::path(
    tag = "user",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, body = EmbeddingList),
        ModelCallErrors,
    ),
    security(("user_key" = []))
)]
#[post("/v1/embeddings")]
pub async fn embeddings(
    req: HttpRequest,
    user: AuthedUser,
    body: JsonBody<EmbeddingRequest>,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let request = body.read().await?;
    let user = user.0;
    ensure_model_allowed(&user, &request.model)?;
    let translated = embedding_request_to_ollama(request)?;

    let Admitted {
        ticket, response, ..
    } = admit(&state, &user, Some(0)).await?;
    let request_id = request_id(&req);
    let accounting = Accounting::open(
        &state,
        ticket,
        &user.id,
        translated.request.model.clone(),
        Endpoint::Embeddings,
        request_id.clone(),
    );
    let answer = match client.embed(&translated.request).await {
        Ok(answer) => {
            accounting.upstream_answered();
            answer
        }
        Err(err) => return Err(fail_before_answer(accounting, err).await),
    };
    let prompt_tokens = answer.prompt_eval_count.unwrap_or(0);
    accounting.finish(prompt_tokens, 0, UsageStatus::Ok).await?;
    let list = EmbeddingList::from_ollama(answer, translated.request.model, translated.encoding);
    Ok(crate::json_response::json_response(response, &list))
}
