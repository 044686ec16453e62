//! This crate's error (a request it cannot translate) and Anthropic's error shape, with the
//! error types and statuses Anthropic's API and SDKs use.

use serde::Serialize;
use utoipa::ToSchema;

/// A request that cannot be translated: the field at fault (`messages.1.content.0.source`)
/// and what was wrong, written for the client. The HTTP layer answers it with a 400
/// `invalid_request_error`; its text is `<field>: <message>`, as Anthropic words its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    /// The request field at fault, as a dotted path.
    pub field: String,
    /// What was wrong and what to send instead.
    pub message: String,
}

impl InvalidRequest {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What kind of failure an error is, as Anthropic classifies them; each has its `type` name
/// and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400 `invalid_request_error`: the request is malformed (also used for other 4xx).
    InvalidRequest,
    /// 401 `authentication_error`: no key or a bad one.
    Authentication,
    /// 403 `permission_error`: the key may not do this (a model outside the user's list).
    Permission,
    /// 404 `not_found_error`: no such model or route.
    NotFound,
    /// 413 `request_too_large`: the body is over the limit.
    RequestTooLarge,
    /// 429 `rate_limit_error`: over a limit.
    RateLimit,
    /// 500 `api_error`: a failure of the proxy or of Ollama.
    Api,
    /// 504 `timeout_error`: Ollama took too long.
    Timeout,
    /// 529 `overloaded_error`: Ollama is busy (its queue is full).
    Overloaded,
}

impl ErrorKind {
    /// The error's `type`, as Anthropic names it.
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }

    /// The HTTP status Anthropic answers it with. `Overloaded` is Anthropic's own 529, which
    /// its SDKs retry as `OverloadedError`.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Api => 500,
            ErrorKind::Timeout => 504,
            ErrorKind::Overloaded => 529,
        }
    }

    /// The kind for an HTTP status (Ollama's, or any upstream's), as Ollama's own Anthropic
    /// layer maps them: 503 and 529 are `overloaded_error`, other 4xx are invalid requests,
    /// other 5xx `api_error`.
    pub fn for_status(status: u16) -> Self {
        match status {
            401 => ErrorKind::Authentication,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            504 => ErrorKind::Timeout,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Api,
        }
    }
}

/// Anthropic's error shape: `{"type":"error","error":{"type":…,"message":…}}`, the body of an
/// error response and the data of a stream's `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached on requests_per_minute (limit 3)."}}))]
pub struct ErrorResponse {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What went wrong.
    pub error: ErrorBody,
    /// The request's id, when known (`req_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The body of an Anthropic error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error type (`invalid_request_error`, `rate_limit_error`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A message written for the client.
    pub message: String,
}

impl ErrorResponse {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind: "error",
            error: ErrorBody {
                kind: kind.type_name(),
                message: message.into(),
            },
            request_id: None,
        }
    }

    /// Appends the error as JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Strings and derived `Serialize`s do not fail, and writing into a `Vec` cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

impl From<InvalidRequest> for ErrorResponse {
    fn from(error: InvalidRequest) -> Self {
        ErrorResponse::new(ErrorKind::InvalidRequest, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_kind_has_anthropics_type_and_status() {
        let table = [
            (ErrorKind::InvalidRequest, "invalid_request_error", 400),
            (ErrorKind::Authentication, "authentication_error", 401),
            (ErrorKind::Permission, "permission_error", 403),
            (ErrorKind::NotFound, "not_found_error", 404),
            (ErrorKind::RequestTooLarge, "request_too_large", 413),
            (ErrorKind::RateLimit, "rate_limit_error", 429),
            (ErrorKind::Api, "api_error", 500),
            (ErrorKind::Timeout, "timeout_error", 504),
            (ErrorKind::Overloaded, "overloaded_error", 529),
        ];
        for (kind, name, status) in table {
            assert_eq!((kind.type_name(), kind.status()), (name, status));
            assert_eq!(ErrorKind::for_status(status), kind, "{status}");
        }
        assert_eq!(ErrorKind::for_status(503), ErrorKind::Overloaded);
        assert_eq!(ErrorKind::for_status(499), ErrorKind::InvalidRequest);
        assert_eq!(ErrorKind::for_status(502), ErrorKind::Api);
    }

    #[test]
    fn the_shape_is_anthropics() {
        let mut out = Vec::new();
        ErrorResponse::from(InvalidRequest::new("max_tokens", "Field required"))
            .write_json(&mut out);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}})
        );
        let with_id = ErrorResponse {
            request_id: Some("req_1".into()),
            ..ErrorResponse::new(ErrorKind::Overloaded, "Overloaded")
        };
        assert_eq!(
            serde_json::to_value(&with_id).unwrap(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"})
        );
    }
}
