//! Ollama's OpenAI Responses API (`POST /v1/responses`, stateless, since v0.13.3): the request
//! is translated into a native chat request as Ollama's `FromResponsesRequest` does, and the
//! reply comes back as a response object or as Ollama's event sequence (`response.created`,
//! `response.in_progress`, output item and content part events, text or function-call argument
//! deltas, `response.completed` with the usage).

use actix_web::{HttpResponse, web};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::control::SimEndpoint;
use crate::decode::{self, Fields, Refusal, json_kind, top_level};
use crate::gojson::to_go_json;
use crate::inference::{answer, prepare_chat};
use crate::openai::{MALFORMED_EVENT, decode_image_url, go_float, think_from_effort};
use crate::rules::ToolCall;
use crate::state::AppState;
use crate::wire::{Dialect, EVENT_STREAM, Encoder, JSON, Piece, Reply, named_event, next_id};

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The parts of the request that the response object echoes back.
#[derive(Debug, Clone)]
struct Echo {
    model: String,
    instructions: Option<String>,
    truncation: String,
    tools: Vec<Value>,
    text_format: Value,
    reasoning: Option<Value>,
    temperature: f64,
    top_p: f64,
    max_output_tokens: Option<i64>,
    background: bool,
}

/// A translated request: the native chat request and what the answer echoes.
#[derive(Debug)]
struct Translation {
    native: Value,
    echo: Echo,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::bad_request(message)
}

/// Text and images of a list of content parts (`convertResponsesContent`).
fn content_parts(parts: &[Value], position: &str) -> Result<(String, Vec<String>), Refusal> {
    let mut text = String::new();
    let mut images = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "input_text" | "output_text" => {
                text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            "input_image" => {
                if let Some(url) = part.get("image_url").and_then(Value::as_str)
                    && !url.is_empty()
                {
                    images.push(decode_image_url(url)?);
                }
            }
            "input_file" => return Err(bad("file inputs are not currently supported")),
            other => {
                return Err(bad(format!(
                    "{position}content[{index}]: unknown content type: {other}"
                )));
            }
        }
    }
    Ok((text, images))
}

/// A message item's content: a string, or content parts.
fn message_content(item: &Value, position: &str) -> Result<(String, Vec<String>), Refusal> {
    match item.get("content") {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(text)) => Ok((text.clone(), Vec::new())),
        Some(Value::Array(parts)) => content_parts(parts, position),
        Some(other) => Err(bad(format!(
            "{position}content must be a string or array: json: cannot unmarshal {} into Go value of type []json.RawMessage",
            json_kind(other)
        ))),
    }
}

