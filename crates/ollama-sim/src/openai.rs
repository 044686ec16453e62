//! Ollama's OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models` and `/v1/models/{model}`. As in Ollama's middleware, each
//! request is translated into a native one, answered by the native code, and the answer is
//! re-encoded in OpenAI's shape.

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::control::SimEndpoint;
use crate::decode::{self, Fields, Refusal, go_any_type, json_kind, top_level};
use crate::gojson::{check_go_base64, go_quote, to_go_json};
use crate::inference::{answer, prepare_chat, prepare_embed, prepare_generate};
use crate::listing::resolve_for_show;
use crate::model::{ModelName, SimModel};
use crate::respond::{send_body, start_answer};
use crate::rules::ToolCall;
use crate::state::AppState;
use crate::wire::{
    Dialect, EVENT_STREAM, Encoder, JSON, Piece, Reply, body_response, data_event, next_id,
};

/// `data: {"model":` — the broken event `malformed_after_tokens` inserts in an SSE stream.
pub const MALFORMED_EVENT: &[u8] = b"data: {\"model\":\n\n";

const FINGERPRINT: &str = "fp_ollama";

/// An OpenAI-layer refusal raised while decoding, before the native handler runs.
fn refuse(refusal: &Refusal) -> HttpResponse {
    Dialect::OpenAi.decode_error(refusal.status, &refusal.message)
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Decodes an image URL as Ollama's `decodeImageURL` does; returns the base64 data.
pub(crate) fn decode_image_url(url: &str) -> Result<String, Refusal> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(Refusal::bad_request(
            "image URLs are not currently supported, please use base64 encoded data instead",
        ));
    }
    let invalid = || Refusal::bad_request("invalid image input");
    let data = url
        .strip_prefix("data:;base64,")
        .or_else(|| {
            ["jpeg", "jpg", "png", "webp"].iter().find_map(|kind| {
                url.strip_prefix("data:image/")
                    .and_then(|rest| rest.strip_prefix(kind))
                    .and_then(|rest| rest.strip_prefix(";base64,"))
            })
        })
        .ok_or_else(invalid)?;
    check_go_base64(data).map_err(|_| invalid())?;
    Ok(data.replace(['\r', '\n'], ""))
}

/// OpenAI's `reasoning_effort` as Ollama's `think` (`thinkFromReasoningEffort`).
pub(crate) fn think_from_effort(effort: &str) -> Result<Option<Value>, Refusal> {
    Ok(match effort {
        "" => None,
        "none" => Some(json!(false)),
        "minimal" => Some(json!("low")),
        "low" | "medium" | "high" | "max" => Some(json!(effort)),
        "xhigh" | "ultra" => Some(json!("max")),
        other => {
            return Err(Refusal::bad_request(format!(
                "invalid reasoning value: {} (must be \"minimal\", \"low\", \"medium\", \"high\", \"xhigh\", \"ultra\", \"max\", or \"none\")",
                go_quote(other)
            )));
        }
    })
}

