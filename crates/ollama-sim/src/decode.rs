//! Request decoding with the error texts Ollama's Go decoder produces (`encoding/json` type
//! errors, base64 errors, `Options.FromMap`), so clients meet the same 400s and 500s.

use serde_json::{Map, Value};

use crate::gojson::{check_go_base64, go_syntax_error, parse_go_duration};
use crate::registry::KeepAlive;

/// A refused request: HTTP status and the `error` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
}

/// Parses a compatibility-layer body: Ollama's middleware binds it into its own struct, and a
/// blank body fails there with Go's `EOF`.
pub(crate) fn parse_compat_body(body: &[u8]) -> Result<Value, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad_request("EOF"));
    }
    parse_body(body)
}

/// Go's `%T` of a value decoded into `any`.
pub(crate) fn go_any_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Parses a body the way gin's `ShouldBindJSON` does: blank is `missing request body`, only the
/// first JSON value counts (trailing bytes are ignored, as Go's `json.Decoder` does).
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad_request("missing request body"));
    }
    match serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .next()
    {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(Refusal::bad_request(go_syntax_error(body, &error))),
        None => Err(Refusal::bad_request("missing request body")),
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The top-level object, or Go's error for a non-object (`null` decodes to an empty request).
pub(crate) fn top_level<'a>(
    value: &'a Value,
    empty: &'a Map<String, Value>,
    go_type: &str,
) -> Result<&'a Map<String, Value>, Refusal> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(empty),
        other => Err(Refusal::bad_request(format!(
            "json: cannot unmarshal {} into Go value of type {go_type}",
            json_kind(other)
        ))),
    }
}

/// Reads typed fields of one Go struct, naming fields the way Go's type errors do.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    go_struct: &'static str,
    path: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(
        map: &'a Map<String, Value>,
        go_struct: &'static str,
        path: &'static str,
    ) -> Self {
        Self {
            map,
            go_struct,
            path,
        }
    }

    /// The value of `key`, with JSON `null` treated as absent (Go leaves the zero value).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    pub(crate) fn type_error(&self, key: &str, found: &str, go_type: &str) -> Refusal {
        Refusal::bad_request(format!(
            "json: cannot unmarshal {found} into Go struct field {}.{}{key} of type {go_type}",
            self.go_struct, self.path
        ))
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, Refusal> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(self.type_error(key, json_kind(other), "string")),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, Refusal> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(self.type_error(key, json_kind(other), "bool")),
        }
    }

    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, Refusal> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.type_error(key, &format!("number {number}"), "int")),
            Some(other) => Err(self.type_error(key, json_kind(other), "int")),
        }
    }

    /// A JSON number as Go decodes it into a float field (`go_type` `float64` or `float32`).
    pub(crate) fn number(&self, key: &str, go_type: &str) -> Result<Option<f64>, Refusal> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => Ok(number.as_f64()),
            Some(other) => Err(self.type_error(key, json_kind(other), go_type)),
        }
    }

    pub(crate) fn array(&self, key: &str, go_type: &str) -> Result<&'a [Value], Refusal> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.type_error(key, json_kind(other), go_type)),
        }
    }

    pub(crate) fn object(
        &self,
        key: &str,
        go_type: &str,
    ) -> Result<Option<&'a Map<String, Value>>, Refusal> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.type_error(key, json_kind(other), go_type)),
        }
    }

    fn options(&self) -> Result<Option<Map<String, Value>>, Refusal> {
        Ok(self.object("options", "map[string]interface {}")?.cloned())
    }

    /// `images`: base64 strings, checked like Go decodes `[]byte`; returns how many there are.
    fn images(&self) -> Result<usize, Refusal> {
        let images = self.array("images", "[]api.ImageData")?;
        for image in images {
            match image {
                Value::String(text) => check_go_base64(text).map_err(|offset| {
                    Refusal::bad_request(format!("illegal base64 data at input byte {offset}"))
                })?,
                Value::Null => {}
                other => return Err(self.type_error("images", json_kind(other), "api.ImageData")),
            }
        }
        Ok(images.len())
    }

    /// `keep_alive`: seconds as a number or a Go duration string, negative meaning forever.
    fn keep_alive(&self) -> Result<Option<KeepAlive>, Refusal> {
        match self.get("keep_alive") {
            None => Ok(None),
            Some(Value::Number(number)) => Ok(Some(KeepAlive::from_secs_f64(
                number.as_f64().unwrap_or(0.0),
            ))),
            Some(Value::String(text)) => parse_go_duration(text)
                .map(|seconds| Some(KeepAlive::from_secs_f64(seconds)))
                .map_err(Refusal::bad_request),
            Some(other) => {
                let go_type = match other {
                    Value::Bool(_) => "bool",
                    Value::Array(_) => "[]interface {}",
                    _ => "map[string]interface {}",
                };
                Err(Refusal::bad_request(format!(
                    "Unsupported type: '{go_type}'"
                )))
            }
        }
    }

    /// `think`: a bool or `"high"`/`"medium"`/`"low"`/`"max"` (which all mean on).
    fn think(&self) -> Result<Option<bool>, Refusal> {
        const LEVELS: [&str; 4] = ["high", "medium", "low", "max"];
        match self.get("think") {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(Value::String(level)) if LEVELS.contains(&level.as_str()) => Ok(Some(true)),
            Some(Value::String(level)) => Err(Refusal::bad_request(format!(
                "invalid think value: {} (must be \"high\", \"medium\", \"low\", \"max\", true, or false)",
                crate::gojson::go_quote(level)
            ))),
            Some(_) => Err(Refusal::bad_request(
                "think must be a boolean or string (\"high\", \"medium\", \"low\", \"max\", true, or false)",
            )),
        }
    }

    fn top_logprobs(&self) -> Result<(), Refusal> {
        match self.int("top_logprobs")? {
            Some(n) if !(0..=20).contains(&n) => Err(Refusal::bad_request(
                "top_logprobs must be between 0 and 20",
            )),
            _ => Ok(()),
        }
    }

    /// `format` is raw JSON in Go; `null` and `""` both mean "no format".
    fn format(&self) -> Option<Value> {
        self.get("format")
            .filter(|value| value.as_str() != Some(""))
            .cloned()
    }
}

