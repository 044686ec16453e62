//! The Responses API request translated into Ollama's `/api/chat` request.

use aiproxy_ollama as ollama;
use serde_json::{Map, Value};

use crate::chat_request::Role;
use crate::error::InvalidRequest;
use crate::images::{PendingImage, decode_data_uri};
use crate::response_object::ResponseSettings;
use crate::responses_request::{
    FunctionCallInput, FunctionCallOutputInput, InputContent, InputItem, InputPart, ReasoningInput,
    ResponsesInput, ResponsesRequest, TextConfig, TextFormat,
};
use crate::sampling::{Sampling, think_for_effort};
use crate::tools::{ToolChoice, select_tools};

/// The Ollama request, plus what the HTTP layer still has to do for it and what the answer
/// repeats.
#[derive(Debug)]
pub struct TranslatedResponses {
    /// What to send to `/api/chat` (`stream` is set by the client).
    pub request: ollama::ChatRequest,
    /// Images given by URL, to fetch into `request.messages[m].images[i]`.
    pub pending_images: Vec<PendingImage>,
    /// Whether the client asked for a stream of events.
    pub stream: bool,
    /// The completion budget the client asked for (`max_output_tokens`).
    pub max_output_tokens: Option<u64>,
    /// What the `response` object repeats from the request.
    pub settings: ResponseSettings,
}

impl TranslatedResponses {
    /// Bounds the completion at `budget` tokens (Ollama's `num_predict`), whatever the client
    /// asked for.
    pub fn limit_completion(&mut self, budget: u64) {
        self.request.set_num_predict(budget);
    }
}