/// A float option as Go marshals a `float64`: whole numbers without a fraction.
pub(crate) fn go_float(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// What an OpenAI chat request turns into, besides the native request.
#[derive(Debug)]
struct ChatTranslation {
    native: Value,
    include_usage: bool,
}

fn stream_options(fields: &Fields<'_>) -> Result<bool, Refusal> {
    let Some(options) = fields.object("stream_options", "openai.StreamOptions")? else {
        return Ok(false);
    };
    let options = Fields::new(options, "StreamOptions", "stream_options.");
    Ok(options.bool("include_usage")?.unwrap_or(false))
}

/// `stop` as a string or a list of strings (other items are skipped, as Ollama does for chat).
fn stop_option(stop: Option<&Value>, strict: bool) -> Result<Option<Value>, Refusal> {
    match stop {
        Some(Value::String(text)) => Ok(Some(json!([text]))),
        Some(Value::Array(items)) => {
            let mut stops = Vec::new();
            for item in items {
                match item {
                    Value::String(text) => stops.push(json!(text)),
                    other if strict => {
                        return Err(Refusal::bad_request(format!(
                            "invalid type for 'stop' field: {}",
                            go_any_type(other)
                        )));
                    }
                    _ => {}
                }
            }
            Ok(Some(Value::Array(stops)))
        }
        _ => Ok(None),
    }
}

/// Converts OpenAI `tool_calls` to native ones (`FromCompletionToolCall`).
fn native_tool_calls(calls: &[Value]) -> Result<Vec<Value>, Refusal> {
    calls
        .iter()
        .map(|call| {
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            let function = call.get("function").unwrap_or(&Value::Null);
            let name = function.get("name").and_then(Value::as_str).unwrap_or("");
            let raw = function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            let arguments: Value = serde_json::from_str(raw)
                .map_err(|_| Refusal::bad_request("invalid tool call arguments"))?;
            Ok(json!({"id": id, "function": {"name": name, "arguments": arguments}}))
        })
        .collect()
}

fn translate_chat(body: &Value) -> Result<ChatTranslation, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "openai.ChatCompletionRequest")?,
        "ChatCompletionRequest",
        "",
    );
    let model = fields.string("model")?;
    let raw_messages = fields.array("messages", "[]openai.Message")?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let include_usage = stream_options(&fields)?;
    let max_tokens = fields.int("max_tokens")?;
    let seed = fields.int("seed")?;
    let temperature = fields.number("temperature", "float64")?;
    let frequency_penalty = fields.number("frequency_penalty", "float64")?;
    let presence_penalty = fields.number("presence_penalty", "float64")?;
    let top_p = fields.number("top_p", "float64")?;
    let tools = fields.array("tools", "[]api.Tool")?;
    let reasoning_effort = match fields.object("reasoning", "openai.Reasoning")? {
        Some(reasoning) => Fields::new(reasoning, "Reasoning", "reasoning.").string("effort")?,
        None => fields.string("reasoning_effort")?,
    };
    if raw_messages.is_empty() {
        return Err(Refusal::bad_request("[] is too short - 'messages'"));
    }

    let mut messages: Vec<Value> = Vec::new();
    for raw in raw_messages {
        let map = match raw {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => return Err(fields.type_error("messages", json_kind(other), "openai.Message")),
        };
        let message = Fields::new(map, "Message", "messages.");
        let role = message.string("role")?;
        let reasoning = message.string("reasoning")?;
        let tool_call_id = message.string("tool_call_id")?;
        let name = message.string("name")?;
        let calls = message.array("tool_calls", "[]openai.ToolCall")?;
        let tool_name = if role.eq_ignore_ascii_case("tool") {
            if name.is_empty() && !tool_call_id.is_empty() {
                name_from_tool_call_id(raw_messages, &tool_call_id)
            } else {
                name
            }
        } else {
            String::new()
        };
        match map.get("content").unwrap_or(&Value::Null) {
            Value::String(content) => messages.push(json!({
                "role": role, "content": content, "thinking": reasoning,
                "tool_calls": native_tool_calls(calls)?, "tool_name": tool_name,
                "tool_call_id": tool_call_id,
            })),
            Value::Array(parts) => {
                for part in parts {
                    let invalid = || Refusal::bad_request("invalid message format");
                    let part = part.as_object().ok_or_else(invalid)?;
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let text = part
                                .get("text")
                                .and_then(Value::as_str)
                                .ok_or_else(invalid)?;
                            messages.push(json!({"role": role, "content": text}));
                        }
                        Some("image_url") => {
                            let url = match part.get("image_url") {
                                Some(Value::Object(url)) => url.get("url").and_then(Value::as_str),
                                Some(Value::String(url)) => Some(url.as_str()),
                                _ => None,
                            }
                            .ok_or_else(invalid)?;
                            let image = decode_image_url(url)?;
                            messages.push(json!({"role": role, "images": [image]}));
                        }
                        Some("input_audio") => {
                            let data = part
                                .get("input_audio")
                                .and_then(Value::as_object)
                                .ok_or_else(|| Refusal::bad_request("invalid input_audio format"))?
                                .get("data")
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    Refusal::bad_request("invalid input_audio format: missing data")
                                })?;
                            check_go_base64(data).map_err(|offset| {
                                Refusal::bad_request(format!(
                                    "invalid input_audio base64 data: illegal base64 data at input byte {offset}"
                                ))
                            })?;
                            messages.push(json!({"role": role, "images": [data]}));
                        }
                        _ => return Err(invalid()),
                    }
                }
                // Tool calls go on the last message the parts produced.
                if !calls.is_empty()
                    && let Some(last) = messages.last_mut()
                {
                    last["tool_calls"] = Value::Array(native_tool_calls(calls)?);
                    last["tool_name"] = json!(tool_name);
                    last["tool_call_id"] = json!(tool_call_id);
                    last["thinking"] = json!(reasoning);
                }
            }
            other => {
                if map.get("tool_calls").is_none_or(Value::is_null) {
                    return Err(Refusal::bad_request(format!(
                        "invalid message content type: {}",
                        go_any_type(other)
                    )));
                }
                messages.push(json!({
                    "role": role, "thinking": reasoning,
                    "tool_calls": native_tool_calls(calls)?, "tool_call_id": tool_call_id,
                }));
            }
        }
    }

    let mut options = Map::new();
    if let Some(stop) = stop_option(fields.get("stop"), false)? {
        options.insert("stop".into(), stop);
    }
    if let Some(max_tokens) = max_tokens {
        options.insert("num_predict".into(), json!(max_tokens));
    }
    options.insert("temperature".into(), go_float(temperature.unwrap_or(1.0)));
    if let Some(seed) = seed {
        options.insert("seed".into(), json!(seed));
    }
    if let Some(penalty) = frequency_penalty {
        options.insert("frequency_penalty".into(), go_float(penalty));
    }
    if let Some(penalty) = presence_penalty {
        options.insert("presence_penalty".into(), go_float(penalty));
    }
    options.insert("top_p".into(), go_float(top_p.unwrap_or(1.0)));

    let format = match fields.object("response_format", "openai.ResponseFormat")? {
        Some(format) => {
            let kind = format.get("type").and_then(Value::as_str).unwrap_or("");
            match kind.trim().to_ascii_lowercase().as_str() {
                "json_object" => Some(json!("json")),
                "json_schema" => format
                    .get("json_schema")
                    .and_then(|schema| schema.get("schema"))
                    .cloned(),
                _ => None,
            }
        }
        None => None,
    };
    let think = think_from_effort(&reasoning_effort)?;

    let mut native = json!({
        "model": model, "messages": messages, "options": options, "stream": stream,
        "tools": tools,
    });
    if let Some(format) = format {
        native["format"] = format;
    }
    if let Some(think) = think {
        native["think"] = think;
    }
    Ok(ChatTranslation {
        native,
        include_usage,
    })
}

