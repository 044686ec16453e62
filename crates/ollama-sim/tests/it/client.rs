//! A raw HTTP/1.1 client over a tokio socket, so tests see the exact framing (chunked or not,
//! terminated or cut) that a real client library would smooth over.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aiproxy_ollama_sim::{OllamaSim, SimControl, SimStats};
use serde_json::Value;
use tokio::net::TcpStream;

/// Generous bound for anything that should happen promptly; only hit when a test is broken.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn start() -> OllamaSim {
    start_with(aiproxy_ollama_sim::SimConfig::default()).await
}

pub async fn start_with(config: aiproxy_ollama_sim::SimConfig) -> OllamaSim {
    OllamaSim::start(config).await.expect("simulator starts")
}

/// A complete exchange as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body with any chunk framing removed.
    pub body: Vec<u8>,
    /// Chunked: the terminating zero chunk arrived. Otherwise: `Content-Length` bytes arrived.
    pub complete: bool,
    pub chunked: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text()))
    }

    /// The server-sent events as `(event name, data)`; asserts the framing (`event:` and
    /// `data:` lines, each event ended by a blank line).
    pub fn events(&self) -> Vec<(Option<String>, String)> {
        let text = self.text();
        assert!(
            text.is_empty() || text.ends_with("\n\n"),
            "unterminated last event: {text:?}"
        );
        text.split_terminator("\n\n")
            .map(|event| {
                let mut name = None;
                let mut data = None;
                for line in event.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data = Some(value.to_owned());
                    } else {
                        panic!("unexpected SSE line {line:?} in {text:?}");
                    }
                }
                (
                    name,
                    data.unwrap_or_else(|| panic!("event without data: {event:?}")),
                )
            })
            .collect()
    }

    /// The `data` of every event parsed as JSON, except a final `[DONE]`, which must be there
    /// when `done` is true.
    pub fn event_data(&self, done: bool) -> Vec<Value> {
        let mut events = self.events();
        if done {
            let (_, last) = events.pop().expect("at least one event");
            assert_eq!(last, "[DONE]");
        }
        events
            .iter()
            .map(|(_, data)| {
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{data:?}: {err}"))
            })
            .collect()
    }

    /// The NDJSON lines, each parsed; panics on a line that is not JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.raw_lines()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|err| panic!("line {line:?}: {err}"))
            })
            .collect()
    }

    /// The NDJSON lines as text, without their `\n`; asserts every line was terminated.
    pub fn raw_lines(&self) -> Vec<String> {
        let text = self.text();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "unterminated last line: {text:?}"
        );
        text.lines().map(str::to_owned).collect()
    }
}

fn request_bytes(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    request.into_bytes()
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        stream.writable().await.expect("socket writable");
        match stream.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("write failed: {err}"),
        }
    }
}

/// Reads what is available; `None` at end of stream (or a reset, which also ends it).
async fn read_some(stream: &TcpStream, into: &mut Vec<u8>) -> Option<usize> {
    loop {
        stream.readable().await.ok()?;
        let mut chunk = [0u8; 16 * 1024];
        match stream.try_read(&mut chunk) {
            Ok(0) => return None,
            Ok(read) => {
                into.extend_from_slice(&chunk[..read]);
                return Some(read);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

/// Sends one request with `Connection: close` and reads until the server closes.
pub async fn send(sim: &OllamaSim, method: &str, path: &str, body: Option<&str>) -> RawResponse {
    let stream = TcpStream::connect(sim.addr()).await.expect("connect");
    write_all(&stream, &request_bytes(sim.addr(), method, path, body)).await;
    let mut raw = Vec::new();
    let read_all = async { while read_some(&stream, &mut raw).await.is_some() {} };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .unwrap_or_else(|_| {
            panic!("{method} {path}: the server did not finish within {DEADLINE:?}")
        });
    parse_response(&raw, method == "HEAD")
}

pub async fn post(sim: &OllamaSim, path: &str, body: &Value) -> RawResponse {
    send(sim, "POST", path, Some(&body.to_string())).await
}

pub async fn get(sim: &OllamaSim, path: &str) -> RawResponse {
    send(sim, "GET", path, None).await
}

/// Status, headers, and the bytes after the head.
type Head<'a> = (u16, Vec<(String, String)>, &'a [u8]);

fn split_head(raw: &[u8]) -> Option<Head<'_>> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Some((status, headers, &raw[end + 4..]))
}

pub fn parse_response(raw: &[u8], head_only: bool) -> RawResponse {
    let (status, headers, rest) = split_head(raw).unwrap_or_else(|| {
        panic!(
            "no complete response head in {:?}",
            String::from_utf8_lossy(raw)
        )
    });
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
        complete: true,
        chunked: false,
    };
    if head_only {
        return response;
    }
    if response
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        let (body, complete) = dechunk(rest);
        response.body = body;
        response.complete = complete;
        response.chunked = true;
    } else {
        response.body = rest.to_vec();
        if let Some(length) = response.header("content-length") {
            response.complete = length.parse::<usize>().ok() == Some(rest.len());
        }
    }
    response
}

