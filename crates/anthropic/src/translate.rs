//! The Messages API request translated into Ollama's `/api/chat` request.

use aiproxy_ollama as ollama;
use serde_json::{Map, Value};

use crate::error::InvalidRequest;
use crate::request::{
    ContentBlock, ImageSource, MessageContent, MessagesRequest, OutputConfig, Role, ThinkingConfig,
    Tool, ToolChoice,
};

/// An image given by URL, to be fetched (under the caller's SSRF rules) before the request
/// goes to Ollama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingImage {
    /// Index into the Ollama request's `messages`.
    pub message: usize,
    /// Index into that message's `images`, which holds an empty placeholder until fetched.
    pub image: usize,
    /// The URL to fetch.
    pub url: String,
    /// The block's path in the request, for error messages (`messages.1.content.2`).
    pub field: String,
}

/// The Ollama request, plus what the HTTP layer still has to do for it.
#[derive(Debug)]
pub struct TranslatedMessages {
    /// What to send to `/api/chat` (`stream` is set by the client).
    pub request: ollama::ChatRequest,
    /// Images given by URL, to fetch into `request.messages[m].images[i]`.
    pub pending_images: Vec<PendingImage>,
    /// Whether the client asked for a stream of events.
    pub stream: bool,
    /// The client's `max_tokens` (at least 1).
    pub max_tokens: u64,
}

impl TranslatedMessages {
    /// Bounds the completion at `budget` tokens (Ollama's `num_predict`), whatever the client
    /// asked for.
    pub fn limit_completion(&mut self, budget: u64) {
        self.request.set_num_predict(budget);
    }
}

/// Translates a Messages API request into Ollama's native chat request; `max_tokens` becomes
/// `num_predict`, which the HTTP layer replaces with the budget admission grants.
///
/// Text blocks are joined by newlines; a tool result becomes a `tool` message placed before
/// the rest of its user turn and named after the call it answers; `thinking` blocks become
/// the assistant's `thinking`; redacted thinking, documents and server-tool blocks are
/// dropped, as Ollama's own layer drops them.
pub fn messages_request_to_ollama(
    request: MessagesRequest,
) -> Result<TranslatedMessages, InvalidRequest> {
    if request.model.trim().is_empty() {
        return Err(InvalidRequest::new("model", "Field required"));
    }
    let max_tokens = match request.max_tokens {
        None => return Err(InvalidRequest::new("max_tokens", "Field required")),
        Some(n) if n >= 1 => u64::try_from(n).unwrap_or(u64::MAX),
        Some(_) => {
            return Err(InvalidRequest::new("max_tokens", "must be at least 1"));
        }
    };
    if request.messages.is_empty() {
        return Err(InvalidRequest::new(
            "messages",
            "at least one message is required",
        ));
    }

    let mut options = Map::new();
    options.insert("num_predict".into(), Value::from(max_tokens));
    set_number(&mut options, "temperature", request.temperature, 0.0, 1.0)?;
    set_number(&mut options, "top_p", request.top_p, 0.0, 1.0)?;
    if let Some(top_k) = request.top_k {
        if top_k < 0 {
            return Err(InvalidRequest::new("top_k", "must be 0 or more"));
        }
        options.insert("top_k".into(), Value::from(top_k));
    }
    if let Some(stops) = request.stop_sequences.filter(|s| !s.is_empty()) {
        options.insert("stop".into(), Value::from(stops));
    }

    let tools = select_tools(request.tools, request.tool_choice)?;
    let think = think(request.thinking.as_ref(), request.output_config.as_ref())?;
    let format = match request.output_config.and_then(|c| c.format) {
        None | Some(Value::Null) => None,
        Some(format) => match (
            format.get("type").and_then(Value::as_str),
            format.get("schema"),
        ) {
            (Some("json_schema"), Some(schema @ Value::Object(_))) => Some(schema.clone()),
            _ => {
                return Err(InvalidRequest::new(
                    "output_config.format",
                    "must be {\"type\":\"json_schema\",\"schema\":{…}} with an object schema",
                ));
            }
        },
    };

    let mut translator = Translator::default();
    if let Some(system) = request.system {
        let text = text_only(system);
        if !text.is_empty() {
            translator.messages.push(ollama::Message {
                role: "system".into(),
                content: text,
                ..ollama::Message::default()
            });
        }
    }
    for (index, message) in request.messages.into_iter().enumerate() {
        let field = format!("messages.{index}.content");
        match message.role {
            Role::System => {
                let content = text_only(message.content);
                translator.messages.push(ollama::Message {
                    role: "system".into(),
                    content,
                    ..ollama::Message::default()
                });
            }
            Role::User => translator.user(message.content, &field)?,
            Role::Assistant => translator.assistant(message.content, &field)?,
        }
    }

    Ok(TranslatedMessages {
        request: ollama::ChatRequest {
            model: request.model,
            messages: translator.messages,
            tools,
            format,
            options: Some(options),
            stream: None,
            keep_alive: None,
            think,
        },
        pending_images: translator.pending_images,
        stream: request.stream.unwrap_or(false),
        max_tokens,
    })
}