/// The name of the tool an earlier assistant call with this id named (last one wins).
fn name_from_tool_call_id(messages: &[Value], id: &str) -> String {
    messages
        .iter()
        .rev()
        .filter_map(|message| message.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .find(|call| call.get("id").and_then(Value::as_str) == Some(id))
        .and_then(|call| call.pointer("/function/name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

pub(crate) async fn chat_completions(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::OpenAiChat, &body);
    let translation =
        match decode::parse_compat_body(&body).and_then(|value| translate_chat(&value)) {
            Ok(translation) => translation,
            Err(refusal) => return refuse(&refusal),
        };
    let prepared = prepare_chat(&state, &translation.native, false);
    let encoder = ChatEncoder {
        id: format!("chatcmpl-{}", next_id() % 999),
        include_usage: translation.include_usage,
        created: now_unix(),
        first_sent: false,
        tool_call_sent: false,
    };
    answer(&state, prepared, encoder).await
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

fn usage(reply: &Reply) -> Usage {
    let prompt = reply.metrics.prompt_tokens();
    let completion = reply.metrics.completion_tokens();
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    }
}

#[derive(Serialize)]
struct FunctionCall {
    name: String,
    arguments: String,
}

#[derive(Serialize)]
struct OpenAiToolCall {
    id: String,
    index: usize,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall,
}

fn openai_tool_calls(calls: &[ToolCall]) -> Vec<OpenAiToolCall> {
    calls
        .iter()
        .map(|call| OpenAiToolCall {
            id: call.id.clone(),
            index: call.function.index,
            kind: "function",
            function: FunctionCall {
                name: call.function.name.clone(),
                arguments: to_go_json(&call.function.arguments),
            },
        })
        .collect()
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    reasoning: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OpenAiToolCall>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

/// What one native line carries.
#[derive(Default)]
struct LineContent<'a> {
    text: &'a str,
    reasoning: &'a str,
    calls: &'a [ToolCall],
}

/// `/v1/chat/completions` answers (Ollama ≥ v0.32.6: role only in the first chunk, an empty
/// delta carrying `finish_reason`, the usage chunk, `[DONE]`).
pub(crate) struct ChatEncoder {
    id: String,
    include_usage: bool,
    /// OpenAI stamps one `created` on every chunk of a stream.
    created: i64,
    first_sent: bool,
    tool_call_sent: bool,
}

impl ChatEncoder {
    fn chunk<'a>(&'a self, model: &'a str, choices: Vec<ChunkChoice<'a>>) -> ChatChunk<'a> {
        ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model,
            system_fingerprint: FINGERPRINT,
            choices,
            usage: None,
        }
    }

    /// One chunk for one native line: its text (always present, `""` included), reasoning
    /// and tool calls; the first chunk also carries the role.
    fn content_event(&mut self, out: &mut Vec<u8>, model: &str, line: LineContent<'_>) {
        let role = (!self.first_sent).then_some("assistant");
        self.first_sent = true;
        self.tool_call_sent |= !line.calls.is_empty();
        let chunk = self.chunk(
            model,
            vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role,
                    content: Some(line.text),
                    reasoning: line.reasoning,
                    tool_calls: openai_tool_calls(line.calls),
                },
                finish_reason: None,
            }],
        );
        data_event(out, &to_go_json(&chunk));
    }
}

