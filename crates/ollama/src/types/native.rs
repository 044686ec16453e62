//! Native requests as the proxy passes them through (`/api/chat`, `/api/generate`,
//! `/api/embed`, `/api/embeddings`), and the fields it reads from Ollama's answers to them.
//!
//! A client of the native API may send any field a current Ollama takes, and Ollama adds
//! fields often, so a pass-through must not model the whole request. [`NativeRequest`] types
//! only the fields the proxy reads or rewrites (`model`, `stream`, `options`, `keep_alive`) and
//! keeps every other top-level field as the exact bytes the client sent. [`LineSummary`]
//! reads the usage and the end of an answer from a line without copying or re-encoding it, so
//! the line itself is relayed unchanged.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{null_as_default, set_num_predict};

/// How many bytes of prompt text count as one token in an estimate; Ollama's own Anthropic
/// layer estimates the same way before its runner has counted.
pub const BYTES_PER_TOKEN_ESTIMATE: u64 = 4;

/// The tokens an estimate gives `text_bytes` bytes of prompt text (rounded up).
pub fn estimate_tokens(text_bytes: u64) -> u64 {
    text_bytes.div_ceil(BYTES_PER_TOKEN_ESTIMATE)
}

/// A native route whose body is a [`NativeRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeEndpoint {
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/generate`.
    Generate,
    /// `POST /api/embed`.
    Embed,
    /// `POST /api/embeddings` (legacy).
    Embeddings,
}

impl NativeEndpoint {
    /// The fields whose text is the prompt; the first is the one that, empty, makes Ollama
    /// only load (or, with `keep_alive: 0`, unload) the model.
    fn prompt_fields(self) -> &'static [&'static str] {
        match self {
            NativeEndpoint::Chat => &["messages"],
            NativeEndpoint::Generate => &["prompt", "system", "suffix"],
            NativeEndpoint::Embed => &["input"],
            NativeEndpoint::Embeddings => &["prompt"],
        }
    }

    /// Whether Ollama streams the answer when the request has no `stream` (chat and generate
    /// do; the embedding routes never stream).
    pub fn streams_by_default(self) -> bool {
        matches!(self, NativeEndpoint::Chat | NativeEndpoint::Generate)
    }
}

/// A native request body that cannot be passed on: what was wrong, written for the client,
/// and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NativeRequestError {
    /// What was wrong and what to send instead.
    pub message: String,
    /// The top-level field at fault, when there is one.
    pub field: Option<&'static str>,
}

impl NativeRequestError {
    fn new(message: impl Into<String>, field: Option<&'static str>) -> Self {
        Self {
            message: message.into(),
            field,
        }
    }
}

/// The fields of a native request the proxy reads or rewrites.
const MODEL: &str = "model";
const STREAM: &str = "stream";
const OPTIONS: &str = "options";
const KEEP_ALIVE: &str = "keep_alive";

/// A native request body: the fields the proxy owns, typed, and every other field as the
/// client's bytes.
///
/// Ollama (Go's `encoding/json`) matches field names without regard to case, so `"Options"`
/// is its `options`; the fields here are matched the same way, and a field named twice (in
/// any case) is refused, because Ollama would merge two `options` objects and the proxy would
/// check only one.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    endpoint: NativeEndpoint,
    /// The model, as the client named it (routing may rewrite it).
    pub model: String,
    /// `stream`; absent means Ollama's default for the endpoint.
    pub stream: Option<bool>,
    /// `options` (`num_predict`, `num_ctx`, `temperature`, …), for the policy to check and
    /// the budget to bound.
    pub options: Option<Map<String, Value>>,
    /// `keep_alive` as sent (see [`KeepAlive::parse`]).
    pub keep_alive: Option<Value>,
    /// Every other top-level field, in the client's order, as its exact JSON text.
    rest: Vec<(String, Box<RawValue>)>,
}

impl NativeRequest {
    /// Reads the body of a request to `endpoint`. Refused: a body that is not a JSON object, a
    /// missing or empty `model`, an owned field of the wrong type or named twice.
    pub fn parse(endpoint: NativeEndpoint, body: &[u8]) -> Result<Self, NativeRequestError> {
        let fields: Fields = serde_json::from_slice(body).map_err(|err| {
            NativeRequestError::new(format!("The body is not a JSON object: {err}."), None)
        })?;
        let mut request = NativeRequest {
            endpoint,
            model: String::new(),
            stream: None,
            options: None,
            keep_alive: None,
            rest: Vec::with_capacity(fields.0.len()),
        };
        let mut seen = [false; 4];
        for (key, raw) in fields.0 {
            let Some(owned) = [MODEL, STREAM, OPTIONS, KEEP_ALIVE]
                .iter()
                .position(|name| go_field_matches(&key, name))
            else {
                request.rest.push((key, raw));
                continue;
            };
            let name = [MODEL, STREAM, OPTIONS, KEEP_ALIVE][owned];
            if std::mem::replace(&mut seen[owned], true) {
                return Err(NativeRequestError::new(
                    format!("`{name}` is given more than once."),
                    Some(name),
                ));
            }
            let wrong_type = |expected: &str| {
                NativeRequestError::new(format!("`{name}` must be {expected}."), Some(name))
            };
            match name {
                MODEL => {
                    request.model = serde_json::from_str::<Option<String>>(raw.get())
                        .map_err(|_| wrong_type("a string"))?
                        .unwrap_or_default();
                }
                STREAM => {
                    request.stream =
                        serde_json::from_str(raw.get()).map_err(|_| wrong_type("true or false"))?;
                }
                OPTIONS => {
                    request.options =
                        serde_json::from_str(raw.get()).map_err(|_| wrong_type("an object"))?;
                }
                _ => {
                    request.keep_alive = serde_json::from_str::<Option<Value>>(raw.get())
                        .map_err(|_| wrong_type("a duration"))?;
                }
            }
        }
        if request.model.trim().is_empty() {
            return Err(NativeRequestError::new(
                "`model` is required: name an Ollama model.",
                Some(MODEL),
            ));
        }
        Ok(request)
    }

    /// The route this request was read for.
    pub fn endpoint(&self) -> NativeEndpoint {
        self.endpoint
    }

    /// Whether the answer will stream: `stream`, else the endpoint's default.
    pub fn streams(&self) -> bool {
        self.stream
            .unwrap_or_else(|| self.endpoint.streams_by_default())
    }

    /// Sets `options.num_predict` (the completion budget), creating `options` if needed.
    pub fn set_num_predict(&mut self, tokens: u64) {
        set_num_predict(&mut self.options, tokens);
    }

    /// Whether the request has no prompt (`messages`, `prompt` or `input` absent, `null`,
    /// `""` or `[]`): Ollama then only loads the model, or unloads it for everyone when
    /// `keep_alive` is 0.
    pub fn has_no_prompt(&self) -> bool {
        let primary = self.endpoint.prompt_fields()[0];
        self.rest
            .iter()
            .filter(|(key, _)| go_field_matches(key, primary))
            .all(|(_, raw)| {
                let text = raw.get().trim();
                text == "null"
                    || text == "\"\""
                    || text
                        .strip_prefix('[')
                        .is_some_and(|rest| rest.trim_start().starts_with(']'))
            })
    }

    /// The bytes of text in the prompt fields (every string in them except image payloads):
    /// what a prompt-token estimate is made from before Ollama counts.
    pub fn prompt_text_bytes(&self) -> u64 {
        let fields = self.endpoint.prompt_fields();
        self.rest
            .iter()
            .filter(|(key, _)| fields.iter().any(|name| go_field_matches(key, name)))
            .map(|(_, raw)| serde_json::from_str::<TextBytes>(raw.get()).map_or(0, |bytes| bytes.0))
            .sum()
    }

    /// An estimate of the prompt's tokens ([`estimate_tokens`] of [`Self::prompt_text_bytes`]).
    pub fn estimated_prompt_tokens(&self) -> u64 {
        estimate_tokens(self.prompt_text_bytes())
    }

    /// Appends the request as JSON: the owned fields as they are now (absent ones left out),
    /// then every other field with the client's bytes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        write_member(out, false, MODEL, &self.model);
        if let Some(stream) = self.stream {
            write_member(out, true, STREAM, &stream);
        }
        if let Some(options) = &self.options {
            write_member(out, true, OPTIONS, options);
        }
        if let Some(keep_alive) = &self.keep_alive {
            write_member(out, true, KEEP_ALIVE, keep_alive);
        }
        for (key, raw) in &self.rest {
            write_member(out, true, key, raw);
        }
        out.push(b'}');
    }

    /// The request as JSON (see [`Self::write_json`]).
    pub fn to_vec(&self) -> Vec<u8> {
        let room = self
            .rest
            .iter()
            .map(|(key, raw)| key.len() + raw.get().len() + 4)
            .sum::<usize>();
        let mut out = Vec::with_capacity(room + 128);
        self.write_json(&mut out);
        out
    }
}

/// Appends `"key":value`, after a comma unless it is the first member.
fn write_member(out: &mut Vec<u8>, comma: bool, key: &str, value: &(impl Serialize + ?Sized)) {
    if comma {
        out.push(b',');
    }
    // Strings, maps of JSON values and raw JSON have no failing `Serialize`, and writing into
    // a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Whether a JSON key names the field `name` for Go's `encoding/json`: equal ignoring ASCII
/// case, where (as Go's case folding has it) `ſ` (U+017F) is also an `s` and the Kelvin sign
/// (U+212A) also a `k`. `name` is lowercase ASCII.
fn go_field_matches(key: &str, name: &str) -> bool {
    let mut wanted = name.bytes();
    for c in key.chars() {
        let Some(b) = wanted.next() else {
            return false;
        };
        let same = c.to_ascii_lowercase() == char::from(b)
            || (b == b's' && c == '\u{17f}')
            || (b == b'k' && c == '\u{212a}');
        if !same {
            return false;
        }
    }
    wanted.next().is_none()
}

/// A JSON object's members in order, each value as its exact text.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(member);
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// The bytes of every string in a JSON value, skipping the values of `images` members (the
/// base64 of images is no prompt text).
struct TextBytes(u64);

impl<'de> Deserialize<'de> for TextBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = TextBytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<TextBytes, E> {
                Ok(TextBytes(text.len() as u64))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextBytes, E> {
                Ok(TextBytes(0))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextBytes, E> {
                Ok(TextBytes(0))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextBytes, E> {
                Ok(TextBytes(0))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextBytes, E> {
                Ok(TextBytes(0))
            }

            fn visit_unit<E: de::Error>(self) -> Result<TextBytes, E> {
                Ok(TextBytes(0))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextBytes, A::Error> {
                let mut total = 0u64;
                while let Some(TextBytes(n)) = seq.next_element()? {
                    total = total.saturating_add(n);
                }
                Ok(TextBytes(total))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextBytes, A::Error> {
                let mut total = 0u64;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "images" {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        let TextBytes(n) = map.next_value()?;
                        total = total.saturating_add(n);
                    }
                }
                Ok(TextBytes(total))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

/// Ollama's `keep_alive`, read as Ollama reads it (`api.Duration`): a number is seconds, a
/// string is a Go duration (`"5m"`, `"1h30m"`, `"250ms"`), anything negative is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Keep the model loaded for good.
    Forever,
    /// Keep it this long after the request; zero unloads it right after.
    For(Duration),
}

impl KeepAlive {
    /// Reads a `keep_alive` value; the error says what was wrong, as Ollama would refuse it.
    pub fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(number) => {
                let seconds = number.as_f64().unwrap_or(f64::INFINITY);
                if seconds < 0.0 {
                    Ok(KeepAlive::Forever)
                } else {
                    Duration::try_from_secs_f64(seconds)
                        .map(KeepAlive::For)
                        .map_err(|_| format!("keep_alive {number} is too long"))
                }
            }
            Value::String(text) => parse_go_duration(text),
            Value::Bool(_) => Err("keep_alive must be a duration, not a boolean".into()),
            Value::Null => Err("keep_alive must be a duration, not null".into()),
            Value::Array(_) | Value::Object(_) => {
                Err("keep_alive must be a duration such as \"5m\" or a number of seconds".into())
            }
        }
    }

    /// The value to send Ollama: `-1` for forever, whole seconds as a number, anything finer
    /// as a Go duration string in nanoseconds.
    pub fn to_value(self) -> Value {
        match self {
            KeepAlive::Forever => Value::from(-1),
            KeepAlive::For(duration) if duration.subsec_nanos() == 0 => {
                Value::from(duration.as_secs())
            }
            KeepAlive::For(duration) => Value::from(format!("{}ns", duration.as_nanos())),
        }
    }
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `<decimal><unit>` (units `ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`), or `0`; a negative duration is [`KeepAlive::Forever`].
fn parse_go_duration(text: &str) -> Result<KeepAlive, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(KeepAlive::For(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            unit => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        rest = &rest[unit_len..];
        total_nanos += value * unit_nanos;
    }
    // Go refuses durations beyond about 292 years; so does this.
    if total_nanos > i64::MAX as f64 {
        return Err(invalid());
    }
    if negative && total_nanos > 0.0 {
        return Ok(KeepAlive::Forever);
    }
    Ok(KeepAlive::For(Duration::from_nanos(total_nanos as u64)))
}

/// What the proxy reads from one line of a native answer (streamed, or whole): the end of the
/// answer, its usage and a mid-stream error. Read in place: strings without escapes are
/// borrowed from the line, and every other field is skipped, not decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct LineSummary<'a> {
    /// `true` on the answer's last line.
    #[serde(default, deserialize_with = "null_as_default")]
    pub done: bool,
    /// `stop`, `length`, `load`, `unload`; on the last line.
    #[serde(default, borrow)]
    pub done_reason: Option<Text<'a>>,
    /// Prompt tokens; absent means 0.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Generated tokens; absent means 0.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// A failure Ollama reports in the stream (`{"error": "…"}`), ending it without a `done`.
    #[serde(default, borrow)]
    pub error: Option<Text<'a>>,
    /// `/api/chat`'s message: only whether it carries output.
    #[serde(default)]
    message: Option<MessagePresence>,
    /// `/api/generate`'s text: only whether there is some.
    #[serde(default)]
    response: Presence,
    /// `/api/generate`'s reasoning: only whether there is some.
    #[serde(default)]
    thinking: Presence,
}

impl<'a> LineSummary<'a> {
    /// Reads `line` (one JSON object, without its newline).
    pub fn read(line: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// Whether the line adds to the answer: text, reasoning or tool calls.
    pub fn carries_output(&self) -> bool {
        self.response.0
            || self.thinking.0
            || self
                .message
                .as_ref()
                .is_some_and(|m| m.content.0 || m.thinking.0 || m.tool_calls.0)
    }
}

/// A string read from a line, borrowed when it had no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// `message` of a chat line: which parts carry something.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
struct MessagePresence {
    #[serde(default)]
    content: Presence,
    #[serde(default)]
    thinking: Presence,
    #[serde(default)]
    tool_calls: Presence,
}

/// Whether a value is there and not empty (a non-empty string or array), read without
/// keeping it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Presence(bool);

impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PresenceVisitor;

        impl<'de> Visitor<'de> for PresenceVisitor {
            type Value = Presence;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array or null")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Presence, E> {
                Ok(Presence(!text.is_empty()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Presence, E> {
                Ok(Presence(false))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Presence, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(Presence(any))
            }
        }

        deserializer.deserialize_any(PresenceVisitor)
    }
}

#[cfg(test)]
mod tests;
