//! `POST /v1/embeddings` → Ollama's `/api/embed`.

use actix_web::{HttpRequest, HttpResponse, post, web};
use aiproxy_domain::{Endpoint, UsageStatus};
use aiproxy_ollama::{EmbedRequest, OllamaClient};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::accounting::{Admitted, admit, ensure_model_allowed};
use crate::auth::AuthedUser;
use crate::body::{content_length, read_json};
use crate::error::{ApiError, ErrorResponse};
use crate::openai::Usage;
use crate::state::AppState;

/// `POST /v1/embeddings` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "nomic-embed-text", "input": ["first text", "second text"]}))]
pub struct EmbeddingRequest {
    /// An embedding model, e.g. `nomic-embed-text`.
    pub model: String,
    /// A string or a list of strings (token arrays are not supported by Ollama).
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (default) or `base64` (little-endian float32).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Truncate the vectors to this many dimensions.
    #[serde(default)]
    pub dimensions: Option<u32>,
}

/// One embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position in the input.
    pub index: usize,
    /// Floats, or a base64 string with `encoding_format: base64`.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

/// The embeddings usage (no completion tokens).
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: &'static str,
    /// One embedding per input.
    pub data: Vec<Embedding>,
    /// The model as requested.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// Creates embeddings of one or more texts.
#[utoipa::path(
    tag = "user",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, body = EmbeddingList),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = ErrorResponse),
        (status = 404, description = "Unknown model", body = ErrorResponse),
        (status = 429, description = "Over a rate limit", body = ErrorResponse),
        (status = 502, description = "Ollama unreachable or failed", body = ErrorResponse),
    ),
    security(("user_key" = []))
)]
#[post("/v1/embeddings")]
pub async fn embeddings(
    req: HttpRequest,
    payload: web::Payload,
    user: AuthedUser,
    state: web::Data<AppState>,
    client: web::Data<OllamaClient>,
) -> Result<HttpResponse, ApiError> {
    let request: EmbeddingRequest =
        read_json(payload, content_length(&req), state.settings.max_body_bytes).await?;
    let user = user.0;
    ensure_model_allowed(&user, &request.model)?;
    let input = match request.input {
        Value::String(text) => Value::from(vec![text]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Value::Array(items)
        }
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::bad_request(
                "`input` must not be empty.",
                Some("input".into()),
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "`input` must be a string or a list of strings; token arrays are not supported.",
                Some("input".into()),
            ));
        }
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("Invalid encoding_format `{other}`; use `float` or `base64`."),
                Some("encoding_format".into()),
            ));
        }
    };

    let Admitted {
        accounting,
        response,
        ..
    } = admit(
        &req,
        &state,
        &user,
        &request.model,
        Endpoint::Embeddings,
        Some(0),
    )?;
    let upstream = EmbedRequest {
        model: request.model.clone(),
        input,
        truncate: None,
        dimensions: request.dimensions,
        keep_alive: None,
        options: None,
    };
    let answer = match client.embed(&upstream).await {
        Ok(answer) => {
            accounting.upstream_answered();
            answer
        }
        Err(err) => return Err(crate::chat::fail_before_answer(accounting, err).await),
    };
    let prompt_tokens = answer.prompt_eval_count.unwrap_or(0);
    accounting.finish(prompt_tokens, 0, UsageStatus::Ok).await?;
    let data = answer
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, vector)| Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let mut bytes = Vec::with_capacity(vector.len() * 4);
                for value in vector {
                    bytes.extend_from_slice(&value.to_le_bytes());
                }
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(vector)
            },
        })
        .collect();
    let usage = Usage::new(prompt_tokens, 0);
    Ok(crate::body::json_response(
        response,
        &EmbeddingList {
            object: "list",
            data,
            model: request.model,
            usage: EmbeddingUsage {
                prompt_tokens: usage.prompt_tokens,
                total_tokens: usage.total_tokens,
            },
        },
    ))
}
