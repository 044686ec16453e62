//! A deterministic stand-in for the Ollama server that speaks its wire formats exactly (the
//! native API and Ollama's OpenAI- and Anthropic-compatible routes: field names, framing,
//! content types, error bodies and statuses) and lets tests inject latency and faults.
//!
//! It does not run a model (management routes change which models an instance has, but there is
//! no registry and no weights), and it shares no code with the other aiproxy crates on purpose:
//! it is the independent reference they are tested against. The crate README lists every route
//! and what it simplifies.
//!
//! ```
//! use aiproxy_ollama_sim::{OllamaSim, SimConfig, SimEndpoint};
//! use std::time::Duration;
//!
//! actix_rt::System::new().block_on(async {
//!     let sim = OllamaSim::start(SimConfig::default()).await.unwrap();
//!     assert!(sim.base_url().starts_with("http://127.0.0.1:"));
//!     sim.control().set_token_delay(Duration::from_millis(5));
//!     sim.control().set_close_after_tokens(Some(2));
//!     // ... point a client at sim.base_url(), then:
//!     assert_eq!(sim.control().stats().requests_to(SimEndpoint::Chat), 0);
//!     assert_eq!(sim.control().last_request(SimEndpoint::Chat), None);
//!     sim.stop().await;
//! });
//! ```
//!
//! # Endpoints
//!
//! `GET`/`HEAD /` (`Ollama is running`), `GET`/`HEAD /api/version`, `GET`/`HEAD /api/tags`,
//! `POST /api/show`, `POST /api/chat`, `POST /api/generate`, `POST /api/embed`,
//! `POST /api/embeddings` (legacy), `GET /api/ps` (loaded models, see below);
//! model management (`POST /api/pull`, `/api/push`, `/api/create`, `/api/copy`,
//! `DELETE /api/delete`, `HEAD`/`POST /api/blobs/{digest}`); Ollama's
//! OpenAI-compatible `POST /v1/chat/completions`, `POST /v1/completions`,
//! `POST /v1/embeddings`, `GET /v1/models` and `GET /v1/models/{model}`; the Responses API,
//! `POST /v1/responses`; and the Anthropic-compatible Messages API, `POST /v1/messages`.
//! Unknown paths answer 404 `text/plain` `404 page not found`; a known path with the wrong
//! method answers 405 `405 method not allowed`. Control routes (not counted in the stats):
//! `GET`/`POST /sim/control`, `GET /sim/stats`, `GET /sim/requests[?endpoint=chat]`.
//!
//! Native streams are `application/x-ndjson`, chunked, one JSON object per line ending in `\n`;
//! the compatibility routes stream `text/event-stream`. Native non-streaming answers and errors
//! are `application/json; charset=utf-8`, errors shaped `{"error":"…"}`; the compatibility
//! routes answer `application/json` in their own error shapes, as Ollama's writers re-encode
//! them. JSON is written like Go's `json.Marshal` (`<`, `>`, `&` escaped as
//! `\u003c`…), `created_at` is the current UTC time in RFC 3339 with nanoseconds (trailing zeros
//! trimmed, as Go does), metrics are integer nanoseconds and, as in Ollama, **omitted when
//! zero** (`eval_count` is absent when nothing was generated). `stream` defaults to true. The
//! `model` field of every answer echoes the name as the client sent it.
//!
//! # Instances, models and names
//!
//! An instance can have a name ([`SimConfig::name`]), sent as the `x-sim-instance` header of
//! every response and shown in `/sim/stats`, so tests with several instances see which one
//! answered (an unnamed instance sends exactly Ollama's headers).
//! [`SimConfig::default`] installs `llama3.2:latest` (completion, tools), `moondream:latest`
//! (completion, vision) and `nomic-embed-text:latest` (embedding, 768 dimensions); another set
//! can be chosen from [`SimConfig::catalog`] with [`SimConfig::select_models`]. A model outside
//! the set answers exactly as Ollama answers for a model it does not have.
//!
//! A request that uses a model loads it until now + `keep_alive` (default
//! [`SimConfig::keep_alive`], 5 minutes; `0` unloads it when the request is answered, a negative
//! value keeps it forever, strings are Go durations such as `"5m"`); a request without
//! `keep_alive` keeps the duration the model was loaded with, as Ollama does. `/api/ps` lists
//! loaded models, longest remaining keep-alive first, with `context_length` = `num_ctx` (default
//! [`SimConfig::default_num_ctx`]) capped by the model's. Expiry runs on the simulator's clock,
//! which [`SimControl::advance_clock`] moves forward. [`SimControl`] also changes the installed
//! and loaded sets at run time ([`SimControl::set_models`], [`SimControl::set_loaded`]). A name
//! resolves like Ollama's: `llama3.2`, `llama3.2:latest`, `library/llama3.2` and
//! `registry.ollama.ai/library/llama3.2:latest` are the same model, case-insensitively.
//!
//! # Errors (status, `error` text) — checked in Ollama's order
//!
//! | Situation | Answer |
//! |---|---|
//! | blank body | 400 `missing request body` |
//! | broken JSON / wrong field type | 400, Go's text (`unexpected EOF`, `json: cannot unmarshal array into Go struct field Message.messages.content of type string`, …) |
//! | bad image base64 | 400 `illegal base64 data at input byte N` |
//! | chat/show/embeddings without `model` | 400 `model is required` |
//! | generate/embed without `model` | 404 `model '' not found` (what Ollama answers) |
//! | malformed name | 400 `invalid model name` |
//! | unknown model | 404 `model '<as sent>' not found` (show: `'<name:tag>'`; legacy embeddings: `model "<x>" not found, try pulling it first`) |
//! | `think: true`, model cannot think | 400 `"<as sent>" does not support thinking` |
//! | chat/generate on the embedding model | 400 `"<as sent>" does not support chat` / `… generate` |
//! | `tools` to a model without tools | 400 `registry.ollama.ai/library/<name:tag> does not support tools` |
//! | `suffix` to a model without insert | 400 `registry.ollama.ai/library/<name:tag> does not support insert` |
//! | wrong option type (`"num_predict":"x"`) | **500** `option "num_predict" must be of type integer` (Ollama raises it from `scheduleRunner`, whose error handler answers 500) |
//! | `format` neither `"json"` nor an object | 500 `invalid format: expected "json" or a valid JSON schema` |
//! | embed `input` not a string or string array | 400 `invalid input type` |
//!
//! Embedding with a chat model works (Ollama embeds with any model); the vector length is that
//! model's `embedding_length`. An empty `messages` array (chat) or empty `prompt` (generate)
//! answers one JSON object with `done_reason` `load` (or `unload` with `keep_alive: 0`), even
//! when streaming was asked for.
//!
//! # Deterministic replies (the rules tests can rely on)
//!
//! * A **token** is a whitespace-separated word.
//! * `prompt_eval_count`: chat = Σ over messages of (1 + words in `content`);
//!   generate = 1 + words in `prompt`, plus 1 + words in `system` when `system` is non-empty,
//!   plus the length of `context`; embed = Σ over inputs of max(1, words). Images, tools and
//!   tool calls cost nothing. See [`prompt_tokens_for_chat`], [`prompt_tokens_for_generate`],
//!   [`prompt_tokens_for_embed`].
//! * **Chat reply**: if the last message has role `tool`, `Echo: <its content>`; otherwise
//!   `Echo: <content of the last user message>`, or `Hello! How can I help you today?` when
//!   there is none. Whitespace in the echoed text collapses to single spaces. On a vision model
//!   with N > 0 images anywhere in the request, the reply starts with `I see N image(s). `
//!   (literally `image(s)`); other models ignore images. **Generate** echoes `prompt` the same
//!   way.
//! * With `format` (`"json"` or a schema object) the reply is instead the JSON text
//!   `{"echo":"<echoed text>"}`, so the concatenated content parses as JSON.
//! * **Streaming**: one line per word — the first word bare, every later word with one leading
//!   space — then a final line with empty content, `done: true`, `done_reason` and the metrics
//!   (plus `context` for generate, unless `raw`). `eval_count` = words sent.
//!   Non-streaming: one object with the words concatenated.
//! * `options.stop`: the reply is cut before the earliest occurrence of any stop string
//!   (trailing whitespace dropped), `done_reason` `stop`. Then `options.num_predict` = N > 0
//!   keeps at most N words; if that cut anything, `done_reason` is `length`. 0 and negative
//!   values mean no limit, as in Ollama (it only clamps values below 0, and its runner limits
//!   generation only when `numPredict > 0`).
//! * **Thinking**: a thinking model (`qwen3:0.6b` in the catalog) thinks unless `think` is
//!   `false` (Ollama turns thinking on by default for such models): before the answer it sends
//!   `Considering: <echoed text>` word by word as `thinking` (`message.thinking`, or `thinking`
//!   for generate). Thinking words count in `eval_count` and against `num_predict` first;
//!   `stop` applies to the answer only; tool calls come without thinking.
//! * **Tools**: with `tools` (on a tools model) and a last message from the `user`, the reply is
//!   one call to the first tool, `{"id":"call_<8 of [a-z0-9]>","function":{"index":0,"name":…,
//!   "arguments":{…}}}`, with empty content and `done_reason` `stop`; streaming sends it in one
//!   line, then the final line. Each `required` parameter is filled from the user's last
//!   message: `integer`/`number` → its word count, `boolean` → `true`, `array` → `[last word]`,
//!   `object` → `{}`, otherwise the last word without trailing `.,!?;:`. The id is derived from
//!   the tool name and the message. `eval_count` = 1 + number of arguments; `stop` and
//!   `num_predict` do not apply.
//! * **Embeddings**: [`embedding_vector`] — unit length, from SHA-256 of the input; `dimensions`
//!   keeps the first N values and renormalises.
//! * **Durations**: `load_duration` = 12 500 000; `prompt_eval_duration` = 250 000 × prompt
//!   tokens; `eval_duration` = 5 000 000 × eval tokens; `total_duration` = the three + 1 000 000.
//!
//! # Latency and faults
//!
//! [`SimControl`] (from [`OllamaSim::control`]) changes behaviour while the server runs; see
//! [`SimSettings`] for exact semantics. Delays and faults apply only to requests that passed
//! validation. `first_token_delay` delays the response head; `token_delay` separates streamed
//! lines (non-streaming waits `token_delay` × tokens). Faults: `fail_status`, `error_after_tokens`,
//! `close_after_tokens`, `malformed_after_tokens`, `stall_after_tokens`, `hang`, and
//! `faults_for_next` to limit them to the next N requests. Every inference route honours all of
//! them, in its own error shape; embeddings, never streamed, take each fault's non-streaming
//! meaning.
//!
//! `unresponsive` makes every route but `/sim/*` hang (health probes included), like a backend
//! that stopped answering; it is not counted by `faults_for_next`.
//!
//! `POST /sim/control` takes the same settings as JSON; present fields are set, `null` clears,
//! absent fields stay, unknown fields are refused with 400. It also takes `models` (names to
//! install, from the installed models or the catalog), `loaded` (installed names to have
//! loaded) and `advance_clock_ms`. It answers the resulting settings and model state:
//!
//! ```json
//! {"first_token_delay_ms": 0, "token_delay_ms": 0,
//!  "fail_status": {"status": 503, "message": "server busy, please try again.  maximum pending requests exceeded"},
//!  "error_after_tokens": null, "close_after_tokens": null, "malformed_after_tokens": null,
//!  "stall_after_tokens": null, "hang": false, "faults_for_next": null, "unresponsive": false,
//!  "models": ["llama3.2:latest", "moondream:latest", "nomic-embed-text:latest"],
//!  "loaded": [], "instance": ""}
//! ```
//!
//! `reset: true` first puts every setting back to default (the model state stays);
//! `reset_stats: true` zeroes the counters and empties the request log. `GET /sim/stats` answers
//! [`SimStats`] as JSON.
//!
//! # The binary
//!
//! `ollama-sim [--listen 127.0.0.1:11434] [--name NAME] [--models A,B] [--loaded A]
//! [--workers N] [--ollama-version V]
//! [--first-token-delay-ms MS] [--token-delay-ms MS] [--fail-status CODE [--fail-message TEXT]]
//! [--error-after-tokens N] [--close-after-tokens N] [--malformed-after-tokens N]
//! [--stall-after-tokens N] [--hang] [--faults-for-next N]`; `--flag=value` works too. It runs
//! until Ctrl-C. `--fail-status 503` without a message uses Ollama's queue-full text.
#![warn(missing_docs)]

