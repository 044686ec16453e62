//! Ollama's native answer shapes: `/api/chat` and `/api/generate` lines and objects.

use bytes::Bytes;
use serde::Serialize;

use crate::control::MODEL_ERROR_MESSAGE;
use crate::gojson::{now_timestamp, to_go_json};
use crate::rules::ToolCall;
use crate::wire::{Dialect, Encoder, JSON_UTF8, Metrics, NDJSON, Piece, Reply, Route, ndjson_line};

/// The line `malformed_after_tokens` inserts in a native stream: the start of a real line, cut
/// short.
pub const MALFORMED_LINE: &[u8] = b"{\"model\":\n";

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    thinking: &'a str,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
}

// Field order follows the recorded traffic: `done_reason` before `done` on chat lines.
#[derive(Serialize)]
struct ChatLine<'a> {
    model: &'a str,
    created_at: String,
    message: AssistantMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    done: bool,
    #[serde(flatten)]
    metrics: Option<&'a Metrics>,
}

#[derive(Serialize)]
struct GenerateLine<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    thinking: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a [u32]>,
    #[serde(flatten)]
    metrics: Option<&'a Metrics>,
}

/// Everything needed for one wire object; `None` done_reason means a `done: false` line.
struct LineParts<'a> {
    text: &'a str,
    thinking: &'a str,
    tool_calls: &'a [ToolCall],
    done_reason: Option<&'a str>,
}

fn render(reply: &Reply, parts: LineParts<'_>) -> String {
    let done = parts.done_reason.is_some();
    let metrics = done.then_some(&reply.metrics);
    match reply.route {
        Route::Chat => to_go_json(&ChatLine {
            model: &reply.model,
            created_at: now_timestamp(),
            message: AssistantMessage {
                role: "assistant",
                content: parts.text,
                thinking: parts.thinking,
                tool_calls: parts.tool_calls,
            },
            done_reason: parts.done_reason,
            done,
            metrics,
        }),
        Route::Generate => to_go_json(&GenerateLine {
            model: &reply.model,
            created_at: now_timestamp(),
            response: parts.text,
            thinking: parts.thinking,
            done,
            done_reason: parts.done_reason,
            context: if done { reply.context.as_deref() } else { None },
            metrics,
        }),
    }
}

fn piece_line(reply: &Reply, piece: &Piece) -> Bytes {
    let parts = match piece {
        Piece::Thinking(thinking) => LineParts {
            text: "",
            thinking,
            tool_calls: &[],
            done_reason: None,
        },
        Piece::Text(text) => LineParts {
            text,
            thinking: "",
            tool_calls: &[],
            done_reason: None,
        },
        Piece::ToolCalls(calls) => LineParts {
            text: "",
            thinking: "",
            tool_calls: calls,
            done_reason: None,
        },
    };
    ndjson_line(render(reply, parts))
}

fn final_line(reply: &Reply) -> Bytes {
    ndjson_line(render(
        reply,
        LineParts {
            text: "",
            thinking: "",
            tool_calls: &[],
            done_reason: Some(reply.done_reason),
        },
    ))
}

/// The single object of a non-streaming answer: all text joined, all tool calls collected.
fn whole(reply: &Reply) -> String {
    render(
        reply,
        LineParts {
            text: &reply.text(),
            thinking: &reply.thinking(),
            tool_calls: &reply.tool_calls(),
            done_reason: Some(reply.done_reason),
        },
    )
}

/// Ollama's own wire: NDJSON lines, or one object.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NativeEncoder;

impl Encoder for NativeEncoder {
    fn dialect(&self) -> Dialect {
        Dialect::Ollama
    }

    fn stream_content_type(&self) -> &'static str {
        NDJSON
    }

    fn piece(&mut self, reply: &Reply, piece: &Piece) -> Bytes {
        piece_line(reply, piece)
    }

    fn finish(&mut self, reply: &Reply) -> Bytes {
        final_line(reply)
    }

    fn error_line(&mut self, _reply: &Reply) -> Option<Bytes> {
        Some(ndjson_line(
            Dialect::Ollama.error_body(500, MODEL_ERROR_MESSAGE),
        ))
    }

    fn malformed(&self) -> &'static [u8] {
        MALFORMED_LINE
    }

    fn whole(&mut self, reply: &Reply) -> (String, &'static str) {
        (whole(reply), JSON_UTF8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EVAL_NS_PER_TOKEN;
    use serde_json::{Value, json};

    fn reply(route: Route) -> Reply {
        Reply {
            route,
            model: "llama3.2".into(),
            pieces: vec![Piece::Text("Echo:".into()), Piece::Text(" <hi>".into())],
            done_reason: "stop",
            metrics: Metrics::for_counts(3, 2),
            context: Some(vec![1, 2, 3, 4, 5]),
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn chat_lines_have_ollamas_fields() {
        let reply = reply(Route::Chat);
        let token = piece_line(&reply, &reply.pieces[1]);
        assert!(token.ends_with(b"\n"));
        assert!(
            std::str::from_utf8(&token)
                .unwrap()
                .contains("\\u003chi\\u003e")
        );
        let token = parse(&token);
        assert_eq!(
            token["message"],
            json!({"role": "assistant", "content": " <hi>"})
        );
        assert_eq!(token["done"], json!(false));
        assert!(token.get("done_reason").is_none() && token.get("eval_count").is_none());

        let last = parse(&final_line(&reply));
        assert_eq!(last["done_reason"], "stop");
        assert_eq!(last["message"]["content"], "");
        assert_eq!(last["prompt_eval_count"], 3);
        assert_eq!(last["eval_count"], 2);
        assert_eq!(last["eval_duration"], 2 * EVAL_NS_PER_TOKEN);
        assert!(last.get("context").is_none());
    }

    #[test]
    fn generate_final_carries_context_and_whole_joins_pieces() {
        let reply = reply(Route::Generate);
        let whole = parse(whole(&reply).as_bytes());
        assert_eq!(whole["response"], "Echo: <hi>");
        assert_eq!(whole["context"], json!([1, 2, 3, 4, 5]));
        assert_eq!(whole["done"], true);
        let token = parse(&piece_line(&reply, &reply.pieces[0]));
        assert!(token.get("context").is_none());
    }

    #[test]
    fn zero_metrics_are_omitted() {
        let value = serde_json::to_value(Metrics::for_counts(4, 0)).unwrap();
        assert!(value.get("eval_count").is_none() && value.get("eval_duration").is_none());
        assert_eq!(value["prompt_eval_count"], 4);
    }
}
