//! The deterministic rules: what a prompt costs in tokens, what the model answers, and which
//! vector an input embeds to. The crate docs state them; tests elsewhere re-derive them.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The reply when a conversation holds no user message to echo.
pub const FALLBACK_REPLY: &str = "Hello! How can I help you today?";

/// Counts the simulator's tokens in `text`: maximal runs of non-whitespace.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn message_cost(content: &str) -> u64 {
    1 + count_words(content)
}

/// `prompt_eval_count` of an `/api/chat` request: each message costs 1 plus the words of its
/// `content`. Images, tool calls and tool definitions cost nothing.
///
/// ```
/// use serde_json::json;
/// let request = json!({"messages": [
///     {"role": "system", "content": "Be terse."},
///     {"role": "user", "content": "Hello there"}
/// ]});
/// assert_eq!(aiproxy_ollama_sim::prompt_tokens_for_chat(&request), 3 + 3);
/// ```
pub fn prompt_tokens_for_chat(request: &Value) -> u64 {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| {
            messages
                .iter()
                .map(|message| {
                    message_cost(message.get("content").and_then(Value::as_str).unwrap_or(""))
                })
                .sum()
        })
}

/// `prompt_eval_count` of an `/api/generate` request: the prompt counts as one user message
/// (1 + its words), a non-empty `system` as one more message (1 + its words), and every integer
/// of a `context` array as one token.
pub fn prompt_tokens_for_generate(request: &Value) -> u64 {
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or("");
    let system = text("system");
    let system_cost = if system.is_empty() {
        0
    } else {
        message_cost(system)
    };
    let context_cost = request
        .get("context")
        .and_then(Value::as_array)
        .map_or(0, |context| context.len() as u64);
    message_cost(text("prompt")) + system_cost + context_cost
}

/// `prompt_eval_count` of an `/api/embed` request: the words of each input, at least 1 per input.
/// An empty string `input` is no input at all (0).
pub fn prompt_tokens_for_embed(request: &Value) -> u64 {
    match request.get("input") {
        Some(Value::String(text)) if !text.is_empty() => count_words(text).max(1),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|text| count_words(text).max(1))
            .sum(),
        _ => 0,
    }
}

/// The unit-length vector the simulator returns for `input`: `dims` floats drawn from
/// SHA-256(input ‖ block number) in counter mode, scaled to [-1, 1], then normalised.
/// The model does not enter into it; only `dims` does.
pub fn embedding_vector(input: &str, dims: usize) -> Vec<f32> {
    let mut raw = Vec::with_capacity(dims);
    let mut block: u32 = 0;
    while raw.len() < dims {
        let mut hasher = Sha256::new();
        hasher.update(input.as_bytes());
        hasher.update(block.to_le_bytes());
        let digest = hasher.finalize();
        for chunk in digest.chunks_exact(4) {
            if raw.len() == dims {
                break;
            }
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            raw.push(f64::from(word) / f64::from(u32::MAX) * 2.0 - 1.0);
        }
        block = block.wrapping_add(1);
    }
    normalize(&raw)
}

/// Scales to unit length (what Ollama does after cutting to `dimensions`).
pub(crate) fn normalize(values: &[f64]) -> Vec<f32> {
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 {
        return values.iter().map(|v| *v as f32).collect();
    }
    values.iter().map(|v| (v / norm) as f32).collect()
}

/// The full reply text before `stop` and `num_predict` cut it.
///
/// `source` is the text being echoed (None: nothing to echo). Whitespace inside it collapses to
/// single spaces. A JSON `format` turns the reply into `{"echo":"<source>"}`; otherwise it is
/// `Echo: <source>` (or [`FALLBACK_REPLY`]), prefixed by `I see N image(s). ` when a vision model
/// got N images.
pub(crate) fn reply_text(source: Option<&str>, images: usize, json_format: bool) -> String {
    let echoed = source.map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "));
    if json_format {
        let echo = echoed.unwrap_or_else(|| FALLBACK_REPLY.to_owned());
        return serde_json::json!({ "echo": echo }).to_string();
    }
    let body = match echoed {
        Some(text) => format!("Echo: {text}"),
        None => FALLBACK_REPLY.to_owned(),
    };
    if images > 0 {
        format!("I see {images} image(s). {body}")
    } else {
        body
    }
}

/// What a thinking model thinks before it answers: `Considering: <echoed text>` (whitespace
/// collapsed), or `Considering: nothing` when there is nothing to echo.
pub(crate) fn thinking_text(source: Option<&str>) -> String {
    match source {
        Some(text) => format!(
            "Considering: {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        None => "Considering: nothing".to_owned(),
    }
}

/// A reply cut into streamed pieces, with why it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapedReply {
    /// Thinking words (a thinking model's), streamed before the answer, same spacing.
    pub thinking: Vec<String>,
    /// The first word, then every further word with one leading space.
    pub pieces: Vec<String>,
    /// `stop`, or `length` when `num_predict` cut it.
    pub done_reason: &'static str,
}

