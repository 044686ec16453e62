//! The legacy text API (`POST /v1/completions`) and its translation to and from Ollama's
//! `/api/generate`.

use aiproxy_ollama as ollama;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::chat_completion::finish_reason;
use crate::error::InvalidRequest;
use crate::sampling::{Sampling, StopSequences};
use crate::sse::{DONE_EVENT, StreamOptions, write_event};
use crate::usage::Usage;

/// `POST /v1/completions` request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "llama3.2", "prompt": "Once upon a time", "max_tokens": 32}))]
pub struct CompletionRequest {
    /// The model.
    pub model: String,
    /// The prompt: a string (or a list holding exactly one string).
    #[schema(value_type = Object)]
    pub prompt: Value,
    /// Text after the completion (fill-in-the-middle models).
    #[serde(default)]
    pub suffix: Option<String>,
    /// The most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// 0 to 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Option<StopSequences>,
    /// -2 to 2.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// -2 to 2.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Stream as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_usage` adds a final usage chunk.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Must be 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// Not available.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Not available.
    #[serde(default)]
    pub echo: Option<bool>,
}

/// A `text_completion` (or one chunk of a streamed one).
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The model.
    pub model: String,
    /// One choice (none in the final usage chunk).
    pub choices: Vec<TextChoice>,
    /// Token counts (absent on streamed chunks unless asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Option<Usage>>,
}

