//! The one error type of this crate, and how awc's errors and Ollama's error bodies map onto it.

use std::fmt;

use awc::error::{ConnectError, PayloadError, SendRequestError};

/// The most of an upstream error body kept in [`OllamaError::Status`] and friends; a misrouted
/// request can come back with a whole HTML page, which nobody wants in a log line.
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// Everything that can go wrong talking to Ollama.
///
/// It is `Send + Sync` (awc's own errors are not, so their text is kept as a `String`), and it
/// never contains request or response bodies, except the `error` text Ollama itself wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OllamaError {
    /// Ollama could not be reached: connection refused, DNS failure, a reset or close before
    /// the response head, or an unusable base URL.
    #[error("could not reach Ollama: {message}")]
    Connect {
        /// What the HTTP client reported.
        message: String,
    },
    /// A deadline passed; [`TimeoutPhase`] says which one.
    #[error("Ollama timed out ({phase})")]
    Timeout {
        /// Which of the configured timeouts fired.
        phase: TimeoutPhase,
    },
    /// A model endpoint (`chat`, `generate`, `embed`, `show`) answered 404. Decided by status,
    /// not by text, because the wording differs between Ollama versions.
    #[error("model '{model}' not found: {message}")]
    ModelNotFound {
        /// The model named in the request.
        model: String,
        /// Ollama's error text.
        message: String,
    },
    /// Ollama answered 503: its request queue is full. Worth retrying later.
    #[error("Ollama is busy: {message}")]
    Busy {
        /// Ollama's error text.
        message: String,
    },
    /// Any other non-2xx answer.
    #[error("Ollama answered {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `error` field of a JSON body, or else the body text, cut to about 1 KiB.
        message: String,
    },
    /// A `{"error": ...}` line inside a 200 stream (the model failed mid-answer). The stream
    /// ends after it.
    #[error("Ollama reported an error mid-stream: {message}")]
    Stream {
        /// Ollama's error text.
        message: String,
    },
    /// The body ended or broke before the `done: true` object. No usage numbers exist.
    #[error("Ollama's response was cut off: {message}")]
    Interrupted {
        /// What was observed.
        message: String,
    },
    /// A body or a stream line was not the JSON expected (or was too large).
    #[error("Ollama sent an invalid response: {message}")]
    InvalidResponse {
        /// What did not parse, with serde's line and column; never the body itself.
        message: String,
    },
}

/// Which deadline an [`OllamaError::Timeout`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// Establishing the TCP connection took longer than `connect_timeout`.
    Connect,
    /// The response head did not arrive within `response_timeout` (a model that is still
    /// loading, or a server that hangs).
    Response,
    /// No body bytes arrived for `idle_timeout` while reading a body or a stream.
    Idle,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Response => "waiting for the response head",
            TimeoutPhase::Idle => "no data within the idle timeout",
        })
    }
}

impl OllamaError {
    /// The HTTP status Ollama answered with, for the variants that come from one
    /// (`ModelNotFound` is 404, `Busy` is 503, `Status` carries its own); `None` otherwise,
    /// including for `Stream`, whose status was 200.
    pub fn status(&self) -> Option<u16> {
        match self {
            OllamaError::ModelNotFound { .. } => Some(404),
            OllamaError::Busy { .. } => Some(503),
            OllamaError::Status { status, .. } => Some(*status),
            OllamaError::Connect { .. }
            | OllamaError::Timeout { .. }
            | OllamaError::Stream { .. }
            | OllamaError::Interrupted { .. }
            | OllamaError::InvalidResponse { .. } => None,
        }
    }

    /// Maps a failure of awc's send future, which covers everything up to the response head.
    pub(crate) fn from_send(error: &SendRequestError) -> Self {
        match error {
            SendRequestError::Timeout => OllamaError::Timeout {
                phase: TimeoutPhase::Response,
            },
            SendRequestError::Connect(ConnectError::Timeout) => OllamaError::Timeout {
                phase: TimeoutPhase::Connect,
            },
            // A head that arrives but does not parse is the server's fault; an I/O error while
            // waiting for it is a broken connection.
            SendRequestError::Response(parse_error) if !is_io_error(parse_error) => {
                OllamaError::InvalidResponse {
                    message: format!("unparsable response head: {parse_error}"),
                }
            }
            other => OllamaError::Connect {
                message: other.to_string(),
            },
        }
    }

    /// Maps a failure while reading a body whose head already arrived.
    pub(crate) fn from_payload(error: &PayloadError) -> Self {
        match error {
            PayloadError::Overflow => OllamaError::InvalidResponse {
                message: "response body too large".to_owned(),
            },
            other => OllamaError::Interrupted {
                message: format!("reading the body failed: {other}"),
            },
        }
    }

