//! This crate's error (a request it cannot translate) and OpenAI's error envelope.

use serde::Serialize;
use utoipa::ToSchema;

/// A request that cannot be translated: what was wrong, written for the client, and the field
/// at fault. The HTTP layer answers it with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    /// What was wrong and what to send instead.
    pub message: String,
    /// The request field at fault, as a path (`messages[1].content[2]`).
    pub param: Option<String>,
    /// A specific machine-readable code (`invalid_image`), when one applies.
    pub code: Option<&'static str>,
}

impl InvalidRequest {
    /// An error about `param`, without a specific code.
    pub fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }
}

/// OpenAI's error envelope: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}))]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorBody,
}

/// The body of an OpenAI error; all four fields are always present.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A message written for the client: what was wrong and what to do.
    pub message: String,
    /// The error class (`invalid_request_error`, `server_error`, `requests`, `tokens`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, when known (`messages[0].content`).
    pub param: Option<String>,
    /// A stable machine-readable code (`invalid_api_key`, `model_not_found`, …).
    pub code: Option<&'static str>,
}