/// Checks `value` against `min..=max` and sets it as the option `name`.
fn set_number(
    options: &mut Map<String, Value>,
    name: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<(), InvalidRequest> {
    if let Some(v) = value {
        if !(min..=max).contains(&v) {
            return Err(InvalidRequest::new(
                name,
                format!("must be between {min} and {max}"),
            ));
        }
        options.insert(name.into(), Value::from(v));
    }
    Ok(())
}

/// The custom tools in Ollama's shape, narrowed by `tool_choice`: `none` sends none, `tool`
/// only the named one (the closest Ollama comes to forcing it), `auto` and `any` all.
fn select_tools(
    tools: Option<Vec<Tool>>,
    choice: Option<ToolChoice>,
) -> Result<Option<Vec<Value>>, InvalidRequest> {
    let Some(tools) = tools.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let only = match choice {
        None => None,
        Some(choice) => match (choice.kind.as_str(), choice.name) {
            ("auto" | "any", _) => None,
            ("none", _) => return Ok(None),
            ("tool", Some(name)) => Some(name),
            ("tool", None) => {
                return Err(InvalidRequest::new(
                    "tool_choice.name",
                    "Field required for a `tool` choice",
                ));
            }
            (other, _) => {
                return Err(InvalidRequest::new(
                    "tool_choice.type",
                    format!("`{other}` is not one of auto, any, tool, none"),
                ));
            }
        },
    };
    let mut out = Vec::with_capacity(tools.len());
    for (index, tool) in tools.into_iter().enumerate() {
        let field = format!("tools.{index}");
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            return Err(InvalidRequest::new(
                field,
                format!(
                    "server tools (`{kind}`) are not available through this proxy; define custom tools with an input_schema"
                ),
            ));
        }
        if tool.name.trim().is_empty() {
            return Err(InvalidRequest::new(
                format!("{field}.name"),
                "Field required",
            ));
        }
        let schema = match tool.input_schema {
            Some(schema @ Value::Object(_)) => schema,
            _ => {
                return Err(InvalidRequest::new(
                    format!("{field}.input_schema"),
                    "must be a JSON schema object",
                ));
            }
        };
        if only.as_deref().is_some_and(|name| name != tool.name) {
            continue;
        }
        let mut function = Map::new();
        function.insert("name".into(), Value::from(tool.name));
        if let Some(description) = tool.description {
            function.insert("description".into(), Value::from(description));
        }
        function.insert("parameters".into(), schema);
        let mut ollama_tool = Map::new();
        ollama_tool.insert("type".into(), Value::from("function"));
        ollama_tool.insert("function".into(), Value::Object(function));
        out.push(Value::Object(ollama_tool));
    }
    if let Some(name) = only
        && out.is_empty()
    {
        return Err(InvalidRequest::new(
            "tool_choice.name",
            format!("`{name}` is not among `tools`"),
        ));
    }
    Ok(Some(out))
}

