//! `GET /v1/models` and `GET /v1/models/{model}`.

use actix_web::{HttpResponse, get, web};
use aiproxy_domain::UnixMillis;
use aiproxy_ollama::{ModelInfo, OllamaClient};

use crate::auth::AuthedUser;
use crate::error::{ApiError, ErrorResponse};
use crate::headers::current_limit_headers;
use crate::openai::{Model, ModelList};
use crate::state::AppState;

/// Lists the models Ollama has that this user may call.
#[utoipa::path(
    tag = "user",
    responses(
        (status = 200, description = "The models", body = ModelList),
        (status = 401, description = "Missing or wrong key", body = ErrorResponse),
        (status = 502, description = "Ollama unreachable", body = ErrorResponse),
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
    let data = tags
        .models
        .iter()
        .filter(|m| user.0.may_use_model(model_id(m)))
        .map(to_openai)
        .collect();
    let mut response = HttpResponse::Ok();
    for header in current_limit_headers(&state, &user.0) {
        response.insert_header(header);
    }
    Ok(response.json(ModelList {
        object: "list",
        data,
    }))
}

/// One model, by name (with or without its tag).
#[utoipa::path(
    tag = "user",
    params(("model" = String, Path, description = "The model's name, e.g. `llama3.2` or `llama3.2:latest`")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 401, description = "Missing or wrong key", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
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
    let with_tag = if wanted.contains(':') {
        wanted.clone()
    } else {
        format!("{wanted}:latest")
    };
    let found = tags
        .models
        .iter()
        .find(|m| model_id(m) == with_tag || model_id(m) == wanted)
        .ok_or_else(not_found)?;
    let mut response = HttpResponse::Ok();
    for header in current_limit_headers(&state, &user.0) {
        response.insert_header(header);
    }
    Ok(response.json(to_openai(found)))
}

fn model_id(info: &ModelInfo) -> &str {
    if info.model.is_empty() {
        &info.name
    } else {
        &info.model
    }
}

fn to_openai(info: &ModelInfo) -> Model {
    let id = model_id(info);
    let owned_by = match id.split_once('/') {
        Some((namespace, _)) => namespace.to_owned(),
        None => "library".to_owned(),
    };
    Model {
        id: id.to_owned(),
        object: "model",
        created: parse_rfc3339_seconds(&info.modified_at)
            .unwrap_or_else(|| UnixMillis::now().as_unix_seconds()),
        owned_by,
    }
}

/// Unix seconds of an RFC 3339 time such as Ollama's `modified_at`.
fn parse_rfc3339_seconds(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}