impl Encoder for ChatEncoder {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn stream_content_type(&self) -> &'static str {
        EVENT_STREAM
    }

    fn piece(&mut self, reply: &Reply, piece: &Piece) -> Bytes {
        let mut out = Vec::new();
        let line = match piece {
            Piece::Thinking(reasoning) => LineContent {
                reasoning,
                ..LineContent::default()
            },
            Piece::Text(text) => LineContent {
                text,
                ..LineContent::default()
            },
            Piece::ToolCalls(calls) => LineContent {
                calls,
                ..LineContent::default()
            },
        };
        self.content_event(&mut out, &reply.model, line);
        Bytes::from(out)
    }

    fn finish(&mut self, reply: &Reply) -> Bytes {
        let mut out = Vec::new();
        // The native done line is an empty trailer: it only opens the stream when nothing came
        // before it.
        if !self.first_sent {
            self.content_event(&mut out, &reply.model, LineContent::default());
        }
        let reason = match reply.done_reason {
            "stop" if self.tool_call_sent => "tool_calls",
            "" => "stop",
            other => other,
        };
        let finish = self.chunk(
            &reply.model,
            vec![ChunkChoice {
                index: 0,
                delta: Delta::default(),
                finish_reason: Some(reason),
            }],
        );
        data_event(&mut out, &to_go_json(&finish));
        if self.include_usage {
            let mut usage_chunk = self.chunk(&reply.model, Vec::new());
            usage_chunk.usage = Some(usage(reply));
            data_event(&mut out, &to_go_json(&usage_chunk));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    fn error_line(&mut self, _reply: &Reply) -> Option<Bytes> {
        // Ollama's writer decodes `{"error": …}` as an empty response: one empty chunk with no
        // model, and the stream ends without a finish chunk or `[DONE]`.
        let mut out = Vec::new();
        self.content_event(&mut out, "", LineContent::default());
        Some(Bytes::from(out))
    }

    fn malformed(&self) -> &'static [u8] {
        MALFORMED_EVENT
    }

    fn whole(&mut self, reply: &Reply) -> (String, &'static str) {
        let calls = reply.tool_calls();
        let reason = match reply.done_reason {
            "stop" if !calls.is_empty() => Some("tool_calls"),
            "" => None,
            other => Some(other),
        };
        let text = reply.text();
        let reasoning = reply.thinking();
        let completion = ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: now_unix(),
            model: &reply.model,
            system_fingerprint: FINGERPRINT,
            choices: [Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: &text,
                    reasoning: &reasoning,
                    tool_calls: openai_tool_calls(&calls),
                },
                finish_reason: reason,
            }],
            usage: usage(reply),
        };
        (encoded(&completion), JSON)
    }
}

