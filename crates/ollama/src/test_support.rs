//! Reads the recorded Ollama exchanges in the repository's `tests/fixtures/ollama-recorded/`
//! (sources and licences in its README) for unit tests.

use std::path::PathBuf;

/// One recorded HTTP exchange, with the response body's chunk framing removed.
pub(crate) struct Recorded {
    pub(crate) request_body: Vec<u8>,
    pub(crate) status: u16,
    pub(crate) response_body: Vec<u8>,
}

pub(crate) fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ollama-recorded")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Parses a langchaingo `.httprr` file holding exactly one exchange.
pub(crate) fn recorded(name: &str) -> Recorded {
    let bytes = fixture_bytes(name);
    let rest = bytes
        .strip_prefix(b"httprr trace v1\n")
        .expect("httprr header");
    let newline = rest.iter().position(|&b| b == b'\n').expect("sizes line");
    let sizes = std::str::from_utf8(&rest[..newline]).unwrap();
    let (request_len, response_len) = sizes.split_once(' ').unwrap();
    let request_len: usize = request_len.parse().unwrap();
    let response_len: usize = response_len.parse().unwrap();
    let rest = &rest[newline + 1..];
    assert_eq!(
        rest.len(),
        request_len + response_len,
        "{name}: one exchange"
    );
    let (request, response) = rest.split_at(request_len);

    let (_, request_body) = split_head(request);
    let (response_head, response_body) = split_head(response);
    let head = String::from_utf8_lossy(response_head).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let response_body = if head.contains("transfer-encoding: chunked") {
        dechunk(response_body)
    } else {
        response_body.to_vec()
    };
    Recorded {
        request_body: request_body.to_vec(),
        status,
        response_body,
    }
}

fn split_head(message: &[u8]) -> (&[u8], &[u8]) {
    let end = message
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("end of head");
    (&message[..end], &message[end + 4..])
}

/// Removes HTTP/1.1 chunked framing: `<hex size>\r\n<data>\r\n` ... `0\r\n\r\n`.
pub(crate) fn dechunk(mut framed: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = framed.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&framed[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        framed = &framed[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&framed[..size]);
        assert_eq!(&framed[size..size + 2], b"\r\n");
        framed = &framed[size + 2..];
    }
}

/// The NDJSON lines of a streamed body, split the obvious way (for comparing with decoders).
pub(crate) fn ndjson_lines(body: &[u8]) -> Vec<Vec<u8>> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Every recorded `.httprr` fixture.
pub(crate) const HTTPRR_FIXTURES: &[&str] = &[
    "chat-error-400-no-tools.httprr",
    "chat-format-json.httprr",
    "chat-format-jsonschema.httprr",
    "chat-stream-length.httprr",
    "chat-stream-stop.httprr",
    "embed.httprr",
    "generate-nonstream.httprr",
    "generate-stream.httprr",
];
