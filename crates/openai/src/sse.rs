//! Server-Sent Events as OpenAI streams them: chat and legacy completions send `data: <json>\n\n`
//! events ending in `data: [DONE]\n\n`; the Responses API names each event
//! (`event: <type>\ndata: <json>\n\n`) and sends no `[DONE]`. Also the request's
//! `stream_options`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Room for one streamed event (a token's `chat.completion.chunk` is about 200 bytes), so an
/// event's buffer is not grown from nothing for every token.
pub const EVENT_CAPACITY: usize = 256;

/// The event that ends a successful stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// `stream_options`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a final chunk with the usage of the whole request.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

impl StreamOptions {
    /// Whether `stream_options` asked for the final usage chunk.
    pub(crate) fn include_usage(options: Option<&Self>) -> bool {
        options.and_then(|o| o.include_usage).unwrap_or(false)
    }
}

/// One Server-Sent Event of a streamed answer, as the stream carries it (for the OpenAPI
/// description; the bytes are written by [`write_event`]).
#[derive(Debug, ToSchema)]
pub struct SseEvent {
    /// A JSON chunk (`chat.completion.chunk` or `text_completion`), a JSON `{"error": {...}}`
    /// as the last event when Ollama fails after the stream began, or `[DONE]` at the end of a
    /// successful answer.
    pub data: String,
}

/// Appends `value` as one `data:` event.
pub fn write_event(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    // The values streamed here (strings, numbers, options and types whose `Serialize` is
    // derived) have no failing `Serialize`, and writing into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Appends `value` as one event named `name` (`event: <name>` then its `data:` line), as the
/// Responses API frames its events.
pub fn write_named_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_event(out, value);
}
