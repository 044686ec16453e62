//! Ollama's Anthropic-compatible Messages API (`POST /v1/messages`): the request is translated
//! into a native chat request as Ollama's `FromMessagesRequest` does, and the reply comes back
//! as a message object or as Anthropic's event sequence (`message_start`,
//! `content_block_start`/`delta`/`stop`, `message_delta` with the usage, `message_stop`).

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::control::SimEndpoint;
use crate::decode::{self, Fields, Refusal, top_level};
use crate::gojson::{check_go_base64, go_quote, to_go_json};
use crate::inference::{answer, prepare_chat};
use crate::openai::MALFORMED_EVENT;
use crate::rules::ToolCall;
use crate::state::AppState;
use crate::wire::{Dialect, EVENT_STREAM, Encoder, JSON, Piece, Reply, hex_id, named_event};

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::bad_request(message)
}

/// The base64 data of an image source (`resolveImageSource`).
fn image_data(source: Option<&Value>) -> Result<String, Refusal> {
    let source = source
        .filter(|source| source.is_object())
        .ok_or_else(|| bad("invalid image source"))?;
    let kind = source.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "base64" {
        return Err(bad(format!(
            "invalid image source type: {kind}. Only base64 images are supported."
        )));
    }
    let data = source.get("data").and_then(Value::as_str).unwrap_or("");
    check_go_base64(data).map_err(|offset| {
        bad(format!(
            "invalid base64 image data: illegal base64 data at input byte {offset}"
        ))
    })?;
    Ok(data.replace(['\r', '\n'], ""))
}

/// A `tool_result` block's content: a string, or text and image blocks.
fn tool_result_content(content: Option<&Value>) -> Result<(String, Vec<String>), Refusal> {
    match content {
        Some(Value::String(text)) => Ok((text.clone(), Vec::new())),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            let mut images = Vec::new();
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("image") => {
                        let source = block
                            .get("source")
                            .filter(|source| source.is_object())
                            .ok_or_else(|| bad("invalid tool_result image source"))?;
                        images.push(image_data(Some(source))?);
                    }
                    _ => {}
                }
            }
            Ok((text, images))
        }
        _ => Ok((String::new(), Vec::new())),
    }
}

fn tool_message(content: String, images: Vec<String>, tool_use_id: &str) -> Value {
    let mut message = json!({"role": "tool", "content": content, "tool_call_id": tool_use_id});
    if !images.is_empty() {
        message["images"] = json!(images);
    }
    message
}

/// One Anthropic message as native messages (`convertMessage`): a user message's tool results
/// come before it, anyone else's after.
fn convert_message(role: &str, blocks: &[Value], out: &mut Vec<Value>) -> Result<(), Refusal> {
    let role = role.to_lowercase();
    let mut text = String::new();
    let mut images = Vec::new();
    let mut calls = Vec::new();
    let mut thinking = String::new();
    let mut results = Vec::new();
    for block in blocks {
        let field = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or("");
        match field("type") {
            "text" => text.push_str(field("text")),
            "image" => images.push(image_data(block.get("source"))?),
            kind @ ("tool_use" | "server_tool_use") => {
                if kind == "tool_use" && field("id").is_empty() {
                    return Err(bad("tool_use block missing required 'id' field"));
                }
                if kind == "tool_use" && field("name").is_empty() {
                    return Err(bad("tool_use block missing required 'name' field"));
                }
                let arguments = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": field("id"), "function": {"name": field("name"), "arguments": arguments}}));
            }
            "tool_result" => {
                let (content, result_images) = tool_result_content(block.get("content"))?;
                results.push(tool_message(content, result_images, field("tool_use_id")));
            }
            "web_search_tool_result" => {
                let content = match block.get("content") {
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => to_go_json(other),
                    None => String::new(),
                };
                results.push(tool_message(content, Vec::new(), field("tool_use_id")));
            }
            "thinking" => thinking = field("thinking").to_owned(),
            _ => {}
        }
    }
    let user_results = role == "user" && !results.is_empty();
    if user_results {
        out.append(&mut results);
    }
    if !text.is_empty() || !images.is_empty() || !calls.is_empty() || !thinking.is_empty() {
        let mut message = json!({"role": role, "content": text});
        if !images.is_empty() {
            message["images"] = json!(images);
        }
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        if !thinking.is_empty() {
            message["thinking"] = json!(thinking);
        }
        out.push(message);
    }
    out.append(&mut results);
    Ok(())
}

