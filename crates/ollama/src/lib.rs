//! A typed async client for Ollama's native HTTP API (`/api/chat`, `/api/generate`,
//! `/api/embed`, `/api/tags`, `/api/ps`, `/api/show`, `/api/version`), built on awc.
//!
//! It speaks Ollama's wire format only: translating to and from the OpenAI format, deciding
//! which HTTP status a client of the proxy sees, counting usage and retrying are the caller's
//! job (`aiproxy-api`). It does not manage models (pull, delete, ...). Failures come back as
//! one [`OllamaError`] that tells apart unreachable, slow, busy, missing model and broken
//! stream. Streams are decoded line by line as they arrive by [`NdjsonStream`], whose line
//! splitter [`NdjsonDecoder`] is usable on its own.
//!
//! For a proxy that passes native requests through, [`NativeRequest`] types only the fields
//! the proxy reads or rewrites (`model`, `stream`, `options`, `keep_alive`) and keeps every
//! other field as the client's bytes; [`LineSummary`] reads the end and the usage of an answer
//! from a line without re-encoding it; [`KeepAlive`] reads `keep_alive` as Ollama does. Images
//! in `images` are checked by [`image_from_base64`].
//!
//! awc is `!Send`, and so is [`OllamaClient`]: build one per actix worker.
//!
//! ```no_run
//! use aiproxy_ollama::{ChatRequest, Message, OllamaClient, OllamaConfig};
//! use futures_util::StreamExt;
//!
//! # fn main() -> Result<(), aiproxy_ollama::OllamaError> {
//! actix_rt::System::new().block_on(async {
//!     let client = OllamaClient::new(&OllamaConfig::default());
//!     let request = ChatRequest {
//!         model: "llama3.2".into(),
//!         messages: vec![Message { role: "user".into(), content: "Hi!".into(), ..Default::default() }],
//!         ..Default::default()
//!     };
//!     let mut stream = client.chat_stream(&request).await?;
//!     while let Some(line) = stream.next().await {
//!         let line = line?;
//!         if let Some(message) = &line.message {
//!             print!("{}", message.content);
//!         }
//!         if line.done {
//!             println!("\n{:?} prompt + {:?} completion tokens", line.prompt_eval_count, line.eval_count);
//!         }
//!     }
//!     Ok(())
//! })
//! # }
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod error;
mod ndjson;
mod types;

#[cfg(test)]
mod test_support;

pub use client::OllamaClient;
pub use config::OllamaConfig;
pub use error::{OllamaError, TimeoutPhase};
pub use ndjson::{
    ChatStream, DEFAULT_MAX_LINE_BYTES, GenerateStream, NdjsonDecoder, NdjsonStream, StreamItem,
};
pub use types::{
    BYTES_PER_TOKEN_ESTIMATE, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse,
    GenerateRequest, GenerateResponse, ImageError, KeepAlive, LineSummary, Message, ModelDetails,
    ModelInfo, NativeEndpoint, NativeRequest, NativeRequestError, PsResponse, RunningModel,
    ShowResponse, TagsResponse, Text, ToolCall, ToolCallFunction, VersionResponse, estimate_tokens,
    image_from_base64, image_kind,
};