/// One chat message, reduced to what the simulator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatMessage {
    /// Lowercased, as Ollama's `Message.UnmarshalJSON` does.
    pub role: String,
    pub content: String,
    pub images: usize,
}

/// A decoded `/api/chat` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<Value>,
    pub stream: bool,
    pub format: Option<Value>,
    pub options: Option<Map<String, Value>>,
    pub keep_alive: Option<KeepAlive>,
    pub think: Option<bool>,
}

pub(crate) fn chat_request(body: &Value) -> Result<ChatRequest, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "api.ChatRequest")?,
        "ChatRequest",
        "",
    );
    let model = fields.string("model")?;
    let mut messages = Vec::new();
    for item in fields.array("messages", "[]api.Message")? {
        let map = match item {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => return Err(fields.type_error("messages", json_kind(other), "api.Message")),
        };
        let message = Fields::new(map, "Message", "messages.");
        for text_field in ["thinking", "tool_name", "tool_call_id"] {
            message.string(text_field)?;
        }
        message.array("tool_calls", "[]api.ToolCall")?;
        messages.push(ChatMessage {
            role: message.string("role")?.to_lowercase(),
            content: message.string("content")?,
            images: message.images()?,
        });
    }
    let tools = fields.array("tools", "api.Tools")?.to_vec();
    if let Some(bad) = tools
        .iter()
        .find(|tool| !tool.is_object() && !tool.is_null())
    {
        return Err(fields.type_error("tools", json_kind(bad), "api.Tool"));
    }
    for flag in ["truncate", "shift", "logprobs"] {
        fields.bool(flag)?;
    }
    fields.top_logprobs()?;
    Ok(ChatRequest {
        model,
        messages,
        tools,
        stream: fields.bool("stream")?.unwrap_or(true),
        format: fields.format(),
        options: fields.options()?,
        keep_alive: fields.keep_alive()?,
        think: fields.think()?,
    })
}