/// A message's content as blocks: a string is one text block.
fn blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
        Some(Value::Array(blocks)) => blocks.clone(),
        _ => Vec::new(),
    }
}

/// A native function tool from an Anthropic tool (`convertTool`; the built-in web search is
/// declared as a `web_search` function).
fn native_tool(tool: &Value) -> Result<Value, Refusal> {
    let field = |key: &str| tool.get(key).and_then(Value::as_str).unwrap_or("");
    if field("type").starts_with("web_search") {
        return Ok(json!({"type": "function", "function": {
            "name": "web_search",
            "description": "Search the web for current information. Use this to find up-to-date information about any topic.",
            "parameters": {"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string", "description": "The search query to look up on the web"}}},
        }}));
    }
    let parameters = match tool.get("input_schema") {
        None | Some(Value::Null) => Value::Null,
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(other) => {
            return Err(bad(format!(
                "invalid input_schema for tool {}: json: cannot unmarshal {} into Go value of type api.ToolFunctionParameters",
                go_quote(field("name")),
                decode::json_kind(other)
            )));
        }
    };
    Ok(json!({"type": "function", "function": {
        "name": field("name"), "description": field("description"), "parameters": parameters,
    }}))
}

/// A translated request: the native chat request and the request's model as sent.
#[derive(Debug)]
struct Translation {
    native: Value,
    model: String,
}

