//! Reading an OpenAI Server-Sent Events body: `data:` lines out of arbitrary chunks, and what
//! each event means for the measurements.

use serde_json::Value;

/// Collects body chunks and hands out the payload of every complete `data:` line.
///
/// Each `data:` line is taken as one event: OpenAI-style servers never split a JSON payload
/// over several `data:` lines, and reading per line keeps the time to first token exact even
/// when a server is slow to send the blank line that ends an event.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buffer: Vec<u8>,
    /// Where the next line starts; consumed bytes are dropped lazily to avoid shifting the
    /// buffer once per line.
    start: usize,
}

impl SseDecoder {
    /// Appends a chunk as it came off the wire.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// The payload of the next complete `data:` line, without the field name and the one
    /// optional space after it. Comments, other fields and blank lines are skipped.
    pub(crate) fn next_data(&mut self) -> Option<String> {
        loop {
            let rest = &self.buffer[self.start..];
            let end = rest.iter().position(|&b| b == b'\n')?;
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let data = line
                .strip_prefix(b"data:")
                .map(|d| d.strip_prefix(b" ").unwrap_or(d))
                .map(|d| String::from_utf8_lossy(d).into_owned());
            self.start += end + 1;
            if data.is_some() {
                return data;
            }
        }
    }
}

/// What one `data:` payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    /// `[DONE]`: the answer is complete.
    Done,
    /// `{"error": …}`: the server gave up after the headers were sent. Holds the error's
    /// `code`, else its `type`, else `unknown`.
    Error(String),
    /// A `chat.completion.chunk`.
    Chunk {
        /// A choice's `delta.content` holds text: the first such event is the first token.
        has_content: bool,
        /// `usage.completion_tokens`, present on the final usage chunk.
        completion_tokens: Option<u64>,
    },
    /// Not JSON; the reader skips it as OpenAI's clients do.
    Unreadable,
}

/// Interprets one `data:` payload.
pub(crate) fn classify(data: &str) -> StreamEvent {
    if data.trim() == "[DONE]" {
        return StreamEvent::Done;
    }
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        return StreamEvent::Unreadable;
    };
    if let Some(error) = event.get("error").filter(|e| !e.is_null()) {
        return StreamEvent::Error(error_label(error));
    }
    let has_content = event["choices"].as_array().is_some_and(|choices| {
        choices.iter().any(|choice| {
            choice["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
    });
    StreamEvent::Chunk {
        has_content,
        completion_tokens: event["usage"]["completion_tokens"].as_u64(),
    }
}

/// The most specific name an OpenAI error object gives itself.
fn error_label(error: &Value) -> String {
    ["code", "type"]
        .iter()
        .find_map(|field| error[*field].as_str().filter(|s| !s.is_empty()))
        .or_else(|| error.as_str().filter(|s| !s.is_empty()).map(|_| "message"))
        .unwrap_or("unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(decoder: &mut SseDecoder) -> Vec<String> {
        std::iter::from_fn(|| decoder.next_data()).collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let body = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        for cut in 0..body.len() {
            let mut decoder = SseDecoder::default();
            decoder.feed(&body[..cut]);
            let mut events = drain(&mut decoder);
            decoder.feed(&body[cut..]);
            events.extend(drain(&mut decoder));
            assert_eq!(events, ["{\"a\":1}", "{\"b\":2}", "[DONE]"], "cut at {cut}");
        }
    }

    #[test]
    fn crlf_comments_and_other_fields_are_handled() {
        let mut decoder = SseDecoder::default();
        decoder.feed(b": keep-alive\r\nevent: message\r\ndata:{\"x\":1}\r\n\r\nid: 7\r\ndata: [DONE]\r\n\r\n");
        assert_eq!(drain(&mut decoder), ["{\"x\":1}", "[DONE]"]);
    }

    #[test]
    fn an_unfinished_line_waits_for_its_newline() {
        let mut decoder = SseDecoder::default();
        decoder.feed(b"data: [DO");
        assert_eq!(decoder.next_data(), None);
        decoder.feed(b"NE]\n");
        assert_eq!(decoder.next_data().as_deref(), Some("[DONE]"));
    }

    #[test]
    fn content_chunks_usage_chunks_and_done_are_told_apart() {
        let content = r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#;
        assert_eq!(
            classify(content),
            StreamEvent::Chunk {
                has_content: true,
                completion_tokens: None
            }
        );
        let role_only = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(
            classify(role_only),
            StreamEvent::Chunk {
                has_content: false,
                completion_tokens: None
            }
        );
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
        assert_eq!(
            classify(usage),
            StreamEvent::Chunk {
                has_content: false,
                completion_tokens: Some(12)
            }
        );
        assert_eq!(classify("[DONE]"), StreamEvent::Done);
        assert_eq!(classify("not json"), StreamEvent::Unreadable);
    }

    #[test]
    fn error_events_are_named_by_code_then_type() {
        let with_code = r#"{"error":{"message":"m","type":"server_error","param":null,"code":"upstream_timeout"}}"#;
        assert_eq!(
            classify(with_code),
            StreamEvent::Error("upstream_timeout".into())
        );
        let type_only =
            r#"{"error":{"message":"m","type":"server_error","param":null,"code":null}}"#;
        assert_eq!(
            classify(type_only),
            StreamEvent::Error("server_error".into())
        );
        assert_eq!(
            classify(r#"{"error":"boom"}"#),
            StreamEvent::Error("message".into())
        );
        assert_eq!(
            classify(r#"{"error":{}}"#),
            StreamEvent::Error("unknown".into())
        );
    }
}
