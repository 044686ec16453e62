//! Request bodies: read with a size limit and parsed as JSON, with errors that name the field at
//! fault.

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body of type `T`, read by [`JsonBody::read`].
///
/// The limit is the operator's `max_body_bytes`, or `MAX` when that is smaller (for routes
/// whose bodies are small). The body is read when the handler asks, not during extraction:
/// actix runs a handler's extractors side by side, and a body must not be read before the
/// key that came with it is known to be good.
pub(crate) struct JsonBody<T, const MAX: usize = { usize::MAX }> {
    payload: Payload,
    content_length: Option<usize>,
    limit: usize,
    body: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned, const MAX: usize> FromRequest for JsonBody<T, MAX> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = match req.app_data::<web::Data<AppState>>() {
            Some(state) => state.settings.max_body_bytes.min(MAX),
            None => return ready(Err(ApiError::Internal("AppState is not registered".into()))),
        };
        let content_length = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        ready(Ok(Self {
            payload: payload.take(),
            content_length,
            limit,
            body: PhantomData,
        }))
    }
}

impl<T: DeserializeOwned, const MAX: usize> JsonBody<T, MAX> {
    /// Reads the whole body (413 past the limit) and parses it as `T` (400 naming the field
    /// at fault, which serde alone does not do).
    pub(crate) async fn read(mut self) -> Result<T, ApiError> {
        let limit = self.limit;
        if self.content_length.is_some_and(|n| n > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let mut body = web::BytesMut::with_capacity(self.content_length.unwrap_or(1024).min(limit));
        while let Some(chunk) = self.payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge { limit },
                other => ApiError::bad_request(
                    format!("The request body could not be read: {other}"),
                    None,
                ),
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        parse_json(&body)
    }
}

/// Parses JSON bytes as `T`, with the field path in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; send a JSON object.",
            None,
        ));
    }
    // Tracking the path is a third of the parse's cost on the request path (perf, see
    // docs/performance.md), so only a body that failed is parsed again to find the field.
    // `from_str` checks UTF-8 once for the whole body, `from_slice` once per string and key.
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(value) = serde_json::from_str(text)
    {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let param = (path != "." && !path.is_empty()).then_some(path);
        let message = match (&param, inner.classify()) {
            (_, serde_json::error::Category::Syntax | serde_json::error::Category::Eof) => {
                format!("The request body is not valid JSON: {inner}")
            }
            (Some(param), _) => format!("Invalid value for '{param}': {inner}"),
            (None, _) => format!("Invalid request: {inner}"),
        };
        ApiError::BadRequest {
            message,
            param,
            code: None,
        }
    })?;
    deserializer.end().map_err(|err| {
        ApiError::bad_request(format!("The request body is not valid JSON: {err}"), None)
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use aiproxy_openai::ChatCompletionRequest;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_wrong_type_names_the_field_at_fault() {
        let body = br#"{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}"#;
        match parse_json::<ChatCompletionRequest>(body) {
            Err(ApiError::BadRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("messages[0].role"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_body_and_broken_json_are_told_apart() {
        for (body, expected) in [
            (&b" \n"[..], "The request body is empty"),
            (&b"{\"model\":"[..], "not valid JSON"),
        ] {
            match parse_json::<ChatCompletionRequest>(body) {
                Err(ApiError::BadRequest { message, .. }) => {
                    assert!(message.contains(expected), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    proptest! {
        /// Arbitrary bytes as a body: a parse error at worst.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_json::<ChatCompletionRequest>(&bytes);
        }
    }
}