fn translate(body: &Value) -> Result<Translation, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "anthropic.MessagesRequest")?,
        "MessagesRequest",
        "",
    );
    let model = fields.string("model")?;
    let max_tokens = fields.int("max_tokens")?.unwrap_or(0);
    let raw_messages = fields.array("messages", "[]anthropic.MessageParam")?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let temperature = fields.number("temperature", "float64")?;
    let top_p = fields.number("top_p", "float64")?;
    let top_k = fields.int("top_k")?;
    let stop_sequences = fields.array("stop_sequences", "[]string")?;
    let tools = fields.array("tools", "[]anthropic.Tool")?;
    if model.is_empty() {
        return Err(bad("model is required"));
    }
    if max_tokens <= 0 {
        return Err(bad("max_tokens is required and must be positive"));
    }
    if raw_messages.is_empty() {
        return Err(bad("messages is required"));
    }

    let mut messages = Vec::new();
    match fields.get("system") {
        Some(Value::String(system)) if !system.is_empty() => {
            messages.push(json!({"role": "system", "content": system}));
        }
        Some(Value::Array(parts)) => {
            let system: String = parts
                .iter()
                .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect();
            if !system.is_empty() {
                messages.push(json!({"role": "system", "content": system}));
            }
        }
        _ => {}
    }
    for message in raw_messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        convert_message(role, &blocks(message.get("content")), &mut messages)?;
    }

    let mut options = Map::new();
    options.insert("num_predict".into(), json!(max_tokens));
    if let Some(temperature) = temperature {
        options.insert("temperature".into(), json!(temperature));
    }
    if let Some(top_p) = top_p {
        options.insert("top_p".into(), json!(top_p));
    }
    if let Some(top_k) = top_k {
        options.insert("top_k".into(), json!(top_k));
    }
    if !stop_sequences.is_empty() {
        options.insert("stop".into(), json!(stop_sequences));
    }
    let has_web_search = tools.iter().any(|tool| {
        tool.get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.starts_with("web_search"))
    });
    let mut native_tools = Vec::new();
    for tool in tools {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        // A user tool named like the built-in search would make its calls ambiguous.
        if has_web_search && !kind.starts_with("web_search") && name == "web_search" {
            continue;
        }
        native_tools.push(native_tool(tool)?);
    }
    let mut think = match fields
        .get("thinking")
        .and_then(|thinking| thinking.get("type"))
        .and_then(Value::as_str)
    {
        Some("enabled") => Some(json!(true)),
        Some("disabled") => Some(json!(false)),
        _ => None,
    };
    if think.is_none() {
        let effort = fields
            .get("output_config")
            .and_then(|config| config.get("effort"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_lowercase();
        let effort = if effort == "xhigh" {
            "high".to_owned()
        } else {
            effort
        };
        if ["high", "medium", "low", "max"].contains(&effort.as_str()) {
            think = Some(json!(effort));
        }
    }
    let mut native = json!({
        "model": model, "messages": messages, "options": options, "stream": stream,
        "tools": native_tools,
    });
    if let Some(think) = think {
        native["think"] = think;
    }
    Ok(Translation { native, model })
}

/// The input tokens Ollama puts in `message_start` before it knows the real count: the length
/// of the request's text (system, roles, text and thinking blocks, tool-use and tool-result
/// blocks as JSON, tool names, descriptions and schemas) divided by 4, at least 1 when there is
/// anything. The real count (the native rule) follows in `message_delta`.
///
/// ```
/// use serde_json::json;
/// let request = json!({"model": "llama3.2", "max_tokens": 16,
///     "messages": [{"role": "user", "content": "Hello there, how are you?"}]});
/// // ("user" 4 + 25 characters) / 4
/// assert_eq!(aiproxy_ollama_sim::anthropic_input_estimate(&request), 7);
/// ```
pub fn anthropic_input_estimate(request: &Value) -> u64 {
    let mut length = 0;
    match request.get("system") {
        Some(Value::String(text)) => length += text.len(),
        Some(Value::Array(blocks)) => length += blocks.iter().map(block_length).sum::<usize>(),
        Some(Value::Null) | None => {}
        Some(other) => length += to_go_json(other).len(),
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for message in messages {
        length += message
            .get("role")
            .and_then(Value::as_str)
            .map_or(0, str::len);
        length += blocks(message.get("content"))
            .iter()
            .map(block_length)
            .sum::<usize>();
    }
    for tool in request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |key: &str| tool.get(key).and_then(Value::as_str).map_or(0, str::len);
        length += text("name") + text("description");
        length += tool
            .get("input_schema")
            .map_or(0, |schema| schema.to_string().len());
    }
    let tokens = (length / 4) as u64;
    let has_input = !messages.is_empty() || request.get("system").is_some_and(|s| !s.is_null());
    if tokens == 0 && has_input { 1 } else { tokens }
}

/// What one block counts for: its text and thinking, and tool blocks as their JSON (the fields
/// Ollama's `ContentBlock` keeps, empty ones dropped).
fn block_length(block: &Value) -> usize {
    let text = |key: &str| block.get(key).and_then(Value::as_str).map_or(0, str::len);
    let mut length = text("text") + text("thinking");
    let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "tool_use" || kind == "tool_result" {
        const KEPT: [&str; 12] = [
            "type",
            "text",
            "citations",
            "source",
            "id",
            "name",
            "input",
            "tool_use_id",
            "content",
            "is_error",
            "thinking",
            "signature",
        ];
        let kept: Map<String, Value> = block
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, value)| {
                KEPT.contains(&key.as_str())
                    && match value {
                        Value::Null | Value::Bool(false) => false,
                        Value::String(text) => {
                            !text.is_empty()
                                || matches!(key.as_str(), "text" | "thinking" | "content")
                        }
                        Value::Array(items) => !items.is_empty() || key.as_str() == "content",
                        _ => true,
                    }
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        length += to_go_json(&kept).len();
    }
    length
}

pub(crate) async fn messages(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Messages, &body);
    let parsed = decode::parse_compat_body(&body);
    let translation = match parsed.as_ref().map_err(Clone::clone).and_then(translate) {
        Ok(translation) => translation,
        Err(refusal) => return Dialect::Anthropic.decode_error(refusal.status, &refusal.message),
    };
    let estimate = parsed.as_ref().map_or(0, anthropic_input_estimate);
    // Through this layer a model that cannot think ignores `thinking` instead of refusing it.
    let prepared = prepare_chat(&state, &translation.native, true);
    let encoder = AnthropicEncoder {
        id: format!("msg_{}", hex_id(24)),
        model: translation.model,
        estimated_input: estimate,
        started: false,
        thinking: BlockState::NotStarted,
        text_started: false,
        index: 0,
        tool_use: false,
    };
    answer(&state, prepared, encoder).await
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Thinking {
        thinking: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    /// `null` for an answer with no content, as Ollama's nil slice marshals.
    content: Option<Vec<Block<'a>>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    stop_reason: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: StopDelta<'a>,
        usage: Usage,
    },
    MessageStop,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    stop_reason: &'a str,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        named_event(out, self.name(), &to_go_json(self));
    }
}

