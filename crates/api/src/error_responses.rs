//! The error responses routes document in the OpenAPI description, each in OpenAI's error
//! shape; a route lists the ones it can answer, beside its own success.
//!
//! Only the description uses these types: the errors themselves are `ApiError`s.
#![expect(dead_code, reason = "types that describe responses, never built")]

use aiproxy_openai::ErrorResponse;
use utoipa::IntoResponses;

/// What a route that calls a model can answer instead of its result.
#[derive(IntoResponses)]
pub(crate) enum ModelCallErrors {
    /// Malformed request or a value out of range (`param` names the field)
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// Missing, wrong or expired key
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// Model not allowed for this user
    #[response(status = 403)]
    Forbidden(ErrorResponse),
    /// Unknown model
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// Body too large
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// Over a rate limit or the quota
    #[response(status = 429)]
    RateLimited(ErrorResponse),
    /// Ollama unreachable or failed
    #[response(status = 502)]
    BadGateway(ErrorResponse),
    /// Ollama busy or the database unavailable
    #[response(status = 503)]
    Unavailable(ErrorResponse),
    /// Ollama timed out
    #[response(status = 504)]
    Timeout(ErrorResponse),
}

/// Malformed request or invalid values (`param` names the field)
#[derive(IntoResponses)]
#[response(status = 400)]
pub(crate) struct BadRequest(ErrorResponse);

/// Missing, wrong or expired key
#[derive(IntoResponses)]
#[response(status = 401)]
pub(crate) struct UserKeyRefused(ErrorResponse);

/// Not the admin key
#[derive(IntoResponses)]
#[response(status = 401)]
pub(crate) struct AdminKeyRefused(ErrorResponse);

/// Unknown user
#[derive(IntoResponses)]
#[response(status = 404)]
pub(crate) struct UnknownUser(ErrorResponse);

/// Unknown model
#[derive(IntoResponses)]
#[response(status = 404)]
pub(crate) struct UnknownModel(ErrorResponse);

/// The id or key is taken
#[derive(IntoResponses)]
#[response(status = 409)]
pub(crate) struct Conflict(ErrorResponse);

/// Ollama unreachable
#[derive(IntoResponses)]
#[response(status = 502)]
pub(crate) struct OllamaUnreachable(ErrorResponse);