/// JSON as Ollama's compatibility writers encode it (`json.Encoder`: a trailing newline).
fn encoded<T: Serialize>(value: &T) -> String {
    let mut body = to_go_json(value);
    body.push('\n');
    body
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reasoning: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OpenAiToolCall>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

/// What an OpenAI completions request turns into.
#[derive(Debug)]
struct CompletionTranslation {
    native: Value,
    include_usage: bool,
}

fn translate_completion(body: &Value) -> Result<CompletionTranslation, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "openai.CompletionRequest")?,
        "CompletionRequest",
        "",
    );
    let model = fields.string("model")?;
    let prompt = fields.string("prompt")?;
    let frequency_penalty = fields
        .number("frequency_penalty", "float32")?
        .unwrap_or(0.0);
    let max_tokens = fields.int("max_tokens")?;
    let presence_penalty = fields.number("presence_penalty", "float32")?.unwrap_or(0.0);
    let seed = fields.int("seed")?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let include_usage = stream_options(&fields)?;
    let temperature = fields.number("temperature", "float32")?;
    let top_p = fields.number("top_p", "float32")?.unwrap_or(0.0);
    let suffix = fields.string("suffix")?;
    fields.int("logprobs")?;

    let mut options = Map::new();
    if let Some(stop) = stop_option(fields.get("stop"), true)? {
        options.insert("stop".into(), stop);
    }
    if let Some(max_tokens) = max_tokens {
        options.insert("num_predict".into(), json!(max_tokens));
    }
    options.insert("temperature".into(), go_float(temperature.unwrap_or(1.0)));
    if let Some(seed) = seed {
        options.insert("seed".into(), json!(seed));
    }
    options.insert("frequency_penalty".into(), go_float(frequency_penalty));
    options.insert("presence_penalty".into(), go_float(presence_penalty));
    let top_p = if top_p == 0.0 { 1.0 } else { top_p };
    options.insert("top_p".into(), go_float(top_p));
    let mut native =
        json!({"model": model, "prompt": prompt, "options": options, "stream": stream});
    if !suffix.is_empty() {
        native["suffix"] = json!(suffix);
    }
    Ok(CompletionTranslation {
        native,
        include_usage,
    })
}

pub(crate) async fn completions(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::OpenAiCompletions, &body);
    let translation =
        match decode::parse_compat_body(&body).and_then(|value| translate_completion(&value)) {
            Ok(translation) => translation,
            Err(refusal) => return refuse(&refusal),
        };
    let prepared = prepare_generate(&state, &translation.native);
    let encoder = CompletionEncoder {
        id: format!("cmpl-{}", next_id() % 999),
        include_usage: translation.include_usage,
    };
    answer(&state, prepared, encoder).await
}

#[derive(Serialize)]
struct CompleteChoice<'a> {
    text: &'a str,
    index: u32,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct CompletionChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    choices: Vec<CompleteChoice<'a>>,
    model: &'a str,
    system_fingerprint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

/// `/v1/completions` answers: one chunk per native line (zeroed `usage` on each when
/// `include_usage`), then the usage chunk and `[DONE]`.
pub(crate) struct CompletionEncoder {
    id: String,
    include_usage: bool,
}

impl CompletionEncoder {
    fn chunk(&self, out: &mut Vec<u8>, model: &str, text: &str, finish_reason: Option<&str>) {
        let chunk = CompletionChunk {
            id: &self.id,
            object: "text_completion",
            created: now_unix(),
            choices: vec![CompleteChoice {
                text,
                index: 0,
                finish_reason,
            }],
            model,
            system_fingerprint: FINGERPRINT,
            usage: self.include_usage.then_some(Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
                total_tokens: 0,
            }),
        };
        data_event(out, &to_go_json(&chunk));
    }
}

fn non_empty(reason: &str) -> Option<&str> {
    (!reason.is_empty()).then_some(reason)
}