/// Ollama's `done_reason` as Anthropic's `stop_reason` (`mapStopReason`).
fn stop_reason(done_reason: &str, tool_use: bool) -> &str {
    match done_reason {
        _ if tool_use => "tool_use",
        "stop" => "end_turn",
        "length" => "max_tokens",
        "" => "",
        _ => "stop_sequence",
    }
}

static EMPTY_INPUT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));

/// `/v1/messages` answers, with Ollama's `StreamConverter` state.
pub(crate) struct AnthropicEncoder {
    id: String,
    /// The model as the client named it.
    model: String,
    estimated_input: u64,
    started: bool,
    thinking: BlockState,
    text_started: bool,
    index: usize,
    tool_use: bool,
}

/// Where the thinking block is: Ollama opens at most one, before the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    NotStarted,
    Open,
    Closed,
}

impl AnthropicEncoder {
    /// `message_start`, once; its input tokens are the native line's count (0 on a token line,
    /// so the request's estimate).
    fn start(&mut self, out: &mut Vec<u8>, prompt_eval_count: u64) {
        if self.started {
            return;
        }
        self.started = true;
        let input_tokens = if prompt_eval_count == 0 {
            self.estimated_input
        } else {
            prompt_eval_count
        };
        Event::MessageStart {
            message: Message {
                id: &self.id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: Some(Vec::new()),
                stop_reason: "",
                usage: Usage {
                    input_tokens,
                    output_tokens: 0,
                },
            },
        }
        .write(out);
    }

    fn close_thinking(&mut self, out: &mut Vec<u8>) {
        if self.thinking == BlockState::Open {
            self.thinking = BlockState::Closed;
            Event::ContentBlockStop { index: self.index }.write(out);
            self.index += 1;
        }
    }

    fn close_text(&mut self, out: &mut Vec<u8>) {
        if self.text_started {
            Event::ContentBlockStop { index: self.index }.write(out);
            self.index += 1;
            self.text_started = false;
        }
    }

    fn tool_use(&mut self, out: &mut Vec<u8>, call: &ToolCall) {
        self.close_thinking(out);
        self.close_text(out);
        let arguments = to_go_json(&call.function.arguments);
        Event::ContentBlockStart {
            index: self.index,
            content_block: Block::ToolUse {
                id: &call.id,
                name: &call.function.name,
                input: &EMPTY_INPUT,
            },
        }
        .write(out);
        Event::ContentBlockDelta {
            index: self.index,
            delta: Delta::InputJson {
                partial_json: &arguments,
            },
        }
        .write(out);
        Event::ContentBlockStop { index: self.index }.write(out);
        self.index += 1;
        self.tool_use = true;
    }
}

