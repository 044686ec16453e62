//! The chat completion request translated into Ollama's `/api/chat` request.

use aiproxy_ollama as ollama;
use serde_json::{Map, Value};

use crate::chat_request::{
    ChatCompletionRequest, ChatMessage, ContentPart, MessageContent, ResponseFormat, Role,
};
use crate::error::InvalidRequest;
use crate::images::{PendingImage, decode_data_uri};
use crate::sampling::{Sampling, think_for_effort};
use crate::sse::StreamOptions;
use crate::tools::{ToolChoice, select_tools};

/// The Ollama request, plus what the HTTP layer still has to do for it.
#[derive(Debug)]
pub struct TranslatedChat {
    /// What to send to `/api/chat` (`stream` is set by the client).
    pub request: ollama::ChatRequest,
    /// Images given by URL, to fetch into `request.messages[m].images[i]`.
    pub pending_images: Vec<PendingImage>,
    /// Whether the client asked for a stream of chunks.
    pub stream: bool,
    /// Whether the client asked for a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// The completion budget the client asked for: `max_completion_tokens`, else
    /// `max_tokens`.
    pub max_tokens: Option<u64>,
}

impl TranslatedChat {
    /// Bounds the completion at `budget` tokens (Ollama's `num_predict`), whatever the client
    /// asked for.
    pub fn limit_completion(&mut self, budget: u64) {
        self.request.set_num_predict(budget);
    }
}

/// Translates an OpenAI chat request into Ollama's native form.
///
/// The client's own completion budget becomes Ollama's `num_predict`; the HTTP layer
/// replaces it with what admission granted through [`TranslatedChat::limit_completion`].
pub fn chat_request_to_ollama(
    request: ChatCompletionRequest,
) -> Result<TranslatedChat, InvalidRequest> {
    if request.model.trim().is_empty() {
        return Err(InvalidRequest::new(
            "`model` must name an Ollama model.",
            "model",
        ));
    }
    if request.messages.is_empty() {
        return Err(InvalidRequest::new(
            "`messages` must contain at least one message.",
            "messages",
        ));
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(InvalidRequest::new(
            "Ollama produces one choice per request; `n` must be 1.",
            "n",
        ));
    }
    if request.logprobs == Some(true) || request.top_logprobs.is_some_and(|n| n > 0) {
        return Err(InvalidRequest::new(
            "Log probabilities are not available through this proxy; remove `logprobs` and `top_logprobs`.",
            "logprobs",
        ));
    }

    let mut options = Map::new();
    if let Some(extension) = request.ollama.as_ref().and_then(|e| e.options.as_ref()) {
        options.extend(extension.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    Sampling {
        max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        seed: request.seed,
        stop: request.stop,
    }
    .write_options(&mut options)?;

    let format = match request.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Value::from("json")),
        Some(ResponseFormat::JsonSchema { json_schema }) => match json_schema.schema {
            Some(schema @ Value::Object(_)) => Some(schema),
            _ => {
                return Err(InvalidRequest::new(
                    "`response_format.json_schema.schema` must be a JSON schema object.",
                    "response_format.json_schema.schema",
                ));
            }
        },
    };

    let tools = select_chat_tools(request.tools, request.tool_choice)?;
    let think = match (&request.ollama, request.reasoning_effort.as_deref()) {
        (Some(ext), _) if ext.think.is_some() => ext.think.clone(),
        (_, None) => None,
        (_, Some(effort)) => Some(think_for_effort(effort, "reasoning_effort")?),
    };

    let mut messages = Vec::with_capacity(request.messages.len());
    let mut pending_images = Vec::new();
    for (index, message) in request.messages.into_iter().enumerate() {
        let translated = translate_message(message, index, &messages, &mut pending_images)?;
        messages.push(translated);
    }

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
        stream: request.stream.unwrap_or(false),
        include_usage: StreamOptions::include_usage(request.stream_options.as_ref()),
        max_tokens,
    })
}

/// Checks the chat tools (already Ollama's shape) and reads chat's `tool_choice`: a string, or
/// `{"type":"function","function":{"name":…}}`.
fn select_chat_tools(
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
) -> Result<Option<Vec<Value>>, InvalidRequest> {
    let Some(tools) = tools else {
        return Ok(None);
    };
    for (i, tool) in tools.iter().enumerate() {
        let has_name = tool
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .is_some();
        if !has_name {
            return Err(InvalidRequest::new(
                "Each tool must be {\"type\":\"function\",\"function\":{\"name\":…}}.",
                format!("tools[{i}]"),
            ));
        }
    }
    let choice = match tool_choice {
        None => ToolChoice::Auto,
        Some(Value::String(choice)) => match choice.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(InvalidRequest::new(
                    format!(
                        "Unknown tool_choice `{other}`; use none, auto, required or a function."
                    ),
                    "tool_choice",
                ));
            }
        },
        Some(choice) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    InvalidRequest::new(
                        "tool_choice must be a string or {\"type\":\"function\",\"function\":{\"name\":…}}.",
                        "tool_choice",
                    )
                })?;
            ToolChoice::Function(name.to_owned())
        }
    };
    select_tools(tools, choice)
}

fn translate_message(
    message: ChatMessage,
    index: usize,
    earlier: &[ollama::Message],
    pending_images: &mut Vec<PendingImage>,
) -> Result<ollama::Message, InvalidRequest> {
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
                            return Err(InvalidRequest::new(
                                "Images are allowed only in user messages.",
                                param,
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
                            return Err(InvalidRequest::new(
                                "An image must be a data: URI or an http(s) URL.",
                                param,
                            ));
                        }
                    }
                }
            }
        }
        None if message.tool_calls.is_some() => {}
        None => {
            return Err(InvalidRequest::new(
                "`content` is required unless the assistant message has `tool_calls`.",
                format!("messages[{index}].content"),
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
                        InvalidRequest::new(
                            "Tool call arguments must be a JSON-encoded object.",
                            format!(
                                "messages[{index}].tool_calls[{call_index}].function.arguments"
                            ),
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
            return Err(InvalidRequest::new(
                "Only assistant messages may carry `tool_calls`.",
                format!("messages[{index}].tool_calls"),
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

#[cfg(test)]
mod tests;