/// Splits into words, the first bare and every later one with one leading space.
fn spaced(words: &[&str]) -> Vec<String> {
    words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            if i == 0 {
                (*word).to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// Applies `stop` to the answer (cut before the earliest match, trailing whitespace dropped) and
/// then `num_predict` to thinking and answer together: N > 0 keeps at most N words, thinking
/// first (cutting sets `length`); 0 and negative values mean no limit, as in Ollama, which only
/// clamps values below 0 and whose runner limits generation only when `numPredict > 0`.
pub(crate) fn shape_thinking_reply(
    thinking: Option<&str>,
    full: &str,
    num_predict: Option<i64>,
    stop: &[String],
) -> ShapedReply {
    let mut shaped = shape_reply(full, None, stop);
    let mut thinking_words: Vec<&str> =
        thinking.map_or_else(Vec::new, |t| t.split_whitespace().collect());
    if let Some(limit) = num_predict
        .filter(|n| *n > 0)
        .and_then(|n| usize::try_from(n).ok())
        && thinking_words.len() + shaped.pieces.len() > limit
    {
        thinking_words.truncate(limit);
        shaped.pieces.truncate(limit - thinking_words.len());
        shaped.done_reason = "length";
    }
    shaped.thinking = spaced(&thinking_words);
    shaped
}

/// [`shape_thinking_reply`] without thinking.
pub(crate) fn shape_reply(full: &str, num_predict: Option<i64>, stop: &[String]) -> ShapedReply {
    let normalized = full.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut = stop
        .iter()
        .filter(|sequence| !sequence.is_empty())
        .filter_map(|sequence| normalized.find(sequence.as_str()))
        .min()
        .unwrap_or(normalized.len());
    let mut words: Vec<&str> = normalized[..cut].split_whitespace().collect();
    let mut done_reason = "stop";
    if let Some(limit) = num_predict
        .filter(|n| *n > 0)
        .and_then(|n| usize::try_from(n).ok())
        && words.len() > limit
    {
        words.truncate(limit);
        done_reason = "length";
    }
    ShapedReply {
        thinking: Vec::new(),
        pieces: spaced(&words),
        done_reason,
    }
}

/// One tool call in Ollama's current shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ToolCall {
    pub id: String,
    pub function: ToolCallFunction,
}

/// The `function` part of a [`ToolCall`]; `arguments` is an object, never a string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ToolCallFunction {
    pub index: usize,
    pub name: String,
    pub arguments: Value,
}