fn translate_input(items: &[Value]) -> Result<Vec<Value>, Refusal> {
    let mut messages: Vec<Value> = Vec::new();
    let mut pending_thinking = String::new();
    for (index, item) in items.iter().enumerate() {
        let position = format!("input[{index}]: ");
        let role = item.get("role").and_then(Value::as_str).unwrap_or("");
        let kind = match item.get("type").and_then(Value::as_str).unwrap_or("") {
            "" if !role.is_empty() => "message",
            kind => kind,
        };
        match kind {
            "reasoning" => {
                pending_thinking = item
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
            }
            "message" => {
                let (content, images) = message_content(item, &position)?;
                let mut message = json!({"role": role, "content": content});
                if !images.is_empty() {
                    message["images"] = json!(images);
                }
                if role == "assistant" && !pending_thinking.is_empty() {
                    message["thinking"] = json!(std::mem::take(&mut pending_thinking));
                }
                // An assistant message replayed between a call and its output joins the
                // assistant message that made the call.
                let output_call = items
                    .get(index + 1)
                    .filter(|next| {
                        next.get("type").and_then(Value::as_str) == Some("function_call_output")
                    })
                    .and_then(|next| next.get("call_id").and_then(Value::as_str));
                if role == "assistant"
                    && let Some(call_id) = output_call
                    && let Some(last) = messages.last_mut()
                    && last["role"] == "assistant"
                    && last["tool_calls"]
                        .as_array()
                        .is_some_and(|calls| calls.iter().any(|call| call["id"] == call_id))
                {
                    let joined = match (last["content"].as_str().unwrap_or(""), content.as_str()) {
                        (before, "") => before.to_owned(),
                        ("", after) => after.to_owned(),
                        (before, after) => format!("{before}\n{after}"),
                    };
                    last["content"] = json!(joined);
                    continue;
                }
                messages.push(message);
            }
            "function_call" => {
                let raw = item.get("arguments").and_then(Value::as_str).unwrap_or("");
                let arguments: Value = if raw.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(raw).map_err(|err| {
                        bad(format!("failed to parse function call arguments: {err}"))
                    })?
                };
                let call = json!({
                    "id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                    "function": {
                        "name": item.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": arguments,
                    },
                });
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" => {
                        if let Some(calls) = last["tool_calls"].as_array_mut() {
                            calls.push(call);
                        } else {
                            last["tool_calls"] = json!([call]);
                        }
                        if !pending_thinking.is_empty() {
                            last["thinking"] = json!(std::mem::take(&mut pending_thinking));
                        }
                    }
                    _ => {
                        let mut message = json!({"role": "assistant", "tool_calls": [call]});
                        if !pending_thinking.is_empty() {
                            message["thinking"] = json!(std::mem::take(&mut pending_thinking));
                        }
                        messages.push(message);
                    }
                }
            }
            "function_call_output" => {
                let call_id = item.get("call_id").and_then(Value::as_str).unwrap_or("");
                let (content, images) = match item.get("output") {
                    Some(Value::Array(parts)) => content_parts(parts, &position)?,
                    Some(Value::String(text)) => (text.clone(), Vec::new()),
                    _ => (String::new(), Vec::new()),
                };
                let mut message =
                    json!({"role": "tool", "content": content, "tool_call_id": call_id});
                if !images.is_empty() {
                    message["images"] = json!(images);
                }
                messages.push(message);
            }
            // A built-in search already ran; its result is in the assistant message after it.
            "web_search_call" => {}
            "" => {
                return Err(bad(format!(
                    "{position}input item missing required 'type' field"
                )));
            }
            other => {
                return Err(bad(format!(
                    "{position}unknown input item type: {}",
                    crate::gojson::go_quote(other)
                )));
            }
        }
    }
    if !pending_thinking.is_empty() {
        messages.push(json!({"role": "assistant", "thinking": pending_thinking}));
    }
    Ok(messages)
}

/// One declared tool as native tools (a `namespace` expands to its members, their names
/// prefixed with the namespace's).
fn native_tools(tool: &Value, out: &mut Vec<Value>, prefix: &str) {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
    let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "namespace" {
        let inner = if name.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}{name}.")
        };
        for member in tool
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            native_tools(member, out, &inner);
        }
        return;
    }
    let qualified = if prefix.is_empty() || name.starts_with(prefix) {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    };
    out.push(json!({
        "type": kind,
        "function": {
            "name": qualified,
            "description": tool.get("description").and_then(Value::as_str).unwrap_or(""),
            "parameters": tool.get("parameters").cloned().unwrap_or(Value::Null),
        },
    }));
}

