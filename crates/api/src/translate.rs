//! Translation between OpenAI's chat wire format and Ollama's native one.
//!
//! Pure functions: no I/O, so the rules are unit-tested and benchmarked on their own. Images
//! given by http(s) URL are left as [`PendingImage`]s for the handler to fetch.

use aiproxy_ollama as ollama;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, MessageContent, ResponseFormat, Role,
    StopSequences,
};

/// An image part given by URL, to be fetched before the request goes to Ollama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingImage {
    /// Index into the Ollama request's `messages`.
    pub message: usize,
    /// Index into that message's `images`.
    pub image: usize,
    /// The URL to fetch.
    pub url: String,
    /// The part's path in the request, for error messages (`messages[1].content[2]`).
    pub param: String,
}

/// The Ollama request, plus the URL images still to fetch.
#[derive(Debug)]
pub struct TranslatedChat {
    /// What to send to `/api/chat` (`stream` is set by the client).
    pub request: ollama::ChatRequest,
    /// Images to fetch into `request.messages[m].images[i]`.
    pub pending_images: Vec<PendingImage>,
    /// Whether the client asked for a usage chunk at the end of a stream.
    pub include_usage: bool,
}

/// The completion budget the client asked for: `max_completion_tokens`, else `max_tokens`.
pub fn requested_completion_tokens(request: &ChatCompletionRequest) -> Option<u64> {
    request.max_completion_tokens.or(request.max_tokens)
}

/// Translates an OpenAI chat request into Ollama's native form.
///
/// `num_predict` is the completion budget granted by the rate limiter (a hard bound), or the
/// client's own `max_tokens` when no limit applies.
pub fn chat_request_to_ollama(
    request: ChatCompletionRequest,
    num_predict: Option<u64>,
) -> Result<TranslatedChat, ApiError> {
    if request.model.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`model` must name an Ollama model.",
            Some("model".into()),
        ));
    }
    if request.messages.is_empty() {
        return Err(ApiError::bad_request(
            "`messages` must contain at least one message.",
            Some("messages".into()),
        ));
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request(
            "Ollama produces one choice per request; `n` must be 1.",
            Some("n".into()),
        ));
    }
    if request.logprobs == Some(true) || request.top_logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::bad_request(
            "Log probabilities are not available through this proxy; remove `logprobs` and `top_logprobs`.",
            Some("logprobs".into()),
        ));
    }

    let mut options = Map::new();
    if let Some(extension) = request.ollama.as_ref().and_then(|e| e.options.as_ref()) {
        options.extend(extension.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(n) = num_predict {
        options.insert("num_predict".into(), Value::from(n));
    }
    set_number(&mut options, "temperature", request.temperature, 0.0..=2.0)?;
    set_number(&mut options, "top_p", request.top_p, 0.0..=1.0)?;
    set_number(
        &mut options,
        "presence_penalty",
        request.presence_penalty,
        -2.0..=2.0,
    )?;
    set_number(
        &mut options,
        "frequency_penalty",
        request.frequency_penalty,
        -2.0..=2.0,
    )?;
    if let Some(seed) = request.seed {
        options.insert("seed".into(), Value::from(seed));
    }
    match request.stop {
        Some(StopSequences::One(stop)) => {
            options.insert("stop".into(), Value::from(vec![stop]));
        }
        Some(StopSequences::Many(stops)) => {
            if stops.len() > 4 {
                return Err(ApiError::bad_request(
                    "`stop` takes at most 4 sequences.",
                    Some("stop".into()),
                ));
            }
            options.insert("stop".into(), Value::from(stops));
        }
        None => {}
    }

    let format = match request.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Value::from("json")),
        Some(ResponseFormat::JsonSchema { json_schema }) => match json_schema.schema {
            Some(schema @ Value::Object(_)) => Some(schema),
            _ => {
                return Err(ApiError::bad_request(
                    "`response_format.json_schema.schema` must be a JSON schema object.",
                    Some("response_format.json_schema.schema".into()),
                ));
            }
        },
    };

    let tools = select_tools(request.tools, request.tool_choice)?;
    let think = match (&request.ollama, request.reasoning_effort.as_deref()) {
        (Some(ext), _) if ext.think.is_some() => ext.think.clone(),
        (_, None) => None,
        (_, Some("none")) => Some(Value::from(false)),
        (_, Some("minimal" | "low")) => Some(Value::from("low")),
        (_, Some("medium")) => Some(Value::from("medium")),
        (_, Some("high")) => Some(Value::from("high")),
        (_, Some(other)) => {
            return Err(ApiError::bad_request(
                format!(
                    "Unknown reasoning_effort `{other}`; use none, minimal, low, medium or high."
                ),
                Some("reasoning_effort".into()),
            ));
        }
    };

    let mut messages = Vec::with_capacity(request.messages.len());
    let mut pending_images = Vec::new();
    for (index, message) in request.messages.into_iter().enumerate() {
        let translated = translate_message(message, index, &messages, &mut pending_images)?;
        messages.push(translated);
    }

    let include_usage = request
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok(TranslatedChat {
        request: ollama::ChatRequest {
            model: request.model,
            messages,
            tools,
            format,
            options: (!options.is_empty()).then_some(options),
            stream: None,
            keep_alive: request.ollama.and_then(|e| e.keep_alive),
            think,
        },
        pending_images,
        include_usage,
    })
}

