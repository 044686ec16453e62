//! JSON responses, written without `HttpResponseBuilder::json`'s costs on the hot path.

use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;

/// Finishes `response` with `value` as its JSON body.
///
/// What `HttpResponseBuilder::json` does, without its costs on the hot path: the buffer is
/// sized for a typical answer instead of grown from nothing, and the content type is a
/// constant instead of a `mime` converted on every response.
pub(crate) fn json_response(response: HttpResponseBuilder, value: &impl Serialize) -> HttpResponse {
    let mut body = Vec::with_capacity(JSON_CAPACITY);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => json_bytes_response(response, body),
        // Only a type whose `Serialize` fails gets here (ours do not); answer as
        // `HttpResponseBuilder::json` would.
        Err(error) => actix_web::Error::from(error).error_response(),
    }
}

/// Room for a typical JSON answer, so its buffer is not grown from nothing.
pub(crate) const JSON_CAPACITY: usize = 1024;

/// Finishes `response` with `body`, already JSON.
pub(crate) fn json_bytes_response(
    mut response: HttpResponseBuilder,
    body: Vec<u8>,
) -> HttpResponse {
    response
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(body)
}
