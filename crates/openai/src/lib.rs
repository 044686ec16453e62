//! OpenAI's wire types (chat completions, legacy completions, embeddings, models, errors and
//! streamed chunks) and their pure translation to and from Ollama's native types.
//!
//! No HTTP and no I/O: a request is translated into an `aiproxy-ollama` request, and Ollama's
//! answer (whole, or line by line as it streams) into OpenAI's JSON or Server-Sent Events
//! bytes. What needs the network is left to the caller, which `aiproxy-api` is: images given
//! by http(s) URL come back as [`PendingImage`]s to fetch, and the completion budget granted
//! by admission is applied with `limit_completion`. A request that cannot be translated is an
//! [`InvalidRequest`] naming the field at fault.
//!
//! Requests are lenient where OpenAI is (unknown fields are ignored, `null` means absent);
//! answers carry every field the official SDKs require. The types derive utoipa's `ToSchema`,
//! which describes them for the OpenAPI document and needs no HTTP framework.
//!
//! ```
//! use aiproxy_openai::{ChatCompletion, ChatCompletionRequest, chat_request_to_ollama};
//!
//! let request: ChatCompletionRequest = serde_json::from_str(
//!     r#"{"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64}"#,
//! ).unwrap();
//! let mut chat = chat_request_to_ollama(request).unwrap();
//! chat.limit_completion(16);
//! assert_eq!(chat.request.options.as_ref().unwrap()["num_predict"], 16);
//!
//! let answer = aiproxy_ollama::ChatResponse {
//!     message: Some(aiproxy_ollama::Message { content: "Hello!".into(), ..Default::default() }),
//!     done: true,
//!     ..Default::default()
//! };
//! let mut json = Vec::new();
//! ChatCompletion::from_ollama(answer, "42", "llama3.2".into(), 1_700_000_000).write_json(&mut json);
//! assert!(json.starts_with(br#"{"id":"chatcmpl-42","object":"chat.completion""#));
//! ```
#![warn(missing_docs)]

mod chat_chunks;
mod chat_completion;
mod chat_request;
mod chat_to_ollama;
mod completions;
mod embeddings;
mod error;
mod images;
mod models;
mod response_events;
mod response_object;
mod responses_request;
mod responses_to_ollama;
mod sampling;
mod sse;
mod text_or_list;
mod tools;
mod usage;

pub use chat_chunks::{ChatChunkWriter, ChatCompletionChunk, ChunkChoice, Delta};
pub use chat_completion::{AssistantMessage, ChatCompletion, Choice, ResponseToolCall};
pub use chat_request::{
    ChatCompletionRequest, ChatMessage, ContentPart, FunctionCall, ImageUrl, JsonSchemaFormat,
    MessageContent, OllamaExtension, RequestToolCall, ResponseFormat, Role,
};
pub use chat_to_ollama::{TranslatedChat, chat_request_to_ollama};
pub use completions::{
    CompletionRequest, TextChoice, TextChunkWriter, TextCompletion, TranslatedCompletion,
    completion_request_to_ollama,
};
pub use embeddings::{
    Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage, EncodingFormat,
    TranslatedEmbedding, embedding_request_to_ollama,
};
pub use error::{ErrorBody, ErrorResponse, InvalidRequest};
pub use images::{PendingImage, image_kind};
pub use models::{Model, ModelList, find_model, model_id};
pub use response_events::{RESPONSE_EVENT_CAPACITY, ResponseEventWriter};
pub use response_object::{
    IncompleteDetails, InputTokensDetails, ItemStatus, OutputItem, OutputText, OutputTokensDetails,
    ResponseError, ResponseObject, ResponseSettings, ResponseStatus, ResponseUsage, SummaryText,
};
pub use responses_request::{
    FunctionCallInput, FunctionCallOutputInput, InputContent, InputItem, InputMessage, InputPart,
    ReasoningConfig, ReasoningInput, ReasoningText, ResponsesInput, ResponsesRequest, TextConfig,
    TextFormat,
};
pub use responses_to_ollama::{TranslatedResponses, responses_request_to_ollama};
pub use sampling::StopSequences;
pub use sse::{
    DONE_EVENT, EVENT_CAPACITY, SseEvent, StreamOptions, write_event, write_named_event,
};
pub use usage::Usage;
