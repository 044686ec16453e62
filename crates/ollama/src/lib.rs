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
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse,
    Message, ModelDetails, ModelInfo, PsResponse, RunningModel, ShowResponse, TagsResponse,
    ToolCall, ToolCallFunction, VersionResponse,
};