fn set_number(
    options: &mut Map<String, Value>,
    name: &'static str,
    value: Option<f64>,
    range: std::ops::RangeInclusive<f64>,
) -> Result<(), ApiError> {
    if let Some(v) = value {
        if !range.contains(&v) {
            return Err(ApiError::bad_request(
                format!(
                    "`{name}` must be between {} and {}.",
                    range.start(),
                    range.end()
                ),
                Some(name.into()),
            ));
        }
        options.insert(name.into(), Value::from(v));
    }
    Ok(())
}

/// Applies `tool_choice` to the tool list: `none` sends no tools, a named function sends only
/// that one (the closest Ollama can come to forcing it), `auto` and `required` send them all.
fn select_tools(
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
) -> Result<Option<Vec<Value>>, ApiError> {
    let Some(tools) = tools.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    for (i, tool) in tools.iter().enumerate() {
        let has_name = tool
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .is_some();
        if !has_name {
            return Err(ApiError::bad_request(
                "Each tool must be {\"type\":\"function\",\"function\":{\"name\":…}}.",
                Some(format!("tools[{i}]")),
            ));
        }
    }
    match tool_choice {
        None => Ok(Some(tools)),
        Some(Value::String(choice)) => match choice.as_str() {
            "none" => Ok(None),
            "auto" | "required" => Ok(Some(tools)),
            other => Err(ApiError::bad_request(
                format!("Unknown tool_choice `{other}`; use none, auto, required or a function."),
                Some("tool_choice".into()),
            )),
        },
        Some(choice) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "tool_choice must be a string or {\"type\":\"function\",\"function\":{\"name\":…}}.",
                        Some("tool_choice".into()),
                    )
                })?;
            let chosen: Vec<Value> = tools
                .into_iter()
                .filter(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
                .collect();
            if chosen.is_empty() {
                return Err(ApiError::bad_request(
                    format!("tool_choice names `{name}`, which is not among `tools`."),
                    Some("tool_choice".into()),
                ));
            }
            Ok(Some(chosen))
        }
    }
}

