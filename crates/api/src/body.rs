//! Request bodies: read with a size limit and parsed as JSON, with errors that name the field at
//! fault.

use actix_web::web;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Reads the whole body (refusing more than `limit` bytes) and parses it as `T`.
///
/// Parse errors name the path of the offending field (`messages[0].role`), which serde alone
/// does not do.
pub(crate) async fn read_json<T: DeserializeOwned>(
    mut payload: web::Payload,
    content_length: Option<usize>,
    limit: usize,
) -> Result<T, ApiError> {
    if content_length.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(content_length.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::PayloadTooLarge { limit },
            other => {
                ApiError::bad_request(format!("The request body could not be read: {other}"), None)
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    parse_json(&body)
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

/// The `Content-Length` header as a number, if present and valid.
pub(crate) fn content_length(req: &actix_web::HttpRequest) -> Option<usize> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
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
