//! Anthropic's Messages API wire types and their pure translation to and from Ollama's
//! native types.
//!
//! No HTTP and no I/O: a `POST /v1/messages` body is translated into an `aiproxy-ollama` chat
//! request, and Ollama's answer (whole, or line by line as it streams) into a `message` or
//! the Messages API's Server-Sent Events. What needs the network is left to the caller, which
//! `aiproxy-api` is: images given by URL come back as [`PendingImage`]s to fetch, and the
//! completion budget granted by admission is applied with
//! [`TranslatedMessages::limit_completion`]. A request that cannot be translated is an
//! [`InvalidRequest`] naming the field at fault; [`ErrorResponse`] and [`ErrorKind`] give
//! every error Anthropic's shape, type name and status. Authentication headers
//! (`x-api-key`, `anthropic-version`, `anthropic-beta`) are the HTTP layer's.
//!
//! ```
//! use aiproxy_anthropic::{MessageResponse, MessagesRequest, messages_request_to_ollama};
//!
//! let request: MessagesRequest = serde_json::from_str(
//!     r#"{"model": "llama3.2", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}"#,
//! ).unwrap();
//! let mut translated = messages_request_to_ollama(request).unwrap();
//! translated.limit_completion(16);
//! assert_eq!(translated.request.options.as_ref().unwrap()["num_predict"], 16);
//!
//! let answer = aiproxy_ollama::ChatResponse {
//!     message: Some(aiproxy_ollama::Message { content: "Hello!".into(), ..Default::default() }),
//!     done: true,
//!     done_reason: Some("stop".into()),
//!     ..Default::default()
//! };
//! let mut json = Vec::new();
//! MessageResponse::from_ollama(answer, "42", "llama3.2".into()).write_json(&mut json);
//! assert!(json.starts_with(br#"{"id":"msg_42","type":"message""#));
//! ```
#![warn(missing_docs)]

mod error;
mod events;
mod message;
mod request;
mod translate;

pub use error::{ErrorBody, ErrorKind, ErrorResponse, InvalidRequest};
pub use events::{MESSAGE_EVENT_CAPACITY, MessageEventWriter};
pub use message::{MessageResponse, MessageUsage, ResponseBlock, StopReason};
pub use request::{
    ContentBlock, ImageSource, InputMessage, MessageContent, MessagesRequest, OutputConfig, Role,
    SystemPrompt, ThinkingConfig, Tool, ToolChoice,
};
pub use translate::{PendingImage, TranslatedMessages, messages_request_to_ollama};