fn translate_message(
    message: ChatMessage,
    index: usize,
    earlier: &[ollama::Message],
    pending_images: &mut Vec<PendingImage>,
) -> Result<ollama::Message, ApiError> {
    let role = match message.role {
        Role::Developer | Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut content = String::new();
    let mut images = Vec::new();
    match message.content {
        Some(MessageContent::Text(text)) => content = text,
        Some(MessageContent::Parts(parts)) => {
            for (part_index, part) in parts.into_iter().enumerate() {
                match part {
                    ContentPart::Text { text } => {
                        if !content.is_empty() {
                            content.push('\n');
                        }
                        content.push_str(&text);
                    }
                    ContentPart::ImageUrl { image_url } => {
                        let param = format!("messages[{index}].content[{part_index}]");
                        if message.role != Role::User {
                            return Err(ApiError::bad_request(
                                "Images are allowed only in user messages.",
                                Some(param),
                            ));
                        }
                        let url = image_url.url();
                        if url.starts_with("data:") {
                            images.push(decode_data_uri(url, &param)?);
                        } else if url.starts_with("http://") || url.starts_with("https://") {
                            pending_images.push(PendingImage {
                                message: index,
                                image: images.len(),
                                url: url.to_owned(),
                                param,
                            });
                            images.push(String::new());
                        } else {
                            return Err(ApiError::bad_request(
                                "An image must be a data: URI or an http(s) URL.",
                                Some(param),
                            ));
                        }
                    }
                }
            }
        }
        None if message.tool_calls.is_some() => {}
        None => {
            return Err(ApiError::bad_request(
                "`content` is required unless the assistant message has `tool_calls`.",
                Some(format!("messages[{index}].content")),
            ));
        }
    }

    let tool_calls = match message.tool_calls {
        Some(calls) if message.role == Role::Assistant => {
            let mut out = Vec::with_capacity(calls.len());
            for (call_index, call) in calls.into_iter().enumerate() {
                let arguments = if call.function.arguments.trim().is_empty() {
                    Value::Object(Map::new())
                } else {
                    serde_json::from_str(&call.function.arguments).map_err(|_| {
                        ApiError::bad_request(
                            "Tool call arguments must be a JSON-encoded object.",
                            Some(format!(
                                "messages[{index}].tool_calls[{call_index}].function.arguments"
                            )),
                        )
                    })?
                };
                out.push(ollama::ToolCall {
                    id: call.id,
                    function: ollama::ToolCallFunction {
                        index: u32::try_from(call_index).ok(),
                        name: call.function.name,
                        arguments,
                    },
                });
            }
            Some(out)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "Only assistant messages may carry `tool_calls`.",
                Some(format!("messages[{index}].tool_calls")),
            ));
        }
        None => None,
    };

    // Ollama wants the tool's name on its result; OpenAI clients send only the call id, so
    // find the call among earlier assistant messages (the last match wins, as in Ollama's own
    // OpenAI layer).
    let tool_name = if message.role == Role::Tool {
        message.name.or_else(|| {
            let id = message.tool_call_id.as_deref()?;
            earlier
                .iter()
                .rev()
                .filter_map(|m| m.tool_calls.as_ref())
                .flatten()
                .find(|call| call.id.as_deref() == Some(id))
                .map(|call| call.function.name.clone())
        })
    } else {
        None
    };

    Ok(ollama::Message {
        role: role.into(),
        content,
        images: (!images.is_empty()).then_some(images),
        thinking: None,
        tool_calls,
        tool_name,
        tool_call_id: if message.role == Role::Tool {
            message.tool_call_id
        } else {
            None
        },
    })
}

/// Decodes a `data:image/...;base64,` URI into the padded standard base64 Ollama expects,
/// checking that the bytes really are an image.
pub(crate) fn decode_data_uri(url: &str, param: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::BadRequest {
        message: format!("The image at {param} is not usable: {why}."),
        param: Some(param.to_owned()),
        code: Some("invalid_image"),
    };
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| bad("not a data: URI"))?;
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| bad("a data: URI needs a comma before its payload"))?;
    let (mime, encoding) = meta.split_once(';').unwrap_or((meta, ""));
    if encoding != "base64" {
        return Err(bad("only base64 data: URIs are supported"));
    }
    if !(mime.is_empty() || mime.starts_with("image/")) {
        return Err(bad("the data: URI's type is not an image type"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| bad("its base64 payload does not decode"))?;
    if image_kind(&bytes).is_none() {
        return Err(bad("its bytes are not a PNG, JPEG, WebP or GIF image"));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Recognises an image by its first bytes, whatever the sender claimed.
pub(crate) fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

/// Maps Ollama's `done_reason` to OpenAI's `finish_reason`.
pub fn finish_reason(done_reason: Option<&str>, made_tool_calls: bool) -> &'static str {
    match done_reason {
        Some("length") => "length",
        _ if made_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Converts Ollama's tool calls (arguments as an object) to OpenAI's (arguments as a JSON
/// string), giving calls without an id one of ours.
pub fn tool_calls_to_openai(
    calls: &[ollama::ToolCall],
    id_seed: &str,
    first_index: usize,
) -> Vec<crate::openai::ResponseToolCall> {
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let position = first_index + i;
            crate::openai::ResponseToolCall {
                index: u32::try_from(position).ok(),
                id: call
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("call_{id_seed}_{position}")),
                kind: "function",
                function: crate::openai::FunctionCall {
                    name: call.function.name.clone(),
                    arguments: match &call.function.arguments {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
