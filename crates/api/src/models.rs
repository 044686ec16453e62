//! `GET /v1/models` and `GET /v1/models/{model}`.

use actix_web::{HttpResponse, get, web};
use aiproxy_domain::UnixMillis;
use aiproxy_ollama::OllamaClient;
use aiproxy_openai::{Model, ModelList, find_model, model_id};

use crate::admission::current_limit_headers;
use crate::auth::AuthedUser;
use crate::error::ApiError;
use crate::error_responses::{OllamaUnreachable, UnknownModel, UserKeyRefused};
use crate::state::AppState;

/// Lists the models Ollama has that this user may call.
#[utoipa::path(
    tag = "user",
    responses(
        (status = 200, description = "The models", body = ModelList),
        UserKeyRefused,
        OllamaUnreachable,
    ),
    security(("user_key" = []))
)]
#[get("/v1/models")]
pub async fn list_models(
    user: AuthedUser,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let tags = client.tags().await?;
    let now = UnixMillis::now().as_unix_seconds();
    let data = tags
        .models
        .iter()
        .filter(|m| user.0.may_use_model(model_id(m)))
        .map(|m| Model::from_ollama(m, now))
        .collect();
    let mut response = HttpResponse::Ok();
    for header in current_limit_headers(&state, &user.0).await {
        response.insert_header(header);
    }
    Ok(response.json(ModelList::new(data)))
}

/// One model, by name (with or without its tag).
#[utoipa::path(
    tag = "user",
    params(("model" = String, Path, description = "The model's name, e.g. `llama3.2` or `llama3.2:latest`")),
    responses(
        (status = 200, description = "The model", body = Model),
        UserKeyRefused,
        UnknownModel,
    ),
    security(("user_key" = []))
)]
#[get("/v1/models/{model:.+}")]
pub async fn get_model(
    user: AuthedUser,
    path: web::Path<String>,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let wanted = path.into_inner();
    let not_found = || ApiError::ModelNotFound {
        model: wanted.clone(),
    };
    if !user.0.may_use_model(&wanted) {
        return Err(not_found());
    }
    let tags = client.tags().await?;
    let found = find_model(&tags.models, &wanted).ok_or_else(not_found)?;
    let mut response = HttpResponse::Ok();
    for header in current_limit_headers(&state, &user.0).await {
        response.insert_header(header);
    }
    Ok(response.json(Model::from_ollama(
        found,
        UnixMillis::now().as_unix_seconds(),
    )))
}