    /// Maps a non-2xx answer. `model` is the request's model for model endpoints, where a 404
    /// means the model is missing; `None` for the others, where a 404 is just a status.
    pub(crate) fn from_status(status: u16, body: &[u8], model: Option<&str>) -> Self {
        let message = error_message(body);
        match (status, model) {
            (404, Some(model)) => OllamaError::ModelNotFound {
                model: model.to_owned(),
                message,
            },
            (503, _) => OllamaError::Busy { message },
            _ => OllamaError::Status { status, message },
        }
    }
}

/// Whether a head-parsing failure was really the connection breaking (awc does not re-export
/// the parse error type, so its `Io` variant is recognised through `source()`).
fn is_io_error(error: &(dyn std::error::Error + 'static)) -> bool {
    std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
}

/// Ollama's error text: the `error` field of a JSON body, or else the body as text; cut to
/// about [`MAX_ERROR_MESSAGE_BYTES`].
pub(crate) fn error_message(body: &[u8]) -> String {
    let message = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) => match object.remove("error") {
            Some(serde_json::Value::String(text)) => text,
            Some(serde_json::Value::Null) | None => String::from_utf8_lossy(body).into_owned(),
            Some(other) => other.to_string(),
        },
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    truncate_at_char_boundary(message, MAX_ERROR_MESSAGE_BYTES)
}

fn truncate_at_char_boundary(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_field_of_a_json_body_is_the_message() {
        let body = br#"{"error":"registry.ollama.ai/library/gemma3:1b does not support tools"}"#;
        assert_eq!(
            OllamaError::from_status(400, body, Some("gemma3:1b")),
            OllamaError::Status {
                status: 400,
                message: "registry.ollama.ai/library/gemma3:1b does not support tools".into()
            }
        );
    }

    #[test]
    fn a_404_is_model_not_found_only_on_model_endpoints() {
        let body = br#"{"error":"model 'nope' not found"}"#;
        assert_eq!(
            OllamaError::from_status(404, body, Some("nope")),
            OllamaError::ModelNotFound {
                model: "nope".into(),
                message: "model 'nope' not found".into()
            }
        );
        assert_eq!(
            OllamaError::from_status(404, b"404 page not found", None),
            OllamaError::Status {
                status: 404,
                message: "404 page not found".into()
            }
        );
    }

    #[test]
    fn a_503_is_busy() {
        let body =
            br#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#;
        let error = OllamaError::from_status(503, body, Some("m"));
        assert!(
            matches!(&error, OllamaError::Busy { message } if message.starts_with("server busy"))
        );
        assert_eq!(error.status(), Some(503));
    }

    #[test]
    fn a_text_body_is_kept_trimmed_and_cut_to_about_one_kib() {
        assert_eq!(error_message(b"  upstream exploded\n"), "upstream exploded");
        let long = "é".repeat(2000);
        let message = error_message(long.as_bytes());
        assert!(message.len() <= MAX_ERROR_MESSAGE_BYTES + '…'.len_utf8());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn a_json_body_without_an_error_string_is_still_reported() {
        assert_eq!(error_message(br#"{"error":{"code":1}}"#), r#"{"code":1}"#);
        assert_eq!(error_message(br#"{"detail":"x"}"#), r#"{"detail":"x"}"#);
    }

    #[test]
    fn head_timeout_and_connect_timeout_are_told_apart() {
        assert_eq!(
            OllamaError::from_send(&SendRequestError::Timeout),
            OllamaError::Timeout {
                phase: TimeoutPhase::Response
            }
        );
        assert_eq!(
            OllamaError::from_send(&SendRequestError::Connect(ConnectError::Timeout)),
            OllamaError::Timeout {
                phase: TimeoutPhase::Connect
            }
        );
        assert!(matches!(
            OllamaError::from_send(&SendRequestError::Connect(ConnectError::Disconnected)),
            OllamaError::Connect { .. }
        ));
    }

    #[test]
    fn a_reset_while_waiting_for_the_head_is_a_connect_error_but_a_bad_head_is_invalid() {
        use actix_web::error::ParseError;
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            OllamaError::from_send(&SendRequestError::Response(ParseError::Io(reset))),
            OllamaError::Connect { .. }
        ));
        assert!(matches!(
            OllamaError::from_send(&SendRequestError::Response(ParseError::Status)),
            OllamaError::InvalidResponse { .. }
        ));
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<OllamaError>();
    }
}