/// One choice of a text completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextChoice {
    /// The text.
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop` or `length`; null on streamed chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// The Ollama request, plus what the HTTP layer needs to answer it.
#[derive(Debug)]
pub struct TranslatedCompletion {
    /// What to send to `/api/generate` (`stream` is set by the client).
    pub request: ollama::GenerateRequest,
    /// Whether the client asked for a stream of chunks.
    pub stream: bool,
    /// Whether the client asked for a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// The completion budget the client asked for (`max_tokens`).
    pub max_tokens: Option<u64>,
}

impl TranslatedCompletion {
    /// Bounds the completion at `budget` tokens (Ollama's `num_predict`), whatever the client
    /// asked for.
    pub fn limit_completion(&mut self, budget: u64) {
        self.request.set_num_predict(budget);
    }
}

/// Translates a legacy completion request into Ollama's `/api/generate` form; the client's
/// `max_tokens` becomes `num_predict`, and the sampling fields are checked and translated as
/// chat's are.
pub fn completion_request_to_ollama(
    request: CompletionRequest,
) -> Result<TranslatedCompletion, InvalidRequest> {
    let prompt = match request.prompt {
        Value::String(text) => text,
        Value::Array(mut items) if items.len() == 1 && items[0].is_string() => match items.pop() {
            Some(Value::String(text)) => text,
            _ => String::new(),
        },
        _ => {
            return Err(InvalidRequest::new(
                "`prompt` must be a string (Ollama completes one prompt per request).",
                "prompt",
            ));
        }
    };
    if request.n.is_some_and(|n| n != 1) {
        return Err(InvalidRequest::new("`n` must be 1.", "n"));
    }
    if request.logprobs.is_some_and(|n| n > 0) || request.echo == Some(true) {
        return Err(InvalidRequest::new(
            "`logprobs` and `echo` are not available through this proxy.",
            "logprobs",
        ));
    }
    let mut options = Map::new();
    Sampling {
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        seed: request.seed,
        stop: request.stop,
    }
    .write_options(&mut options)?;
    Ok(TranslatedCompletion {
        request: ollama::GenerateRequest {
            model: request.model,
            prompt,
            suffix: request.suffix,
            options: (!options.is_empty()).then_some(options),
            ..ollama::GenerateRequest::default()
        },
        stream: request.stream.unwrap_or(false),
        include_usage: StreamOptions::include_usage(request.stream_options.as_ref()),
        max_tokens: request.max_tokens,
    })
}

impl TextCompletion {
    /// Ollama's whole answer as a `text_completion` named `cmpl-<request_id>`.
    pub fn from_ollama(
        answer: ollama::GenerateResponse,
        request_id: &str,
        model: String,
        created: i64,
    ) -> Self {
        TextCompletion {
            id: format!("cmpl-{request_id}"),
            object: "text_completion",
            created,
            model,
            choices: vec![TextChoice {
                text: answer.response,
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason(answer.done_reason.as_deref(), false)),
            }],
            usage: Some(Some(Usage::from_ollama(
                answer.prompt_eval_count,
                answer.eval_count,
            ))),
        }
    }
}

/// One streamed `text_completion` chunk: [`TextCompletion`]'s fields, borrowed from the
/// writer so a token costs no copy of the id and the model.
#[derive(Serialize)]
struct TextCompletionChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: &'a [TextChoice],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// Writes the SSE events of one streamed text completion.
#[derive(Debug)]
pub struct TextChunkWriter {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
}

impl TextChunkWriter {
    /// A writer for the completion `cmpl-<request_id>` of `model`, created at `created` (Unix
    /// seconds). With `include_usage`, every chunk carries `"usage": null` and
    /// [`Self::write_usage`] writes the final usage chunk.
    pub fn new(request_id: &str, model: String, created: i64, include_usage: bool) -> Self {
        Self {
            id: format!("cmpl-{request_id}"),
            model,
            created,
            include_usage,
        }
    }

    /// The chunk for a piece of text; nothing for an empty one.
    pub fn write_text(&mut self, out: &mut Vec<u8>, text: String) {
        if !text.is_empty() {
            self.write_chunk(out, Some(text), None, None);
        }
    }

    /// The chunk with the finish reason (`stop` or `length`) and no text.
    pub fn write_finish(&mut self, out: &mut Vec<u8>, done_reason: Option<&str>) {
        let reason = finish_reason(done_reason, false);
        self.write_chunk(out, Some(String::new()), Some(reason), None);
    }

    /// The usage chunk (no choices), if the client asked for it, then `[DONE]`.
    pub fn write_usage(&self, out: &mut Vec<u8>, usage: Usage) {
        if self.include_usage {
            self.write_chunk(out, None, None, Some(usage));
        }
        out.extend_from_slice(DONE_EVENT);
    }

    /// A text chunk (`text` set), or the usage chunk (`usage` set, no choices).
    fn write_chunk(
        &self,
        out: &mut Vec<u8>,
        text: Option<String>,
        finish_reason: Option<&'static str>,
        usage: Option<Usage>,
    ) {
        let choice = text.map(|text| TextChoice {
            text,
            index: 0,
            logprobs: None,
            finish_reason,
        });
        let chunk = TextCompletionChunk {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices: choice.as_slice(),
            usage: self.include_usage.then_some(usage),
        };
        write_event(out, &chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.into())))
            .collect()
    }

    #[test]
    fn text_then_finish_then_usage_and_done() {
        let mut writer = TextChunkWriter::new("1", "m".into(), 7, true);
        let mut out = Vec::new();
        writer.write_text(&mut out, "Once".into());
        writer.write_text(&mut out, String::new());
        writer.write_finish(&mut out, Some("length"));
        writer.write_usage(&mut out, Usage::new(3, 1));
        let events = events(&out);
        assert_eq!(events.len(), 4, "the empty text was skipped");
        assert_eq!(events[0]["id"], "cmpl-1");
        assert_eq!(events[0]["object"], "text_completion");
        assert_eq!(events[0]["choices"][0]["text"], "Once");
        assert!(events[0]["choices"][0]["finish_reason"].is_null());
        assert!(events[0]["usage"].is_null() && events[0].get("usage").is_some());
        assert_eq!(events[1]["choices"][0]["text"], "");
        assert_eq!(events[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(events[2]["choices"], serde_json::json!([]));
        assert_eq!(events[2]["usage"]["total_tokens"], 4);
        assert_eq!(events[3], "[DONE]");
    }

    #[test]
    fn without_include_usage_chunks_carry_no_usage_and_none_is_sent() {
        let mut writer = TextChunkWriter::new("1", "m".into(), 7, false);
        let mut out = Vec::new();
        writer.write_text(&mut out, "x".into());
        writer.write_usage(&mut out, Usage::new(3, 1));
        let events = events(&out);
        assert!(events[0].get("usage").is_none());
        assert_eq!(events[1], "[DONE]");
    }

    #[test]
    fn a_prompt_is_a_string_or_a_list_of_one() {
        let parse = |prompt: Value| {
            let request: CompletionRequest =
                serde_json::from_value(serde_json::json!({"model": "m", "prompt": prompt}))
                    .unwrap();
            completion_request_to_ollama(request).map(|t| t.request.prompt)
        };
        assert_eq!(parse("a".into()).unwrap(), "a");
        assert_eq!(parse(serde_json::json!(["b"])).unwrap(), "b");
        for bad in [
            serde_json::json!(["a", "b"]),
            serde_json::json!([1]),
            Value::Null,
        ] {
            assert_eq!(parse(bad).unwrap_err().param.as_deref(), Some("prompt"));
        }
    }
}