impl Encoder for AnthropicEncoder {
    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn stream_content_type(&self) -> &'static str {
        EVENT_STREAM
    }

    fn stream_no_cache(&self) -> bool {
        true
    }

    fn piece(&mut self, _reply: &Reply, piece: &Piece) -> Bytes {
        let mut out = Vec::new();
        self.start(&mut out, 0);
        match piece {
            Piece::Thinking(thinking) if self.thinking != BlockState::Closed => {
                self.close_text(&mut out);
                if self.thinking == BlockState::NotStarted {
                    self.thinking = BlockState::Open;
                    Event::ContentBlockStart {
                        index: self.index,
                        content_block: Block::Thinking { thinking: "" },
                    }
                    .write(&mut out);
                }
                Event::ContentBlockDelta {
                    index: self.index,
                    delta: Delta::Thinking { thinking },
                }
                .write(&mut out);
            }
            Piece::Thinking(_) => {}
            Piece::Text(text) => {
                self.close_thinking(&mut out);
                if !self.text_started {
                    self.text_started = true;
                    Event::ContentBlockStart {
                        index: self.index,
                        content_block: Block::Text { text: "" },
                    }
                    .write(&mut out);
                }
                Event::ContentBlockDelta {
                    index: self.index,
                    delta: Delta::Text { text },
                }
                .write(&mut out);
            }
            Piece::ToolCalls(calls) => {
                for call in calls {
                    self.tool_use(&mut out, call);
                }
            }
        }
        Bytes::from(out)
    }

    fn finish(&mut self, reply: &Reply) -> Bytes {
        let mut out = Vec::new();
        self.start(&mut out, reply.metrics.prompt_tokens());
        if self.text_started || self.thinking == BlockState::Open {
            Event::ContentBlockStop { index: self.index }.write(&mut out);
        }
        Event::MessageDelta {
            delta: StopDelta {
                stop_reason: stop_reason(reply.done_reason, self.tool_use),
            },
            usage: Usage {
                input_tokens: reply.metrics.prompt_tokens(),
                output_tokens: reply.metrics.completion_tokens(),
            },
        }
        .write(&mut out);
        Event::MessageStop.write(&mut out);
        Bytes::from(out)
    }

    fn error_line(&mut self, _reply: &Reply) -> Option<Bytes> {
        // Ollama's writer decodes `{"error": …}` as an empty response, which yields no event:
        // the stream just ends, without `message_delta` or `message_stop`.
        None
    }

    fn malformed(&self) -> &'static [u8] {
        MALFORMED_EVENT
    }

    fn whole(&mut self, reply: &Reply) -> (String, &'static str) {
        let text = reply.text();
        let thinking = reply.thinking();
        let calls = reply.tool_calls();
        let mut content = Vec::new();
        if !thinking.is_empty() {
            content.push(Block::Thinking {
                thinking: &thinking,
            });
        }
        if !text.is_empty() {
            content.push(Block::Text { text: &text });
        }
        for call in &calls {
            content.push(Block::ToolUse {
                id: &call.id,
                name: &call.function.name,
                input: &call.function.arguments,
            });
        }
        let message = Message {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: &reply.model,
            content: (!content.is_empty()).then_some(content),
            stop_reason: stop_reason(reply.done_reason, !calls.is_empty()),
            usage: Usage {
                input_tokens: reply.metrics.prompt_tokens(),
                output_tokens: reply.metrics.completion_tokens(),
            },
        };
        let mut body = to_go_json(&message);
        body.push('\n');
        (body, JSON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_translate_like_from_messages_request() {
        let translation = translate(&json!({
            "model": "llama3.2", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief"}],
            "stop_sequences": ["END"],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "12 degrees"}]},
                    {"type": "text", "text": "And tomorrow?"}
                ]}
            ]
        }))
        .unwrap();
        let messages = translation.native["messages"].as_array().unwrap().clone();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "Be brief"})
        );
        assert_eq!(
            messages[2]["tool_calls"][0],
            json!({"id": "toolu_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}})
        );
        assert_eq!(
            messages[3],
            json!({"role": "tool", "content": "12 degrees", "tool_call_id": "toolu_1"})
        );
        assert_eq!(
            messages[4],
            json!({"role": "user", "content": "And tomorrow?"})
        );
        assert_eq!(
            translation.native["options"],
            json!({"num_predict": 64, "stop": ["END"]})
        );

        let message = |body: Value| translate(&body).unwrap_err().message;
        let user = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            message(json!({"max_tokens": 1, "messages": user})),
            "model is required"
        );
        assert_eq!(
            message(json!({"model": "m", "max_tokens": 0, "messages": user})),
            "max_tokens is required and must be positive"
        );
        assert_eq!(
            message(json!({"model": "m", "max_tokens": 1})),
            "messages is required"
        );
        assert_eq!(
            message(
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://x"}}]}]})
            ),
            "invalid image source type: url. Only base64 images are supported."
        );
        assert_eq!(
            message(
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
                {"type": "tool_use", "name": "f"}]}]})
            ),
            "tool_use block missing required 'id' field"
        );
    }

    #[test]
    fn the_input_estimate_is_a_quarter_of_the_text() {
        let request =
            json!({"system": "12345678", "messages": [{"role": "user", "content": "abcd"}]});
        assert_eq!(anthropic_input_estimate(&request), (8 + 4 + 4) / 4);
        assert_eq!(
            anthropic_input_estimate(&json!({"messages": [{"role": "a", "content": ""}]})),
            1
        );
        let tool_use = json!({"messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": {}, "cache_control": {"type": "ephemeral"}}]}]});
        let json_length = r#"{"id":"t","input":{},"name":"f","type":"tool_use"}"#.len();
        assert_eq!(
            anthropic_input_estimate(&tool_use),
            ((9 + json_length) / 4) as u64
        );
    }

    #[test]
    fn stop_reasons_map_like_ollama() {
        assert_eq!(stop_reason("stop", false), "end_turn");
        assert_eq!(stop_reason("length", false), "max_tokens");
        assert_eq!(stop_reason("stop", true), "tool_use");
        assert_eq!(stop_reason("load", false), "stop_sequence");
        assert_eq!(stop_reason("", false), "");
    }
}