/// Ollama's `think`: `thinking` enabled or disabled turns it on or off (`adaptive` leaves the
/// model's default); without `thinking`, `output_config.effort` gives a level (`xhigh` and
/// `max` are `high`, the highest every Ollama that takes levels knows).
fn think(
    thinking: Option<&ThinkingConfig>,
    output: Option<&OutputConfig>,
) -> Result<Option<Value>, InvalidRequest> {
    if let Some(thinking) = thinking {
        return match thinking.kind.as_str() {
            "enabled" => Ok(Some(Value::from(true))),
            "disabled" => Ok(Some(Value::from(false))),
            "adaptive" => Ok(None),
            other => Err(InvalidRequest::new(
                "thinking.type",
                format!("`{other}` is not one of enabled, disabled, adaptive"),
            )),
        };
    }
    match output.and_then(|o| o.effort.as_deref()) {
        None => Ok(None),
        Some(effort @ ("low" | "medium" | "high")) => Ok(Some(Value::from(effort))),
        Some("xhigh" | "max") => Ok(Some(Value::from("high"))),
        Some(other) => Err(InvalidRequest::new(
            "output_config.effort",
            format!("`{other}` is not one of low, medium, high, xhigh, max"),
        )),
    }
}

/// Turns messages into Ollama messages, one after the other.
#[derive(Default)]
struct Translator {
    messages: Vec<ollama::Message>,
    pending_images: Vec<PendingImage>,
}

impl Translator {
    /// A user turn: its tool results first, as `tool` messages, then its text and images.
    fn user(&mut self, content: MessageContent, field: &str) -> Result<(), InvalidRequest> {
        let blocks = match content {
            MessageContent::Text(text) => {
                self.messages.push(ollama::Message {
                    role: "user".into(),
                    content: text,
                    ..ollama::Message::default()
                });
                return Ok(());
            }
            MessageContent::Blocks(blocks) => blocks,
        };
        let mut text = String::new();
        let mut images = Vec::new();
        let mut tool_results = 0;
        for (index, block) in blocks.into_iter().enumerate() {
            let field = format!("{field}.{index}");
            match block {
                ContentBlock::Text { text: part } => push_text(&mut text, &part),
                ContentBlock::Image { source } => images.push(image(source, &field)?),
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    self.tool_result(tool_use_id, content, is_error, &field)?;
                    tool_results += 1;
                }
                ContentBlock::ToolUse { .. } => {
                    return Err(InvalidRequest::new(
                        field,
                        "tool_use blocks belong in assistant messages",
                    ));
                }
                ContentBlock::Thinking { .. }
                | ContentBlock::RedactedThinking {}
                | ContentBlock::Other => {}
            }
        }
        if !text.is_empty() || !images.is_empty() || tool_results == 0 {
            let message = ollama::Message {
                role: "user".into(),
                content: text,
                ..ollama::Message::default()
            };
            self.push_with_images(message, images);
        }
        Ok(())
    }

    /// A `tool` message for one tool result, named after the call it answers.
    fn tool_result(
        &mut self,
        tool_use_id: String,
        content: Option<MessageContent>,
        is_error: Option<bool>,
        field: &str,
    ) -> Result<(), InvalidRequest> {
        let mut text = String::new();
        let mut images = Vec::new();
        match content {
            None => {}
            Some(MessageContent::Text(part)) => text = part,
            Some(MessageContent::Blocks(blocks)) => {
                for (index, block) in blocks.into_iter().enumerate() {
                    let field = format!("{field}.content.{index}");
                    match block {
                        ContentBlock::Text { text: part } => push_text(&mut text, &part),
                        ContentBlock::Image { source } => images.push(image(source, &field)?),
                        ContentBlock::Other => {}
                        _ => {
                            return Err(InvalidRequest::new(
                                field,
                                "a tool result holds only text and image blocks",
                            ));
                        }
                    }
                }
            }
        }
        // Ollama has no error flag on a tool message; the model should still know.
        if is_error == Some(true) {
            text.insert_str(0, "Error: ");
        }
        let tool_name = self
            .messages
            .iter()
            .rev()
            .filter_map(|m| m.tool_calls.as_ref())
            .flatten()
            .find(|call| call.id.as_deref() == Some(tool_use_id.as_str()))
            .map(|call| call.function.name.clone());
        let message = ollama::Message {
            role: "tool".into(),
            content: text,
            tool_name,
            tool_call_id: Some(tool_use_id),
            ..ollama::Message::default()
        };
        self.push_with_images(message, images);
        Ok(())
    }

    /// An assistant turn: text, reasoning and tool calls.
    fn assistant(&mut self, content: MessageContent, field: &str) -> Result<(), InvalidRequest> {
        let mut message = ollama::Message {
            role: "assistant".into(),
            ..ollama::Message::default()
        };
        let blocks = match content {
            MessageContent::Text(text) => {
                message.content = text;
                self.messages.push(message);
                return Ok(());
            }
            MessageContent::Blocks(blocks) => blocks,
        };
        let mut calls = Vec::new();
        for (index, block) in blocks.into_iter().enumerate() {
            let field = format!("{field}.{index}");
            match block {
                ContentBlock::Text { text } => push_text(&mut message.content, &text),
                ContentBlock::Thinking { thinking } => {
                    push_text(message.thinking.get_or_insert_with(String::new), &thinking);
                }
                ContentBlock::ToolUse { id, name, input } => calls.push(ollama::ToolCall {
                    id: Some(id),
                    function: ollama::ToolCallFunction {
                        index: u32::try_from(calls.len()).ok(),
                        name,
                        arguments: if input.is_null() {
                            Value::Object(Map::new())
                        } else {
                            input
                        },
                    },
                }),
                ContentBlock::Image { .. } | ContentBlock::ToolResult { .. } => {
                    return Err(InvalidRequest::new(
                        field,
                        "assistant messages hold text, thinking and tool_use blocks only",
                    ));
                }
                ContentBlock::RedactedThinking {} | ContentBlock::Other => {}
            }
        }
        message.tool_calls = (!calls.is_empty()).then_some(calls);
        self.messages.push(message);
        Ok(())
    }

    /// Pushes `message` with its images: base64 ones in place, URL ones as empty placeholders
    /// left pending.
    fn push_with_images(&mut self, mut message: ollama::Message, images: Vec<Image>) {
        if !images.is_empty() {
            let mut list = Vec::with_capacity(images.len());
            for image in images {
                match image {
                    Image::Inline(data) => list.push(data),
                    Image::Url { url, field } => {
                        self.pending_images.push(PendingImage {
                            message: self.messages.len(),
                            image: list.len(),
                            url,
                            field,
                        });
                        list.push(String::new());
                    }
                }
            }
            message.images = Some(list);
        }
        self.messages.push(message);
    }
}