/// Translates a Responses API request into Ollama's native chat request.
///
/// Refused with the field at fault: `previous_response_id` and `conversation` (the proxy keeps
/// no state: the whole conversation goes in `input`), `background`, `max_output_tokens` below
/// 1, tools other than functions, input items and parts Ollama cannot take.
pub fn responses_request_to_ollama(
    request: ResponsesRequest,
) -> Result<TranslatedResponses, InvalidRequest> {
    if let Some(id) = &request.previous_response_id {
        return Err(InvalidRequest {
            message: format!(
                "Previous response with id '{id}' not found: this server keeps no responses. Send the whole conversation in `input` instead."
            ),
            param: Some("previous_response_id".into()),
            code: Some("previous_response_not_found"),
        });
    }
    if request.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(InvalidRequest {
            message: "`conversation` is not supported: this server keeps no conversations. Send the whole conversation in `input` instead.".into(),
            param: Some("conversation".into()),
            code: Some("unsupported_parameter"),
        });
    }
    if request.background == Some(true) {
        return Err(InvalidRequest {
            message: "Background responses are not supported: this server keeps no responses to poll. Leave out `background`.".into(),
            param: Some("background".into()),
            code: Some("unsupported_parameter"),
        });
    }
    if request.model.trim().is_empty() {
        return Err(InvalidRequest::new(
            "`model` must name an Ollama model.",
            "model",
        ));
    }
    if request.top_logprobs.is_some_and(|n| n > 0) {
        return Err(InvalidRequest::new(
            "Log probabilities are not available through this proxy; remove `top_logprobs`.",
            "top_logprobs",
        ));
    }
    // OpenAI's own minimum is 16, a rule of its platform; Ollama stops after any positive
    // count, and an admission budget may be smaller than 16 anyway.
    let max_output_tokens = match request.max_output_tokens {
        None => None,
        Some(n) if n >= 1 => u64::try_from(n).ok(),
        Some(_) => {
            return Err(InvalidRequest::new(
                "`max_output_tokens` must be at least 1.",
                "max_output_tokens",
            ));
        }
    };

    let mut options = Map::new();
    if let Some(extension) = request.ollama.as_ref().and_then(|e| e.options.as_ref()) {
        options.extend(extension.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Sampling {
        max_tokens: max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        ..Sampling::default()
    }
    .write_options(&mut options)?;

    let text = request.text.unwrap_or_default();
    let format = match &text.format {
        None | Some(TextFormat::Text) => None,
        Some(TextFormat::JsonObject) => Some(Value::from("json")),
        Some(TextFormat::JsonSchema { schema, .. }) => match schema {
            Some(schema @ Value::Object(_)) => Some(schema.clone()),
            _ => {
                return Err(InvalidRequest::new(
                    "`text.format.schema` must be a JSON schema object.",
                    "text.format.schema",
                ));
            }
        },
    };

    let reasoning = request.reasoning.unwrap_or_default();
    let think = match (&request.ollama, reasoning.effort.as_deref()) {
        (Some(ext), _) if ext.think.is_some() => ext.think.clone(),
        (_, None) => None,
        (_, Some(effort)) => Some(think_for_effort(effort, "reasoning.effort")?),
    };

    let tool_list = request.tools.unwrap_or_default();
    let ollama_tools = tool_list
        .iter()
        .enumerate()
        .map(|(i, tool)| function_tool(tool, i))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = select_tools(ollama_tools, tool_choice(request.tool_choice.as_ref())?)?;

    let mut translator = InputTranslator::default();
    if let Some(instructions) = &request.instructions {
        translator.messages.push(ollama::Message {
            role: "system".into(),
            content: instructions.clone(),
            ..ollama::Message::default()
        });
    }
    match request.input {
        None => {
            return Err(InvalidRequest::new(
                "`input` is required: a string or a list of input items.",
                "input",
            ));
        }
        Some(ResponsesInput::Text(text)) => translator.messages.push(ollama::Message {
            role: "user".into(),
            content: text,
            ..ollama::Message::default()
        }),
        Some(ResponsesInput::Items(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                translator.item(item, index)?;
            }
        }
    }
    if translator.messages.is_empty() {
        return Err(InvalidRequest::new(
            "`input` must hold at least one item.",
            "input",
        ));
    }

    let settings = ResponseSettings {
        instructions: request.instructions,
        max_output_tokens,
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        previous_response_id: None,
        reasoning,
        store: false,
        temperature: request.temperature,
        text: TextConfig {
            format: Some(text.format.unwrap_or(TextFormat::Text)),
        },
        tool_choice: request.tool_choice.unwrap_or_else(|| Value::from("auto")),
        tools: tool_list,
        top_p: request.top_p,
        truncation: request.truncation.unwrap_or_else(|| "disabled".into()),
        user: request.user,
        metadata: request.metadata.unwrap_or_default(),
    };
    Ok(TranslatedResponses {
        request: ollama::ChatRequest {
            model: request.model,
            messages: translator.messages,
            tools,
            format,
            options: (!options.is_empty()).then_some(options),
            stream: None,
            keep_alive: request.ollama.and_then(|e| e.keep_alive),
            think,
        },
        pending_images: translator.pending_images,
        stream: request.stream.unwrap_or(false),
        max_output_tokens,
        settings,
    })
}

/// A Responses function tool (`{"type":"function","name","description","parameters"}`, flat)
/// in Ollama's shape; other tool types are refused.
fn function_tool(tool: &Value, index: usize) -> Result<Value, InvalidRequest> {
    let param = format!("tools[{index}]");
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(other) => {
            return Err(InvalidRequest::new(
                format!(
                    "Tools of type `{other}` are not available through this proxy; only `function` tools are."
                ),
                param,
            ));
        }
        None => {
            return Err(InvalidRequest::new(
                "Each tool needs a `type`; only `function` tools are available.",
                param,
            ));
        }
    }
    let Some(name) = tool.get("name").and_then(Value::as_str) else {
        return Err(InvalidRequest::new(
            "A function tool needs a `name`.",
            format!("{param}.name"),
        ));
    };
    let mut function = Map::new();
    function.insert("name".into(), Value::from(name));
    if let Some(description) = tool.get("description").filter(|d| !d.is_null()) {
        function.insert("description".into(), description.clone());
    }
    if let Some(parameters) = tool.get("parameters").filter(|p| !p.is_null()) {
        function.insert("parameters".into(), parameters.clone());
    }
    let mut ollama_tool = Map::new();
    ollama_tool.insert("type".into(), Value::from("function"));
    ollama_tool.insert("function".into(), Value::Object(function));
    Ok(Value::Object(ollama_tool))
}