/// The call the model makes to the first tool, and its `eval_count` (1 + number of arguments).
///
/// Every `required` parameter gets a value from the user's last message: `integer`/`number` →
/// its word count, `boolean` → true, `array` → `[last word]`, `object` → `{}`, anything else →
/// the last word with trailing `.,!?;:` removed.
pub(crate) fn tool_call(first_tool: &Value, user_text: &str) -> (ToolCall, u64) {
    let function = first_tool.get("function").unwrap_or(&Value::Null);
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let parameters = function.get("parameters").unwrap_or(&Value::Null);
    let properties = parameters.get("properties").unwrap_or(&Value::Null);
    let required = parameters.get("required").and_then(Value::as_array);
    let last_word = user_text.split_whitespace().last().unwrap_or("");
    let trimmed = last_word.trim_end_matches(['.', ',', '!', '?', ';', ':']);
    let last_word_value = if trimmed.is_empty() {
        last_word
    } else {
        trimmed
    };
    let word_count = count_words(user_text);

    let mut arguments = Map::new();
    for key in required.into_iter().flatten().filter_map(Value::as_str) {
        let kind = properties
            .get(key)
            .and_then(|property| property.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("string");
        let value = match kind {
            "integer" | "number" => Value::from(word_count),
            "boolean" => Value::Bool(true),
            "array" => Value::Array(vec![Value::from(last_word_value)]),
            "object" => Value::Object(Map::new()),
            _ => Value::from(last_word_value),
        };
        arguments.insert(key.to_owned(), value);
    }
    let eval_count = 1 + arguments.len() as u64;
    let id = call_id(&[name.as_str(), user_text]);
    let call = ToolCall {
        id,
        function: ToolCallFunction {
            index: 0,
            name,
            arguments: Value::Object(arguments),
        },
    };
    (call, eval_count)
}

/// `call_` plus 8 characters of `[a-z0-9]`, derived from the inputs (Ollama's are random).
fn call_id(seed: &[&str]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let digest = hash_parts(seed);
    let suffix: String = digest
        .iter()
        .take(8)
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect();
    format!("call_{suffix}")
}

fn hash_parts(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// The `context` array of a final `/api/generate` object: `length` token ids (below 262 144)
/// derived from the prompt and the reply.
pub(crate) fn context_tokens(prompt: &str, reply: &str, length: u64) -> Vec<u32> {
    let seed = hash_parts(&[prompt, reply]);
    (0..length)
        .map(|index| {
            let mut hasher = Sha256::new();
            hasher.update(seed);
            hasher.update(index.to_le_bytes());
            let digest = hasher.finalize();
            u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % 262_144
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_prompt_costs_one_per_message_plus_words() {
        let request = json!({"messages": [
            {"role": "system", "content": "  You   are terse. "},
            {"role": "user", "content": "Hi", "images": ["aGk="]},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f"}}]}
        ]});
        assert_eq!(prompt_tokens_for_chat(&request), 4 + 2 + 1);
        assert_eq!(prompt_tokens_for_chat(&json!({})), 0);
    }

    #[test]
    fn generate_prompt_counts_system_only_when_present() {
        assert_eq!(
            prompt_tokens_for_generate(&json!({"prompt": "Count to five"})),
            4
        );
        assert_eq!(
            prompt_tokens_for_generate(
                &json!({"prompt": "Count to five", "system": "Be brief", "context": [1, 2, 3]})
            ),
            4 + 3 + 3
        );
    }

    #[test]
    fn embed_inputs_cost_at_least_one_each() {
        assert_eq!(prompt_tokens_for_embed(&json!({"input": "Hello world"})), 2);
        assert_eq!(
            prompt_tokens_for_embed(&json!({"input": ["", "a b c"]})),
            1 + 3
        );
        assert_eq!(prompt_tokens_for_embed(&json!({"input": ""})), 0);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let first = embedding_vector("Hello world", 768);
        assert_eq!(first.len(), 768);
        assert_eq!(first, embedding_vector("Hello world", 768));
        assert_ne!(first, embedding_vector("Hello world!", 768));
        let norm: f64 = first
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn replies_echo_with_collapsed_whitespace() {
        assert_eq!(
            reply_text(Some("Hi  there\n you"), 0, false),
            "Echo: Hi there you"
        );
        assert_eq!(reply_text(None, 0, false), FALLBACK_REPLY);
        assert_eq!(
            reply_text(Some("what is this"), 2, false),
            "I see 2 image(s). Echo: what is this"
        );
        assert_eq!(
            reply_text(Some("a \"b\""), 0, true),
            r#"{"echo":"a \"b\""}"#
        );
    }

    #[test]
    fn pieces_carry_leading_spaces_and_concatenate_to_the_reply() {
        let shaped = shape_reply("Echo: one two", None, &[]);
        assert_eq!(shaped.pieces, vec!["Echo:", " one", " two"]);
        assert_eq!(shaped.done_reason, "stop");
        assert_eq!(shaped.pieces.concat(), "Echo: one two");
    }

    #[test]
    fn num_predict_cuts_with_length_and_stop_cuts_with_stop() {
        let capped = shape_reply("Echo: one two three", Some(2), &[]);
        assert_eq!(capped.pieces, vec!["Echo:", " one"]);
        assert_eq!(capped.done_reason, "length");
        assert_eq!(shape_reply("Echo: one", Some(2), &[]).done_reason, "stop");
        assert_eq!(shape_reply("Echo: one", Some(-1), &[]).pieces.len(), 2);
        let stopped = shape_reply("Echo: one two three", None, &["two".into(), "thr".into()]);
        assert_eq!(stopped.pieces.concat(), "Echo: one");
        assert_eq!(stopped.done_reason, "stop");
        let mid_word = shape_reply("Echo: hello world", Some(10), &["ll".into()]);
        assert_eq!(mid_word.pieces.concat(), "Echo: he");
        let unlimited = shape_reply("Echo: a", Some(0), &[]);
        assert_eq!((unlimited.pieces.len(), unlimited.done_reason), (2, "stop"));
    }

    #[test]
    fn thinking_comes_first_and_counts_against_num_predict() {
        let thinking = thinking_text(Some("a  b"));
        assert_eq!(thinking, "Considering: a b");
        let whole = shape_thinking_reply(Some(&thinking), "Echo: a b", None, &[]);
        assert_eq!(whole.thinking, vec!["Considering:", " a", " b"]);
        assert_eq!(whole.pieces.len(), 3);
        let capped = shape_thinking_reply(Some(&thinking), "Echo: a b", Some(4), &[]);
        assert_eq!((capped.thinking.len(), capped.pieces.len()), (3, 1));
        assert_eq!(capped.done_reason, "length");
        let thought_only = shape_thinking_reply(Some(&thinking), "Echo: a b", Some(2), &[]);
        assert_eq!(
            (thought_only.thinking.len(), thought_only.pieces.len()),
            (2, 0)
        );
    }

    #[test]
    fn tool_calls_fill_required_arguments_from_the_last_user_word() {
        let tool = json!({"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"type": "string"}},
                "required": ["city", "days"]}
        }});
        let (call, eval_count) = tool_call(&tool, "What is the weather in Tokyo?");
        assert_eq!(call.function.name, "get_weather");
        assert_eq!(call.function.arguments, json!({"city": "Tokyo", "days": 6}));
        assert_eq!(eval_count, 3);
        assert!(call.id.starts_with("call_") && call.id.len() == 13);
        assert!(
            call.id[5..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(
            call.id,
            tool_call(&tool, "What is the weather in Tokyo?").0.id
        );
    }

    #[test]
    fn context_has_the_requested_length() {
        let context = context_tokens("p", "r", 7);
        assert_eq!(context.len(), 7);
        assert!(context.iter().all(|id| *id < 262_144));
    }
}