/// A decoded `/api/generate` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    pub suffix: String,
    pub system: String,
    pub template: String,
    pub context: Vec<i64>,
    pub images: usize,
    pub raw: bool,
    pub stream: bool,
    pub format: Option<Value>,
    pub options: Option<Map<String, Value>>,
    pub keep_alive: Option<KeepAlive>,
    pub think: Option<bool>,
}

pub(crate) fn generate_request(body: &Value) -> Result<GenerateRequest, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "api.GenerateRequest")?,
        "GenerateRequest",
        "",
    );
    let mut context = Vec::new();
    for item in fields.array("context", "[]int")? {
        match item {
            Value::Number(number) if number.is_i64() => context.push(number.as_i64().unwrap_or(0)),
            Value::Number(number) => {
                return Err(fields.type_error("context", &format!("number {number}"), "int"));
            }
            other => return Err(fields.type_error("context", json_kind(other), "int")),
        }
    }
    for flag in ["truncate", "shift", "logprobs"] {
        fields.bool(flag)?;
    }
    fields.top_logprobs()?;
    Ok(GenerateRequest {
        model: fields.string("model")?,
        prompt: fields.string("prompt")?,
        suffix: fields.string("suffix")?,
        system: fields.string("system")?,
        template: fields.string("template")?,
        context,
        images: fields.images()?,
        raw: fields.bool("raw")?.unwrap_or(false),
        stream: fields.bool("stream")?.unwrap_or(true),
        format: fields.format(),
        options: fields.options()?,
        keep_alive: fields.keep_alive()?,
        think: fields.think()?,
    })
}

/// A decoded `/api/embed` request (the `input` shape is checked later, as Ollama does).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EmbedRequest {
    pub model: String,
    pub keep_alive: Option<KeepAlive>,
    pub input: Option<Value>,
    pub dimensions: Option<i64>,
    pub options: Option<Map<String, Value>>,
}

pub(crate) fn embed_request(body: &Value) -> Result<EmbedRequest, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "api.EmbedRequest")?,
        "EmbedRequest",
        "",
    );
    fields.bool("truncate")?;
    Ok(EmbedRequest {
        keep_alive: fields.keep_alive()?,
        model: fields.string("model")?,
        input: fields.get("input").cloned(),
        dimensions: fields.int("dimensions")?,
        options: fields.options()?,
    })
}

/// The inputs of an embed request: a non-empty string, or an array of strings.
pub(crate) fn embed_inputs(input: Option<&Value>) -> Result<Vec<String>, Refusal> {
    let invalid = || Refusal::bad_request("invalid input type");
    match input {
        None => Ok(Vec::new()),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// A decoded legacy `/api/embeddings` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegacyEmbeddingRequest {
    pub model: String,
    pub keep_alive: Option<KeepAlive>,
    pub prompt: String,
    pub options: Option<Map<String, Value>>,
}

pub(crate) fn legacy_embedding_request(body: &Value) -> Result<LegacyEmbeddingRequest, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "api.EmbeddingRequest")?,
        "EmbeddingRequest",
        "",
    );
    Ok(LegacyEmbeddingRequest {
        keep_alive: fields.keep_alive()?,
        model: fields.string("model")?,
        prompt: fields.string("prompt")?,
        options: fields.options()?,
    })
}

/// The model a `/api/show` request names (`model`, or the deprecated `name`).
pub(crate) fn show_request(body: &Value) -> Result<String, Refusal> {
    let empty = Map::new();
    let fields = Fields::new(
        top_level(body, &empty, "api.ShowRequest")?,
        "ShowRequest",
        "",
    );
    fields.bool("verbose")?;
    fields.string("system")?;
    fields.string("template")?;
    fields.options()?;
    let model = fields.string("model")?;
    Ok(if model.is_empty() {
        fields.string("name")?
    } else {
        model
    })
}

/// The options the simulator acts on, after Go's `Options.FromMap` type checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SimOptions {
    pub num_predict: Option<i64>,
    pub num_ctx: Option<i64>,
    pub stop: Vec<String>,
}

#[derive(Clone, Copy)]
enum OptionKind {
    Integer,
    Float,
    Boolean,
    Strings,
}