impl Encoder for CompletionEncoder {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn stream_content_type(&self) -> &'static str {
        EVENT_STREAM
    }

    fn piece(&mut self, reply: &Reply, piece: &Piece) -> Bytes {
        let mut out = Vec::new();
        // Ollama's completion chunks carry only `response`, so thinking lines come out empty.
        let text = match piece {
            Piece::Text(text) => text.as_str(),
            Piece::Thinking(_) | Piece::ToolCalls(_) => "",
        };
        self.chunk(&mut out, &reply.model, text, None);
        Bytes::from(out)
    }

    fn finish(&mut self, reply: &Reply) -> Bytes {
        let mut out = Vec::new();
        self.chunk(&mut out, &reply.model, "", non_empty(reply.done_reason));
        if self.include_usage {
            let chunk = CompletionChunk {
                id: &self.id,
                object: "text_completion",
                created: now_unix(),
                choices: Vec::new(),
                model: &reply.model,
                system_fingerprint: FINGERPRINT,
                usage: Some(usage(reply)),
            };
            data_event(&mut out, &to_go_json(&chunk));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Bytes::from(out)
    }

    fn error_line(&mut self, _reply: &Reply) -> Option<Bytes> {
        // As for chat: the error line becomes an empty chunk with no model, then the stream ends.
        let mut out = Vec::new();
        self.chunk(&mut out, "", "", None);
        Some(Bytes::from(out))
    }

    fn malformed(&self) -> &'static [u8] {
        MALFORMED_EVENT
    }

    fn whole(&mut self, reply: &Reply) -> (String, &'static str) {
        let text = reply.text();
        let completion = Completion {
            id: &self.id,
            object: "text_completion",
            created: now_unix(),
            model: &reply.model,
            system_fingerprint: FINGERPRINT,
            choices: [CompleteChoice {
                text: &text,
                index: 0,
                finish_reason: non_empty(reply.done_reason),
            }],
            usage: usage(reply),
        };
        (encoded(&completion), JSON)
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [CompleteChoice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    embedding: EmbeddingValue,
    index: usize,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    /// `null` when there is nothing, as Ollama's nil slice marshals.
    data: Option<Vec<Embedding>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

pub(crate) async fn embeddings(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::OpenAiEmbeddings, &body);
    let translated =
        decode::parse_compat_body(&body).and_then(|value| translate_embeddings(&value));
    let (native, base64) = match translated {
        Ok(translated) => translated,
        Err(refusal) => return refuse(&refusal),
    };
    let plan = match prepare_embed(&state, &native) {
        Ok(plan) => plan,
        Err(refusal) => return Dialect::OpenAi.error(refusal.status, &refusal.message),
    };
    let faults = match start_answer(&state.control, Dialect::OpenAi).await {
        Ok(faults) => faults,
        Err(answer) => return answer,
    };
    let data: Vec<Embedding> = plan
        .vectors()
        .into_iter()
        .enumerate()
        .map(|(index, vector)| Embedding {
            object: "embedding",
            embedding: if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                EmbeddingValue::Base64(STANDARD.encode(bytes))
            } else {
                EmbeddingValue::Floats(vector)
            },
            index,
        })
        .collect();
    let list = EmbeddingList {
        object: "list",
        data: (!data.is_empty()).then_some(data),
        model: &plan.model_name,
        usage: EmbeddingUsage {
            prompt_tokens: plan.prompt_eval_count,
            total_tokens: plan.prompt_eval_count,
        },
    };
    send_body(&faults, encoded(&list), JSON, Dialect::OpenAi).await
}

/// The native embed request and whether vectors go out as base64.
fn translate_embeddings(body: &Value) -> Result<(Value, bool), Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "openai.EmbedRequest")?,
        "EmbedRequest",
        "",
    );
    let model = fields.string("model")?;
    let dimensions = fields.int("dimensions")?.unwrap_or(0);
    let format = fields.string("encoding_format")?;
    if !format.is_empty()
        && !format.eq_ignore_ascii_case("float")
        && !format.eq_ignore_ascii_case("base64")
    {
        return Err(Refusal::bad_request(format!(
            "Invalid value for 'encoding_format' = {format}. Supported values: ['float', 'base64']."
        )));
    }
    let input = match fields.get("input") {
        None => return Err(Refusal::bad_request("invalid input")),
        Some(Value::String(text)) if text.is_empty() => json!([""]),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(Refusal::bad_request("invalid input"));
        }
        Some(other) => other.clone(),
    };
    let mut native = json!({"model": model, "input": input});
    if dimensions != 0 {
        native["dimensions"] = json!(dimensions);
    }
    Ok((native, format.eq_ignore_ascii_case("base64")))
}

/// `modified_at` as Unix seconds.
fn modified_unix(model: &SimModel) -> i64 {
    OffsetDateTime::parse(&model.modified_at, &Rfc3339).map_or(0, OffsetDateTime::unix_timestamp)
}

/// The namespace of a name as Ollama's `model.ParseName` reads it (`library` by default).
fn owned_by(name: &str) -> String {
    ModelName::parse(name).map_or_else(|_| String::new(), |parsed| parsed.namespace)
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    owned_by: String,
}