/// Removes chunk framing as far as the bytes go; true when the zero chunk ended it.
pub fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap_or("");
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (body, false);
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (body, rest.starts_with(b"\r\n"));
        }
        if rest.len() < size {
            body.extend_from_slice(rest);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// A request whose response is read bit by bit, for streams that stall or get abandoned.
pub struct OpenStream {
    stream: TcpStream,
    raw: Vec<u8>,
}

impl OpenStream {
    pub async fn post(sim: &OllamaSim, path: &str, body: &Value) -> Self {
        Self::send(sim, "POST", path, Some(&body.to_string())).await
    }

    pub async fn send(sim: &OllamaSim, method: &str, path: &str, body: Option<&str>) -> Self {
        let stream = TcpStream::connect(sim.addr()).await.expect("connect");
        write_all(&stream, &request_bytes(sim.addr(), method, path, body)).await;
        Self {
            stream,
            raw: Vec::new(),
        }
    }

    fn parsed(&self) -> Option<RawResponse> {
        split_head(&self.raw)?;
        Some(parse_response(&self.raw, false))
    }

    /// Reads until the response holds at least `count` complete NDJSON lines.
    pub async fn read_lines(&mut self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(response) = self.parsed() {
                let text = String::from_utf8_lossy(&response.body).into_owned();
                let complete: Vec<String> = text
                    .split_inclusive('\n')
                    .filter(|line| line.ends_with('\n'))
                    .map(|line| line.trim_end_matches('\n').to_owned())
                    .collect();
                if complete.len() >= count {
                    return complete;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, read_some(&self.stream, &mut self.raw)).await;
            match read {
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "stream ended before {count} lines: {:?}",
                    String::from_utf8_lossy(&self.raw)
                ),
                Err(_) => panic!(
                    "no {count} lines within {DEADLINE:?}: {:?}",
                    String::from_utf8_lossy(&self.raw)
                ),
            }
        }
    }

    /// Asserts the server sends nothing more for `quiet`, and keeps the connection open.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let before = self.raw.len();
        match tokio::time::timeout(quiet, read_some(&self.stream, &mut self.raw)).await {
            Err(_) => {}
            Ok(Some(_)) => panic!(
                "expected silence, got {:?}",
                String::from_utf8_lossy(&self.raw[before..])
            ),
            Ok(None) => panic!("expected an open connection, but the server closed it"),
        }
    }

    pub fn received(&self) -> &[u8] {
        &self.raw
    }
}

/// Polls the stats until `check` holds, so tests never race the server's bookkeeping.
pub async fn eventually(
    control: &SimControl,
    what: &str,
    check: impl Fn(&SimStats) -> bool,
) -> SimStats {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = control.stats();
        if check(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; stats: {stats:#?}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `created_at` as Go writes it: `YYYY-MM-DDTHH:MM:SS[.1-9 digits]Z`.
pub fn assert_go_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("created_at is not a string: {value}"));
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    assert!(text.len() >= 20 && text.ends_with('Z'), "{text}");
    assert!(
        digits(0..4) && bytes[4] == b'-' && digits(5..7) && bytes[7] == b'-' && digits(8..10),
        "{text}"
    );
    assert!(
        bytes[10] == b'T'
            && digits(11..13)
            && bytes[13] == b':'
            && digits(14..16)
            && bytes[16] == b':'
            && digits(17..19),
        "{text}"
    );
    let fraction = &text[19..text.len() - 1];
    if !fraction.is_empty() {
        let digits = &fraction[1..];
        assert!(
            fraction.starts_with('.') && (1..=9).contains(&digits.len()),
            "{text}"
        );
        assert!(
            digits.bytes().all(|b| b.is_ascii_digit()) && !digits.ends_with('0'),
            "{text}"
        );
    }
}