fn translate(body: &Value) -> Result<Translation, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "openai.ResponsesRequest")?,
        "ResponsesRequest",
        "",
    );
    let model = fields.string("model")?;
    let background = fields.bool("background")?.unwrap_or(false);
    let instructions = fields.string("instructions")?;
    let max_output_tokens = fields.int("max_output_tokens")?;
    let temperature = fields.number("temperature", "float64")?;
    let top_p = fields.number("top_p", "float64")?;
    let truncation = fields.string("truncation")?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let reasoning = fields.object("reasoning", "openai.ResponsesReasoning")?;
    let reasoning = reasoning.map(|map| Fields::new(map, "ResponsesReasoning", "reasoning."));
    let (effort, summary) = match &reasoning {
        Some(reasoning) => (reasoning.string("effort")?, reasoning.string("summary")?),
        None => (String::new(), String::new()),
    };
    let tools = fields.array("tools", "[]openai.ResponsesTool")?;
    let text_format = fields
        .object("text", "openai.ResponsesText")?
        .and_then(|text| text.get("format"))
        .filter(|format| format.is_object())
        .cloned();

    let mut messages = Vec::new();
    if !instructions.is_empty() {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match fields.get("input") {
        Some(Value::String(text)) if !text.is_empty() => {
            messages.push(json!({"role": "user", "content": text}));
        }
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) => messages.extend(translate_input(items)?),
        Some(other) => {
            return Err(bad(format!(
                "input must be a string or array: json: cannot unmarshal {} into Go value of type []json.RawMessage",
                json_kind(other)
            )));
        }
    }

    let mut options = Map::new();
    options.insert("temperature".into(), go_float(temperature.unwrap_or(1.0)));
    if let Some(top_p) = top_p {
        options.insert("top_p".into(), go_float(top_p));
    }
    if let Some(max_output_tokens) = max_output_tokens {
        options.insert("num_predict".into(), json!(max_output_tokens));
    }
    let think = think_from_effort(&effort)?;
    let mut native_tool_list = Vec::new();
    for tool in tools {
        native_tools(tool, &mut native_tool_list, "");
    }
    let mut native = json!({
        "model": model, "messages": messages, "options": options, "stream": stream,
        "tools": native_tool_list,
    });
    if let Some(format) = &text_format
        && format.get("type").and_then(Value::as_str) == Some("json_schema")
        && let Some(schema) = format.get("schema").filter(|schema| !schema.is_null())
    {
        native["format"] = schema.clone();
    }
    if let Some(think) = think {
        native["think"] = think;
    }

    let echoed_tools = tools
        .iter()
        .map(|tool| {
            let field = |key: &str| tool.get(key).cloned().unwrap_or(Value::Null);
            json!({"description": field("description"), "name": field("name"),
                   "parameters": field("parameters"), "strict": field("strict"),
                   "type": field("type")})
        })
        .collect();
    let reasoning = (!effort.is_empty() || !summary.is_empty()).then(|| {
        let part = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        json!({"effort": part(&effort), "summary": part(&summary)})
    });
    Ok(Translation {
        native,
        echo: Echo {
            model,
            instructions: (!instructions.is_empty()).then_some(instructions),
            truncation: if truncation.is_empty() {
                "disabled".into()
            } else {
                truncation
            },
            tools: echoed_tools,
            text_format: text_format.unwrap_or_else(|| json!({"type": "text"})),
            reasoning,
            temperature: temperature.unwrap_or(1.0),
            top_p: top_p.unwrap_or(1.0),
            max_output_tokens,
            background,
        },
    })
}

pub(crate) async fn responses(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    state.record(SimEndpoint::Responses, &body);
    let translation = match decode::parse_compat_body(&body).and_then(|value| translate(&value)) {
        Ok(translation) => translation,
        Err(refusal) => return Dialect::OpenAi.decode_error(refusal.status, &refusal.message),
    };
    let prepared = prepare_chat(&state, &translation.native, false);
    let serial = next_id();
    let encoder = ResponsesEncoder {
        response_id: format!("resp_{}", serial % 999_999),
        item_id: format!("msg_{}", next_id() % 999_999),
        echo: translation.echo,
        sequence: 0,
        started: false,
        content_started: false,
        tool_calls_sent: false,
        text: String::new(),
        reasoning: None,
        output_index: 0,
        completed: Vec::new(),
    };
    answer(&state, prepared, encoder).await
}

/// Usage as the Responses API reports it (Ollama fills no details).
fn usage(reply: &Reply) -> Value {
    let input = reply.metrics.prompt_tokens();
    let output = reply.metrics.completion_tokens();
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"encrypted_content": text, "id": id,
           "summary": [{"text": text, "type": "summary_text"}], "type": "reasoning"})
}

fn output_text(text: &str) -> Value {
    json!({"annotations": [], "logprobs": [], "text": text, "type": "output_text"})
}

fn function_call_item(id: &str, status: &str, call: &ToolCall, arguments: &str) -> Value {
    json!({
        "arguments": arguments, "call_id": call.id, "id": id, "name": call.function.name,
        "status": status, "type": "function_call",
    })
}

/// `/v1/responses` answers, with Ollama's `ResponsesStreamConverter` state.
pub(crate) struct ResponsesEncoder {
    response_id: String,
    item_id: String,
    echo: Echo,
    sequence: u64,
    started: bool,
    content_started: bool,
    tool_calls_sent: bool,
    text: String,
    /// The open reasoning item: its id and the thinking so far.
    reasoning: Option<(String, String)>,
    output_index: usize,
    completed: Vec<Value>,
}