impl<'a> ModelEntry<'a> {
    fn new(id: &'a str, model: &SimModel) -> Self {
        Self {
            id,
            object: "model",
            created: modified_unix(model),
            owned_by: owned_by(id),
        }
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    /// Ollama builds the list from a nil slice: no models is `null`.
    data: Option<Vec<ModelEntry<'a>>>,
}

pub(crate) async fn models(state: web::Data<AppState>) -> HttpResponse {
    state.control.note_request(SimEndpoint::OpenAiModels);
    let installed = state.control.registry().installed();
    let data: Vec<ModelEntry<'_>> = installed
        .iter()
        .map(|model| ModelEntry::new(&model.name, model))
        .collect();
    let list = ModelList {
        object: "list",
        data: (!data.is_empty()).then_some(data),
    };
    body_response(200, JSON, encoded(&list))
}

pub(crate) async fn model(state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    state.control.note_request(SimEndpoint::OpenAiModels);
    let requested = path.into_inner();
    match resolve_for_show(&state, &requested) {
        Ok(model) => body_response(200, JSON, encoded(&ModelEntry::new(&requested, &model))),
        Err(refusal) => Dialect::OpenAi.error(refusal.status, &refusal.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls_decode_like_ollama() {
        assert_eq!(
            decode_image_url("data:image/png;base64,aGk=").unwrap(),
            "aGk="
        );
        assert_eq!(decode_image_url("data:;base64,aGk=").unwrap(), "aGk=");
        assert_eq!(
            decode_image_url("data:image/gif;base64,aGk=")
                .unwrap_err()
                .message,
            "invalid image input"
        );
        assert_eq!(
            decode_image_url("data:image/png;base64,aGk")
                .unwrap_err()
                .message,
            "invalid image input"
        );
        assert!(
            decode_image_url("https://example.com/a.png")
                .unwrap_err()
                .message
                .starts_with("image URLs are not currently supported")
        );
    }

    #[test]
    fn chat_requests_translate_like_ollamas_middleware() {
        let translated = translate_chat(&json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "this?"}]}
            ],
            "stop": "END", "max_tokens": 5, "response_format": {"type": "json_object"},
            "stream": true, "stream_options": {"include_usage": true}
        }))
        .unwrap();
        let native = translated.native;
        assert_eq!(native["messages"].as_array().unwrap().len(), 3);
        assert_eq!(
            native["messages"][2],
            json!({"role": "user", "content": "this?"})
        );
        assert_eq!(
            native["options"],
            json!({"stop": ["END"], "num_predict": 5, "temperature": 1, "top_p": 1})
        );
        assert_eq!(native["format"], "json");
        assert_eq!(native["stream"], true);
        assert!(translated.include_usage);

        let refusal = |body: Value| translate_chat(&body).unwrap_err().message;
        assert_eq!(
            refusal(json!({"model": "m", "messages": []})),
            "[] is too short - 'messages'"
        );
        assert_eq!(
            refusal(json!({"model": "m", "messages": [{"role": "user"}]})),
            "invalid message content type: <nil>"
        );
        assert_eq!(
            refusal(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]})
            ),
            "invalid message format"
        );
        assert!(
            refusal(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "huge"}))
                .starts_with("invalid reasoning value: \"huge\"")
        );
        assert_eq!(
            refusal(json!({"model": 1, "messages": []})),
            "json: cannot unmarshal number into Go struct field ChatCompletionRequest.model of type string"
        );
    }

    #[test]
    fn completion_stops_must_all_be_strings() {
        let refusal = translate_completion(&json!({"model": "m", "prompt": "p", "stop": ["a", 1]}))
            .unwrap_err();
        assert_eq!(refusal.message, "invalid type for 'stop' field: float64");
    }

    #[test]
    fn embedding_inputs_and_formats_are_checked() {
        let message = |body: Value| translate_embeddings(&body).unwrap_err().message;
        assert_eq!(message(json!({"model": "m"})), "invalid input");
        assert_eq!(message(json!({"model": "m", "input": []})), "invalid input");
        assert_eq!(
            message(json!({"model": "m", "input": "x", "encoding_format": "hex"})),
            "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64']."
        );
        let (native, base64) =
            translate_embeddings(&json!({"model": "m", "input": "", "encoding_format": "BASE64"}))
                .unwrap();
        assert_eq!(native, json!({"model": "m", "input": [""]}));
        assert!(base64);
    }
}