mod anthropic;
mod config;
mod control;
mod decode;
mod gojson;
mod inference;
mod listing;
mod management;
mod model;
mod native;
mod openai;
mod registry;
mod respond;
mod responses;
mod rules;
mod server;
mod settings;
mod state;
mod wire;

pub use anthropic::anthropic_input_estimate;
pub use config::SimConfig;
pub use control::{MODEL_ERROR_MESSAGE, SimControl, SimEndpoint, SimStats};
pub use model::{
    Capability, DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName, NameError, SimModel,
};
pub use native::MALFORMED_LINE;
pub use openai::MALFORMED_EVENT;
pub use registry::{KeepAlive, LoadedModel};
pub use rules::{
    FALLBACK_REPLY, count_words, embedding_vector, prompt_tokens_for_chat, prompt_tokens_for_embed,
    prompt_tokens_for_generate,
};
pub use server::{INSTANCE_HEADER, OllamaSim};
pub use settings::SimSettings;

/// Ollama's answer when its request queue is full (note the two spaces).
pub const SERVER_BUSY_MESSAGE: &str =
    "server busy, please try again.  maximum pending requests exceeded";

/// What can go wrong inside the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The deliberate end of a stream for `close_after_tokens`; actix drops the connection
    /// when a body yields it.
    #[error("connection closed by the close_after_tokens fault")]
    InjectedClose,
    /// A `POST /sim/control` body that is not valid JSON or names unknown settings.
    #[error("invalid control request: {0}")]
    InvalidControl(String),
    /// A change to the model set or the loaded models named a model that cannot be used.
    #[error("{0}")]
    Models(String),
}