impl ResponsesEncoder {
    /// Adds `type` and `sequence_number` and writes the event.
    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        named_event(out, kind, &to_go_json(&data));
    }

    /// The response object of `response.created`, `.in_progress` and `.completed`.
    fn response_object(&self, status: &str, output: Vec<Value>, usage: Value) -> Value {
        let echo = &self.echo;
        json!({
            "background": echo.background,
            "completed_at": null,
            "created_at": now_unix(),
            "error": null,
            "frequency_penalty": 0,
            "id": self.response_id,
            "incomplete_details": null,
            "instructions": echo.instructions,
            "max_output_tokens": echo.max_output_tokens,
            "max_tool_calls": null,
            "metadata": {},
            "model": echo.model,
            "object": "response",
            "output": output,
            "parallel_tool_calls": true,
            "presence_penalty": 0,
            "previous_response_id": null,
            "prompt_cache_key": null,
            "reasoning": echo.reasoning,
            "safety_identifier": null,
            "service_tier": "default",
            "status": status,
            "store": false,
            "temperature": go_float(echo.temperature),
            "text": {"format": echo.text_format},
            "tool_choice": "auto",
            "tools": echo.tools,
            "top_logprobs": 0,
            "top_p": go_float(echo.top_p),
            "truncation": echo.truncation,
            "usage": usage,
        })
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        for kind in ["response.created", "response.in_progress"] {
            let response = self.response_object("in_progress", Vec::new(), Value::Null);
            self.event(out, kind, json!({ "response": response }));
        }
    }

    fn think(&mut self, out: &mut Vec<u8>, thinking: &str) {
        let index = self.output_index;
        if self.reasoning.is_none() {
            let id = format!("rs_{}", next_id() % 999_999);
            let item = json!({"id": id, "summary": [], "type": "reasoning"});
            self.event(
                out,
                "response.output_item.added",
                json!({"item": item, "output_index": index}),
            );
            self.reasoning = Some((id, String::new()));
        }
        let Some((id, text)) = self.reasoning.as_mut() else {
            return;
        };
        text.push_str(thinking);
        let delta = json!({"delta": thinking, "item_id": id, "output_index": index,
                           "summary_index": 0});
        self.event(out, "response.reasoning_summary_text.delta", delta);
    }

    /// Closes the reasoning item, if one is open, before anything else is output.
    fn finish_reasoning(&mut self, out: &mut Vec<u8>) {
        let Some((id, text)) = self.reasoning.take() else {
            return;
        };
        let index = self.output_index;
        let done = json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text});
        self.event(out, "response.reasoning_summary_text.done", done);
        let item = reasoning_item(&id, &text);
        self.completed.push(item.clone());
        self.event(
            out,
            "response.output_item.done",
            json!({"item": item, "output_index": index}),
        );
        self.output_index += 1;
    }

    fn message_item(&self, status: &str, content: Vec<Value>) -> Value {
        json!({"content": content, "id": self.item_id, "role": "assistant", "status": status,
               "type": "message"})
    }
}

