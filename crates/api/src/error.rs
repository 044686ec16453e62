//! The one place where failures become HTTP responses in OpenAI's error shape.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use aiproxy_domain::{StoreError, ValidationError};
use aiproxy_ollama::{OllamaError, TimeoutPhase};
use aiproxy_openai::{ErrorBody, ErrorResponse, InvalidRequest, write_event};
use aiproxy_ratelimit::{LimitKind, Rejection};

use crate::ratelimit_headers::rate_limit_headers;

/// Everything a request can fail with. Each variant decides its status, OpenAI `type` and
/// `code`, message and headers in `ApiError::describe`, one exhaustive table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something impossible.
    #[error("bad request: {message}")]
    BadRequest {
        /// For the client.
        message: String,
        /// The field at fault.
        param: Option<String>,
        /// A specific code, when one applies.
        code: Option<&'static str>,
    },
    /// No key, a wrong key, an expired key or a disabled user.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// For the client; never echoes the key.
        message: String,
    },
    /// The key is fine but this user may not do this (a model outside its list).
    #[error("forbidden: {message}")]
    Forbidden {
        /// For the client.
        message: String,
        /// A specific code.
        code: &'static str,
    },
    /// A route or a resource that does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// For the client.
        message: String,
    },
    /// The model is not known to Ollama.
    #[error("model '{model}' not found")]
    ModelNotFound {
        /// As the client named it.
        model: String,
    },
    /// The thing to create exists already.
    #[error("conflict: {message}")]
    Conflict {
        /// For the client.
        message: String,
    },
    /// A route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Over a rate limit or the lifetime quota.
    #[error("rate limited: {}", .0.limit.name())]
    RateLimited(Rejection),
    /// Ollama failed or could not be reached.
    #[error("the call to Ollama failed")]
    Upstream(#[from] OllamaError),
    /// The database failed.
    #[error("the store failed")]
    Storage(#[from] StoreError),
    /// A bug: something that should not happen. The client sees a generic message.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::BadRequest {
            message: err.to_string(),
            param: Some(err.field.to_owned()),
            code: Some("invalid_value"),
        }
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(err: InvalidRequest) -> Self {
        ApiError::BadRequest {
            message: err.message,
            param: err.param,
            code: err.code,
        }
    }
}

impl ApiError {
    /// A 400 with a message and the field at fault.
    pub fn bad_request(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: param.into(),
            code: None,
        }
    }

    /// The status, the body and any extra headers for this error.
    fn describe(&self) -> (StatusCode, ErrorBody, Vec<(HeaderName, HeaderValue)>) {
        let mut headers = Vec::new();
        let body = |message: String, kind, param, code| ErrorBody {
            message,
            kind,
            param,
            code,
        };
        let (status, body) = match self {
            ApiError::BadRequest {
                message,
                param,
                code,
            } => (
                StatusCode::BAD_REQUEST,
                body(
                    message.clone(),
                    "invalid_request_error",
                    param.clone(),
                    *code,
                ),
            ),
            ApiError::Unauthorized { message } => (
                StatusCode::UNAUTHORIZED,
                body(
                    message.clone(),
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ),
            ),
            ApiError::Forbidden { message, code } => (
                StatusCode::FORBIDDEN,
                body(message.clone(), "permission_error", None, Some(*code)),
            ),
            ApiError::NotFound { message } => (
                StatusCode::NOT_FOUND,
                body(
                    message.clone(),
                    "invalid_request_error",
                    None,
                    Some("not_found"),
                ),
            ),
            ApiError::ModelNotFound { model } => (
                StatusCode::NOT_FOUND,
                body(
                    format!("The model `{model}` does not exist or you do not have access to it."),
                    "invalid_request_error",
                    Some("model".into()),
                    Some("model_not_found"),
                ),
            ),
            ApiError::Conflict { message } => (
                StatusCode::CONFLICT,
                body(
                    message.clone(),
                    "invalid_request_error",
                    None,
                    Some("conflict"),
                ),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                body(
                    "This route does not accept that HTTP method.".into(),
                    "invalid_request_error",
                    None,
                    Some("method_not_allowed"),
                ),
            ),
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body(
                    format!("The request body is larger than the limit of {limit} bytes."),
                    "invalid_request_error",
                    None,
                    Some("request_too_large"),
                ),
            ),
            ApiError::RateLimited(rejection) => {
                headers.extend(rate_limit_headers(&rejection.status));
                let (kind, code) = match rejection.limit {
                    LimitKind::TotalTokens => ("insufficient_quota", "insufficient_quota"),
                    LimitKind::TokensPerMinute | LimitKind::TokensPerDay => {
                        ("tokens", "rate_limit_exceeded")
                    }
                    _ => ("requests", "rate_limit_exceeded"),
                };
                match rejection.retry_after_ms {
                    Some(ms) => {
                        let secs = ms.div_ceil(1000).max(1);
                        headers.push((
                            HeaderName::from_static("retry-after"),
                            HeaderValue::from(secs),
                        ));
                        headers.push((
                            HeaderName::from_static("retry-after-ms"),
                            HeaderValue::from(ms.max(1)),
                        ));
                    }
                    None => headers.push((
                        HeaderName::from_static("x-should-retry"),
                        HeaderValue::from_static("false"),
                    )),
                }
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    body(rejection_message(rejection), kind, None, Some(code)),
                )
            }
            ApiError::Upstream(err) => describe_upstream(err, &mut headers),
            ApiError::Storage(StoreError::NotFound { entity, id }) => (
                StatusCode::NOT_FOUND,
                body(
                    format!("No {entity} with id '{id}'."),
                    "invalid_request_error",
                    None,
                    Some("not_found"),
                ),
            ),
            ApiError::Storage(StoreError::Conflict { entity, id }) => (
                StatusCode::CONFLICT,
                body(
                    format!("A {entity} '{id}' already exists."),
                    "invalid_request_error",
                    None,
                    Some("conflict"),
                ),
            ),
            ApiError::Storage(StoreError::Unavailable(_)) => {
                headers.push((
                    HeaderName::from_static("retry-after"),
                    HeaderValue::from_static("1"),
                ));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    body(
                        "The proxy's database is unavailable; nothing was recorded. Try again shortly.".into(),
                        "server_error",
                        None,
                        Some("database_unavailable"),
                    ),
                )
            }
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                body(
                    "The server had an error while processing your request.".into(),
                    "server_error",
                    None,
                    None,
                ),
            ),
        };
        (status, body, headers)
    }
}