fn option_kind(key: &str) -> Option<OptionKind> {
    use OptionKind::{Boolean, Float, Integer, Strings};
    Some(match key {
        "num_keep" | "seed" | "num_predict" | "top_k" | "repeat_last_n" | "num_ctx"
        | "num_batch" | "num_gpu" | "main_gpu" | "num_thread" | "draft_num_predict" => Integer,
        "top_p" | "min_p" | "typical_p" | "temperature" | "repeat_penalty" | "presence_penalty"
        | "frequency_penalty" => Float,
        "use_mmap" => Boolean,
        "stop" => Strings,
        _ => return None,
    })
}

/// Checks option types like Ollama's `Options.FromMap`. Unknown keys are ignored (Ollama only
/// logs them). Ollama reports a failure here as **500** (it surfaces from `scheduleRunner`
/// through `handleScheduleError`'s default branch).
pub(crate) fn sim_options(options: Option<&Map<String, Value>>) -> Result<SimOptions, Refusal> {
    let mut parsed = SimOptions::default();
    let Some(options) = options else {
        return Ok(parsed);
    };
    for (key, value) in options {
        if value.is_null() {
            continue;
        }
        let Some(kind) = option_kind(key) else {
            continue;
        };
        let failure = |what: &str| Refusal::new(500, format!("option \"{key}\" must be {what}"));
        match kind {
            OptionKind::Integer => {
                // A JSON number is truncated to an integer, as Go's `int64(float64)` does.
                let number = value.as_f64().ok_or_else(|| failure("of type integer"))?;
                let integer = value.as_i64().unwrap_or(number.trunc() as i64);
                match key.as_str() {
                    "num_predict" => parsed.num_predict = Some(integer),
                    "num_ctx" => parsed.num_ctx = Some(integer),
                    _ => {}
                }
            }
            OptionKind::Float => {
                value.as_f64().ok_or_else(|| failure("of type float32"))?;
            }
            OptionKind::Boolean => {
                value.as_bool().ok_or_else(|| failure("of type boolean"))?;
            }
            OptionKind::Strings => {
                let items = value.as_array().ok_or_else(|| failure("of type array"))?;
                parsed.stop = items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| failure("of an array of strings"))
                    })
                    .collect::<Result<_, _>>()?;
            }
        }
    }
    Ok(parsed)
}

/// What the reply should look like, from `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyFormat {
    Text,
    Json,
}