impl Encoder for ResponsesEncoder {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn stream_content_type(&self) -> &'static str {
        EVENT_STREAM
    }

    fn stream_no_cache(&self) -> bool {
        true
    }

    fn piece(&mut self, _reply: &Reply, piece: &Piece) -> Bytes {
        let mut out = Vec::new();
        self.start(&mut out);
        if !matches!(piece, Piece::Thinking(_)) {
            self.finish_reasoning(&mut out);
        }
        match piece {
            Piece::Thinking(thinking) => self.think(&mut out, thinking),
            Piece::Text(text) if !self.tool_calls_sent => {
                let index = self.output_index;
                if !self.content_started {
                    self.content_started = true;
                    let item = self.message_item("in_progress", Vec::new());
                    self.event(
                        &mut out,
                        "response.output_item.added",
                        json!({"item": item, "output_index": index}),
                    );
                    let part = json!({"item_id": self.item_id, "output_index": index,
                                      "content_index": 0, "part": output_text("")});
                    self.event(&mut out, "response.content_part.added", part);
                }
                self.text.push_str(text);
                let delta = json!({"content_index": 0, "delta": text, "item_id": self.item_id,
                                   "logprobs": [], "output_index": index});
                self.event(&mut out, "response.output_text.delta", delta);
            }
            Piece::Text(_) => {}
            Piece::ToolCalls(calls) => {
                for (position, call) in calls.iter().enumerate() {
                    let index = self.output_index + position;
                    let id = format!("fc_{}_{position}", next_id() % 999_999);
                    let arguments = to_go_json(&call.function.arguments);
                    let done = function_call_item(&id, "completed", call, &arguments);
                    self.completed.push(done.clone());
                    let added = function_call_item(&id, "in_progress", call, "");
                    self.event(
                        &mut out,
                        "response.output_item.added",
                        json!({"item": added, "output_index": index}),
                    );
                    self.event(
                        &mut out,
                        "response.function_call_arguments.delta",
                        json!({"delta": arguments, "item_id": id, "output_index": index}),
                    );
                    self.event(
                        &mut out,
                        "response.function_call_arguments.done",
                        json!({"arguments": arguments, "item_id": id, "output_index": index}),
                    );
                    self.event(
                        &mut out,
                        "response.output_item.done",
                        json!({"item": done, "output_index": index}),
                    );
                }
                self.output_index += calls.len();
                self.tool_calls_sent = true;
            }
        }
        Bytes::from(out)
    }

    fn finish(&mut self, reply: &Reply) -> Bytes {
        let mut out = Vec::new();
        self.start(&mut out);
        self.finish_reasoning(&mut out);
        let mut output = self.completed.clone();
        if self.content_started {
            let index = self.output_index;
            let text = self.text.clone();
            if !self.tool_calls_sent {
                let done = json!({"content_index": 0, "item_id": self.item_id, "logprobs": [],
                                  "output_index": index, "text": text});
                self.event(&mut out, "response.output_text.done", done);
                let part = json!({"content_index": 0, "item_id": self.item_id,
                                  "output_index": index, "part": output_text(&text)});
                self.event(&mut out, "response.content_part.done", part);
                let item = self.message_item("completed", vec![output_text(&text)]);
                self.event(
                    &mut out,
                    "response.output_item.done",
                    json!({"item": item, "output_index": index}),
                );
            }
            output.push(self.message_item("completed", vec![output_text(&text)]));
        }
        let mut response = self.response_object("completed", output, usage(reply));
        response["completed_at"] = json!(now_unix());
        self.event(
            &mut out,
            "response.completed",
            json!({ "response": response }),
        );
        Bytes::from(out)
    }

    fn error_line(&mut self, _reply: &Reply) -> Option<Bytes> {
        // Ollama's writer decodes `{"error": …}` as an empty response, which yields no event:
        // the stream just ends, without `response.completed`.
        None
    }

    fn malformed(&self) -> &'static [u8] {
        MALFORMED_EVENT
    }

    fn whole(&mut self, reply: &Reply) -> (String, &'static str) {
        let calls = reply.tool_calls();
        let thinking = reply.thinking();
        let mut output = Vec::new();
        if !thinking.is_empty() {
            output.push(reasoning_item(
                &format!("rs_{}", self.response_id),
                &thinking,
            ));
        }
        if calls.is_empty() {
            output.push(self.message_item("completed", vec![output_text(&reply.text())]));
        } else {
            output.extend(calls.iter().enumerate().map(|(index, call)| {
                let id = format!("fc_{}_{index}", self.response_id);
                function_call_item(
                    &id,
                    "completed",
                    call,
                    &to_go_json(&call.function.arguments),
                )
            }));
        }
        let mut response = self.response_object("completed", output, usage(reply));
        response["completed_at"] = json!(now_unix());
        let mut body = to_go_json(&response);
        body.push('\n');
        (body, JSON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_translate_like_from_responses_request() {
        let translation = translate(&json!({
            "model": "llama3.2", "instructions": "Be brief", "max_output_tokens": 7,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "12 degrees"}
            ]
        }))
        .unwrap();
        let native = translation.native;
        assert_eq!(
            native["messages"][0],
            json!({"role": "system", "content": "Be brief"})
        );
        assert_eq!(
            native["messages"][1],
            json!({"role": "user", "content": "Weather?"})
        );
        assert_eq!(
            native["messages"][2]["tool_calls"][0],
            json!({"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}})
        );
        assert_eq!(
            native["messages"][3],
            json!({"role": "tool", "content": "12 degrees", "tool_call_id": "call_1"})
        );
        assert_eq!(
            native["options"],
            json!({"temperature": 1, "num_predict": 7})
        );
        assert_eq!(native["stream"], false);

        let message = |body: Value| translate(&body).unwrap_err().message;
        assert_eq!(
            message(json!({"model": "m", "input": [{"type": "bogus"}]})),
            "input[0]: unknown input item type: \"bogus\""
        );
        assert_eq!(
            message(json!({"model": "m", "input": [{"content": "x"}]})),
            "input[0]: input item missing required 'type' field"
        );
        assert_eq!(
            message(
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]})
            ),
            "file inputs are not currently supported"
        );
    }

    #[test]
    fn namespaces_expand_to_prefixed_functions() {
        let mut tools = Vec::new();
        native_tools(
            &json!({"type": "namespace", "name": "crm", "tools": [{"type": "function", "name": "find"}]}),
            &mut tools,
            "",
        );
        assert_eq!(tools[0]["function"]["name"], "crm.find");
    }
}