fn rejection_message(rejection: &Rejection) -> String {
    let name = rejection.limit.name();
    let value = rejection.value;
    match (rejection.limit, rejection.retry_after_ms) {
        (LimitKind::TotalTokens, _) => format!(
            "You exceeded your lifetime token quota (total_token_limit: {value}). Ask the operator to raise it."
        ),
        (_, Some(ms)) => format!(
            "Rate limit reached on {name} (limit {value}). Please try again in {:.3}s.",
            ms as f64 / 1000.0
        ),
        (_, None) => format!("Rate limit reached on {name} (limit {value})."),
    }
}

fn describe_upstream(
    err: &OllamaError,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
) -> (StatusCode, ErrorBody) {
    let server = |status, message: String, code| {
        (
            status,
            ErrorBody {
                message,
                kind: "server_error",
                param: None,
                code: Some(code),
            },
        )
    };
    match err {
        OllamaError::Connect { .. } => server(
            StatusCode::BAD_GATEWAY,
            "Ollama could not be reached.".into(),
            "upstream_unreachable",
        ),
        OllamaError::Timeout { phase } => {
            let what = match phase {
                TimeoutPhase::Connect => "connecting to Ollama",
                TimeoutPhase::Response => "waiting for Ollama's first byte",
                TimeoutPhase::Idle => "waiting for more of Ollama's answer",
            };
            server(
                StatusCode::GATEWAY_TIMEOUT,
                format!("Timed out {what}."),
                "upstream_timeout",
            )
        }
        OllamaError::ModelNotFound { model, .. } => (
            StatusCode::NOT_FOUND,
            ErrorBody {
                message: format!(
                    "The model `{model}` does not exist or you do not have access to it."
                ),
                kind: "invalid_request_error",
                param: Some("model".into()),
                code: Some("model_not_found"),
            },
        ),
        OllamaError::Busy { message } => {
            headers.push((
                HeaderName::from_static("retry-after"),
                HeaderValue::from_static("2"),
            ));
            server(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Ollama is busy: {message}"),
                "upstream_busy",
            )
        }
        OllamaError::Status { status, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            if status.is_client_error() {
                let code = if message.contains("exceeds the context length") {
                    Some("context_length_exceeded")
                } else {
                    None
                };
                (
                    status,
                    ErrorBody {
                        message: format!("Ollama refused the request: {message}"),
                        kind: "invalid_request_error",
                        param: None,
                        code,
                    },
                )
            } else {
                server(
                    status,
                    format!("Ollama failed: {message}"),
                    "upstream_error",
                )
            }
        }
        OllamaError::Stream { message } => server(
            StatusCode::BAD_GATEWAY,
            format!("Ollama failed while answering: {message}"),
            "upstream_error",
        ),
        OllamaError::Interrupted { .. } => server(
            StatusCode::BAD_GATEWAY,
            "Ollama's answer ended before it was complete.".into(),
            "upstream_interrupted",
        ),
        OllamaError::InvalidResponse { .. } => server(
            StatusCode::BAD_GATEWAY,
            "Ollama sent an answer the proxy could not read.".into(),
            "upstream_invalid_response",
        ),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.describe().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, body, headers) = self.describe();
        // Log once, here at the edge: server faults with their whole cause, client mistakes
        // quietly.
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %Chain(self), "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut response = HttpResponseBuilder::new(status);
        for (name, value) in headers {
            response.insert_header((name, value));
        }
        crate::json_response::json_response(response, &ErrorResponse { error: body })
    }
}

impl ApiError {
    /// Appends this error as the last event of an OpenAI stream (`data: {"error": {...}}`),
    /// for failures after the stream began.
    pub(crate) fn write_stream_event(&self, out: &mut Vec<u8>) {
        let (_, body, _) = self.describe();
        write_event(out, &ErrorResponse { error: body });
    }
}

/// An error with its causes, `message: cause: cause of the cause`, for logs. Each error's
/// message says what failed at its level and leaves its cause to `source()`, so walking the
/// chain prints every message once.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_message_leaves_its_cause_to_source_and_the_chain_prints_each_once() {
        let upstream = ApiError::Upstream(OllamaError::Connect {
            message: "connection refused".into(),
        });
        let storage = ApiError::Storage(StoreError::Unavailable("disk full".into()));
        for error in [&upstream, &storage] {
            let cause = error.source().expect("a cause").to_string();
            assert!(
                !error.to_string().contains(&cause),
                "{error} repeats its cause {cause}"
            );
        }
        assert_eq!(
            Chain(&upstream).to_string(),
            "the call to Ollama failed: could not reach Ollama: connection refused"
        );
        assert_eq!(
            Chain(&storage).to_string(),
            "the store failed: the store is unavailable: disk full"
        );
    }
}