/// `"json"` or a schema object mean JSON; anything else fails the way Ollama's runner does (500).
pub(crate) fn reply_format(format: Option<&Value>) -> Result<ReplyFormat, Refusal> {
    match format {
        None => Ok(ReplyFormat::Text),
        Some(Value::String(text)) if text == "json" => Ok(ReplyFormat::Json),
        Some(Value::Object(_)) => Ok(ReplyFormat::Json),
        Some(_) => Err(Refusal::new(
            500,
            "invalid format: expected \"json\" or a valid JSON schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat_error(body: Value) -> Refusal {
        chat_request(&body).unwrap_err()
    }

    #[test]
    fn blank_and_broken_bodies_are_refused_like_gin() {
        assert_eq!(
            parse_body(b"  \n").unwrap_err().message,
            "missing request body"
        );
        assert_eq!(
            parse_body(b"{\"model\":").unwrap_err().message,
            "unexpected EOF"
        );
        assert_eq!(parse_body(b"{\"a\":1} trailing").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn stream_defaults_to_true_and_roles_are_lowercased() {
        let request =
            chat_request(&json!({"model": "m", "messages": [{"role": "USER", "content": "hi"}]}))
                .unwrap();
        assert!(request.stream);
        assert_eq!(request.messages[0].role, "user");
        let request = chat_request(&json!({"model": "m", "stream": false, "format": ""})).unwrap();
        assert!(!request.stream);
        assert_eq!(request.format, None);
    }

    #[test]
    fn wrong_field_types_get_go_type_errors() {
        assert_eq!(
            chat_error(json!({"model": 5})).message,
            "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"
        );
        assert_eq!(
            chat_error(json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}))
                .message,
            "json: cannot unmarshal array into Go struct field Message.messages.content of type string"
        );
        assert_eq!(
            chat_error(json!({"messages": "hi"})).message,
            "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"
        );
        assert_eq!(
            chat_error(json!([1])).message,
            "json: cannot unmarshal array into Go value of type api.ChatRequest"
        );
        assert_eq!(
            chat_error(json!({"top_logprobs": 21})).message,
            "top_logprobs must be between 0 and 20"
        );
    }

    #[test]
    fn images_must_be_padded_standard_base64() {
        let refusal = chat_error(
            json!({"messages": [{"role": "user", "images": ["data:image/png;base64,AAAA"]}]}),
        );
        assert_eq!(
            refusal,
            Refusal::new(400, "illegal base64 data at input byte 4")
        );
        let ok = chat_request(&json!({"messages": [{"role": "user", "images": ["aGk=", "AAAA"]}]}))
            .unwrap();
        assert_eq!(ok.messages[0].images, 2);
    }

    #[test]
    fn keep_alive_and_think_follow_go_rules() {
        let keep_alive = |value: Value| {
            chat_request(&json!({ "keep_alive": value }))
                .unwrap()
                .keep_alive
        };
        assert!(keep_alive(json!(0)).unwrap().is_zero());
        assert!(keep_alive(json!("0s")).unwrap().is_zero());
        assert_eq!(
            keep_alive(json!("5m")),
            Some(KeepAlive::For(std::time::Duration::from_secs(300)))
        );
        assert_eq!(keep_alive(json!(-1)), Some(KeepAlive::Forever));
        assert_eq!(keep_alive(json!("-1m")), Some(KeepAlive::Forever));
        assert_eq!(keep_alive(Value::Null), None);
        assert_eq!(
            chat_error(json!({"keep_alive": true})).message,
            "Unsupported type: 'bool'"
        );
        assert_eq!(
            chat_request(&json!({"think": "high"})).unwrap().think,
            Some(true)
        );
        assert!(
            chat_error(json!({"think": "hard"}))
                .message
                .starts_with("invalid think value: \"hard\"")
        );
    }

    #[test]
    fn option_types_fail_with_500_and_go_texts() {
        let options = |value: Value| sim_options(value.as_object());
        assert_eq!(
            options(json!({"num_predict": "x"})).unwrap_err(),
            Refusal::new(500, "option \"num_predict\" must be of type integer")
        );
        assert_eq!(
            options(json!({"temperature": "hot"})).unwrap_err().message,
            "option \"temperature\" must be of type float32"
        );
        assert_eq!(
            options(json!({"stop": "END"})).unwrap_err().message,
            "option \"stop\" must be of type array"
        );
        assert_eq!(
            options(json!({"stop": [1]})).unwrap_err().message,
            "option \"stop\" must be of an array of strings"
        );
        let parsed = options(
            json!({"num_predict": 3.9, "stop": ["a"], "whatever": "ignored", "seed": null}),
        )
        .unwrap();
        assert_eq!(
            parsed,
            SimOptions {
                num_predict: Some(3),
                num_ctx: None,
                stop: vec!["a".into()]
            }
        );
    }

    #[test]
    fn embed_inputs_accept_strings_and_string_arrays_only() {
        assert_eq!(embed_inputs(Some(&json!("a"))).unwrap(), vec!["a"]);
        assert!(embed_inputs(Some(&json!(""))).unwrap().is_empty());
        assert_eq!(
            embed_inputs(Some(&json!(["", "b"]))).unwrap(),
            vec!["", "b"]
        );
        assert_eq!(
            embed_inputs(Some(&json!([1]))).unwrap_err().message,
            "invalid input type"
        );
        assert_eq!(
            embed_inputs(Some(&json!(5))).unwrap_err().message,
            "invalid input type"
        );
    }

    #[test]
    fn formats_are_text_json_or_a_500() {
        assert_eq!(reply_format(None), Ok(ReplyFormat::Text));
        assert_eq!(reply_format(Some(&json!("json"))), Ok(ReplyFormat::Json));
        assert_eq!(
            reply_format(Some(&json!({"type": "object"}))),
            Ok(ReplyFormat::Json)
        );
        assert_eq!(reply_format(Some(&json!("yaml"))).unwrap_err().status, 500);
    }
}