/// An image of a message, before it is placed.
enum Image {
    /// Checked base64, ready for Ollama.
    Inline(String),
    /// A URL to fetch, and the block's path.
    Url { url: String, field: String },
}

/// An image block's source, its base64 checked.
fn image(source: ImageSource, field: &str) -> Result<Image, InvalidRequest> {
    match source {
        ImageSource::Base64 { data, .. } => ollama::image_from_base64(&data)
            .map(Image::Inline)
            .map_err(|why| InvalidRequest::new(format!("{field}.source.data"), why.to_string())),
        ImageSource::Url { url } if url.starts_with("https://") || url.starts_with("http://") => {
            Ok(Image::Url {
                url,
                field: field.to_owned(),
            })
        }
        ImageSource::Url { .. } => Err(InvalidRequest::new(
            format!("{field}.source.url"),
            "must be an http(s) URL",
        )),
        ImageSource::Other => Err(InvalidRequest::new(
            format!("{field}.source.type"),
            "only base64 and url image sources are supported (this server stores no files)",
        )),
    }
}

/// The text of `content` (text blocks joined by newlines; other blocks ignored).
fn text_only(content: MessageContent) -> String {
    match content {
        MessageContent::Text(text) => text,
        MessageContent::Blocks(blocks) => {
            let mut text = String::new();
            for block in blocks {
                if let ContentBlock::Text { text: part } = block {
                    push_text(&mut text, &part);
                }
            }
            text
        }
    }
}

/// Appends `part` to `text`, a newline between parts.
fn push_text(text: &mut String, part: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(part);
}

#[cfg(test)]
mod tests;