/// Reads the Responses `tool_choice`: a string, or `{"type":"function","name":…}`.
fn tool_choice(choice: Option<&Value>) -> Result<ToolChoice, InvalidRequest> {
    let invalid = || {
        InvalidRequest::new(
            "tool_choice must be none, auto, required or {\"type\":\"function\",\"name\":…}.",
            "tool_choice",
        )
    };
    match choice {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(invalid()),
        },
        Some(choice) if choice.get("type").and_then(Value::as_str) == Some("function") => choice
            .get("name")
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Function(name.to_owned()))
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

/// Turns input items into Ollama messages, one item after the other.
#[derive(Default)]
struct InputTranslator {
    messages: Vec<ollama::Message>,
    pending_images: Vec<PendingImage>,
    /// Reasoning sent back, waiting for the assistant message it belongs to.
    thinking: Option<String>,
}

impl InputTranslator {
    fn item(&mut self, item: InputItem, index: usize) -> Result<(), InvalidRequest> {
        match item {
            InputItem::Message(message) => {
                let role = match message.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    // Many model templates know no `developer` role.
                    Role::System | Role::Developer => "system",
                    Role::Tool => {
                        return Err(InvalidRequest::new(
                            "A message's role is user, assistant, system or developer; send a tool's result as a `function_call_output` item.",
                            format!("input[{index}].role"),
                        ));
                    }
                };
                let param = format!("input[{index}].content");
                let mut translated = ollama::Message {
                    role: role.into(),
                    ..ollama::Message::default()
                };
                self.content(&mut translated, message.content, &param, role == "user")?;
                if role == "assistant" {
                    translated.thinking = self.thinking.take();
                }
                self.messages.push(translated);
            }
            InputItem::FunctionCall(call) => self.function_call(call, index)?,
            InputItem::FunctionCallOutput(output) => self.function_call_output(output, index)?,
            InputItem::Reasoning(reasoning) => self.reasoning(reasoning),
            InputItem::Unsupported(kind) => {
                return Err(InvalidRequest::new(
                    format!(
                        "Input items of type `{kind}` are not supported: this server keeps no state and runs no built-in tools."
                    ),
                    format!("input[{index}]"),
                ));
            }
        }
        Ok(())
    }

    /// Fills `message`'s text (parts joined by newlines) and images from `content`.
    fn content(
        &mut self,
        message: &mut ollama::Message,
        content: InputContent,
        param: &str,
        images_allowed: bool,
    ) -> Result<(), InvalidRequest> {
        let parts = match content {
            InputContent::Text(text) => {
                message.content = text;
                return Ok(());
            }
            InputContent::Parts(parts) => parts,
        };
        let mut images = Vec::new();
        for (part_index, part) in parts.into_iter().enumerate() {
            let param = format!("{param}[{part_index}]");
            let text = match part {
                InputPart::InputText { text } | InputPart::OutputText { text } => text,
                InputPart::Refusal { refusal } => refusal,
                InputPart::InputImage { image_url, file_id } => {
                    if !images_allowed {
                        return Err(InvalidRequest::new(
                            "Images are allowed only in user messages and function call outputs.",
                            param,
                        ));
                    }
                    match (image_url, file_id) {
                        (Some(url), _) if url.starts_with("data:") => {
                            images.push(decode_data_uri(&url, &param)?);
                        }
                        (Some(url), _)
                            if url.starts_with("http://") || url.starts_with("https://") =>
                        {
                            self.pending_images.push(PendingImage {
                                // The message is pushed right after its content is read.
                                message: self.messages.len(),
                                image: images.len(),
                                url,
                                param,
                            });
                            images.push(String::new());
                        }
                        (None, Some(_)) => {
                            return Err(InvalidRequest::new(
                                "Images by `file_id` are not supported: this server stores no files. Send the image as a data: URI or an http(s) URL in `image_url`.",
                                param,
                            ));
                        }
                        _ => {
                            return Err(InvalidRequest::new(
                                "An image's `image_url` must be a data: URI or an http(s) URL.",
                                param,
                            ));
                        }
                    }
                    continue;
                }
                InputPart::InputFile {} => {
                    return Err(InvalidRequest::new(
                        "File inputs are not supported by Ollama; send the text itself as `input_text`.",
                        param,
                    ));
                }
                InputPart::Unsupported => {
                    return Err(InvalidRequest::new(
                        "Unknown content part type; use input_text, output_text or input_image.",
                        param,
                    ));
                }
            };
            if !message.content.is_empty() {
                message.content.push('\n');
            }
            message.content.push_str(&text);
        }
        message.images = (!images.is_empty()).then_some(images);
        Ok(())
    }

    /// Adds the call to the assistant message just before it, or to a new one.
    fn function_call(
        &mut self,
        call: FunctionCallInput,
        index: usize,
    ) -> Result<(), InvalidRequest> {
        let arguments = if call.arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(&call.arguments).map_err(|_| {
                InvalidRequest::new(
                    "Function call arguments must be a JSON-encoded object.",
                    format!("input[{index}].arguments"),
                )
            })?
        };
        let needs_message = self
            .messages
            .last()
            .is_none_or(|m| m.role != "assistant" || self.thinking.is_some());
        if needs_message {
            self.messages.push(ollama::Message {
                role: "assistant".into(),
                thinking: self.thinking.take(),
                ..ollama::Message::default()
            });
        }
        if let Some(message) = self.messages.last_mut() {
            let calls = message.tool_calls.get_or_insert_with(Vec::new);
            calls.push(ollama::ToolCall {
                id: Some(call.call_id),
                function: ollama::ToolCallFunction {
                    index: u32::try_from(calls.len()).ok(),
                    name: call.name,
                    arguments,
                },
            });
        }
        Ok(())
    }

    /// A `tool` message, named after the earlier call it answers (Ollama's templates use the
    /// name; the Responses API sends only the call id).
    fn function_call_output(
        &mut self,
        output: FunctionCallOutputInput,
        index: usize,
    ) -> Result<(), InvalidRequest> {
        let tool_name = self
            .messages
            .iter()
            .rev()
            .filter_map(|m| m.tool_calls.as_ref())
            .flatten()
            .find(|call| call.id.as_deref() == Some(output.call_id.as_str()))
            .map(|call| call.function.name.clone());
        let mut message = ollama::Message {
            role: "tool".into(),
            tool_name,
            tool_call_id: Some(output.call_id),
            ..ollama::Message::default()
        };
        let param = format!("input[{index}].output");
        self.content(&mut message, output.output, &param, true)?;
        self.messages.push(message);
        Ok(())
    }

    /// Keeps the reasoning for the next assistant message: its plain text as this proxy
    /// hands it out (`encrypted_content`), else its summary or content.
    fn reasoning(&mut self, reasoning: ReasoningInput) {
        let text = reasoning.encrypted_content.unwrap_or_else(|| {
            let parts = reasoning
                .content
                .filter(|c| !c.is_empty())
                .or(reasoning.summary)
                .unwrap_or_default();
            parts
                .into_iter()
                .map(|part| part.text)
                .collect::<Vec<_>>()
                .join("\n")
        });
        if !text.is_empty() {
            match &mut self.thinking {
                Some(earlier) => {
                    earlier.push('\n');
                    earlier.push_str(&text);
                }
                None => self.thinking = Some(text),
            }
        }
    }
}

#[cfg(test)]
mod tests;
