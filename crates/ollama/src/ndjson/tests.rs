use std::time::Duration;

use awc::error::PayloadError;
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::TimeoutPhase;
use crate::test_support::{HTTPRR_FIXTURES, ndjson_lines, recorded};

fn raw_lines(decoder: &mut NdjsonDecoder) -> Vec<Result<Vec<u8>, OllamaError>> {
    std::iter::from_fn(|| decoder.next_raw_line()).collect()
}

fn decode_all(chunks: &[&[u8]], max_line_bytes: usize) -> Vec<Result<Vec<u8>, OllamaError>> {
    let mut decoder = NdjsonDecoder::with_max_line_bytes(max_line_bytes);
    let mut lines = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        lines.extend(raw_lines(&mut decoder));
    }
    decoder.finish();
    lines.extend(raw_lines(&mut decoder));
    lines
}

fn ok_lines(lines: Vec<Result<Vec<u8>, OllamaError>>) -> Vec<Vec<u8>> {
    lines.into_iter().map(Result::unwrap).collect()
}

#[test]
fn several_lines_in_one_chunk_and_one_line_over_several_chunks() {
    let lines = decode_all(&[b"{\"a\":1}\n{\"b\"", b":2}\n{\"c", b"\":3}\n"], 1024);
    assert_eq!(
        ok_lines(lines),
        vec![
            b"{\"a\":1}".to_vec(),
            b"{\"b\":2}".to_vec(),
            b"{\"c\":3}".to_vec()
        ]
    );
}

#[test]
fn crlf_and_blank_lines_are_handled() {
    let lines = decode_all(&[b"\r\n{\"a\":1}\r", b"\n\n  \n\t\r\n{\"b\":2}\r\n"], 1024);
    assert_eq!(
        ok_lines(lines),
        vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
    );
}

#[test]
fn a_final_line_without_newline_needs_finish() {
    let mut decoder = NdjsonDecoder::new();
    decoder.push(b"{\"a\":1}");
    assert!(decoder.next_raw_line().is_none());
    decoder.finish();
    assert_eq!(decoder.next_raw_line().unwrap().unwrap(), b"{\"a\":1}");
    decoder.finish();
    assert!(
        decoder.next_raw_line().is_none(),
        "finishing twice adds nothing"
    );
}

#[test]
fn a_too_long_line_is_reported_once_and_the_next_line_still_decodes() {
    let long = [b'x'; 40];
    let lines = decode_all(&[&long[..15], &long[15..], b"\n{\"ok\":true}\n"], 32);
    assert_eq!(lines.len(), 2);
    assert!(
        matches!(&lines[0], Err(OllamaError::InvalidResponse { message }) if message.contains("32"))
    );
    assert_eq!(lines[1].as_ref().unwrap(), b"{\"ok\":true}");
}

#[test]
fn memory_stays_bounded_while_a_long_line_is_skipped() {
    let mut decoder = NdjsonDecoder::with_max_line_bytes(64);
    for _ in 0..1000 {
        decoder.push(&[b'y'; 100]);
    }
    assert!(decoder.partial.capacity() <= 64);
    assert_eq!(raw_lines(&mut decoder).len(), 1);
    decoder.push(b"\n{}\n");
    assert_eq!(ok_lines(raw_lines(&mut decoder)), vec![b"{}".to_vec()]);
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted() {
    let line = vec![b'7'; 16];
    let lines = decode_all(&[&line, b"\n"], 16);
    assert_eq!(ok_lines(lines), vec![line]);
}

#[test]
fn an_error_line_becomes_a_stream_error() {
    let mut decoder = NdjsonDecoder::new();
    decoder.push(b"{\"error\":\"an error was encountered while running the model\"}\n");
    decoder.push(b"{\"error\":{\"code\":7}}\n");
    assert_eq!(
        decoder.next_line::<ChatResponse>().unwrap().unwrap_err(),
        OllamaError::Stream {
            message: "an error was encountered while running the model".into()
        }
    );
    assert_eq!(
        decoder.next_line::<ChatResponse>().unwrap().unwrap_err(),
        OllamaError::Stream {
            message: "{\"code\":7}".into()
        }
    );
}

#[test]
fn a_null_error_or_the_word_error_in_content_is_not_an_error() {
    let mut decoder = NdjsonDecoder::new();
    decoder.push(b"{\"error\":null,\"done\":true}\n");
    decoder.push(b"{\"message\":{\"role\":\"assistant\",\"content\":\"\\\"error\\\": no\"},\"done\":false}\n");
    assert!(decoder.next_line::<ChatResponse>().unwrap().unwrap().done);
    let line = decoder.next_line::<ChatResponse>().unwrap().unwrap();
    assert_eq!(line.message.unwrap().content, "\"error\": no");
}

#[test]
fn invalid_json_is_reported_and_decoding_continues() {
    let mut decoder = NdjsonDecoder::new();
    decoder.push(b"{\"model\":\"m\",\"done\":fal\n{\"done\":\"yes\"}\n{\"done\":true}\n");
    for _ in 0..2 {
        assert!(matches!(
            decoder.next_line::<ChatResponse>(),
            Some(Err(OllamaError::InvalidResponse { .. }))
        ));
    }
    assert!(decoder.next_line::<ChatResponse>().unwrap().unwrap().done);
}

/// The full text of every recorded body, for the chunking properties.
fn recorded_bodies() -> Vec<Vec<u8>> {
    HTTPRR_FIXTURES
        .iter()
        .map(|name| recorded(name).response_body)
        .collect()
}

/// Cuts `bytes` at the given points (taken modulo the length, in any order).
fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks.push(&bytes[start..]);
    chunks
}

proptest! {
    #[test]
    fn any_chunking_of_a_recorded_body_yields_the_recorded_lines(
        fixture in 0..HTTPRR_FIXTURES.len(),
        points in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let body = &recorded_bodies()[fixture];
        let lines = ok_lines(decode_all(&split_at_points(body, &points), DEFAULT_MAX_LINE_BYTES));
        prop_assert_eq!(&lines, &ndjson_lines(body));
        for line in &lines {
            prop_assert!(serde_json::from_slice::<Value>(line).is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_never_matters(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'{'), Just(b'}'), Just(b' '), any::<u8>()],
            0..400,
        ),
        points in proptest::collection::vec(any::<usize>(), 0..20),
        max_line_bytes in 0usize..64,
    ) {
        let whole = decode_all(&[&bytes], max_line_bytes);
        let chunked = decode_all(&split_at_points(&bytes, &points), max_line_bytes);
        prop_assert_eq!(&whole, &chunked);
        for line in whole.into_iter().flatten() {
            prop_assert!(line.len() <= max_line_bytes);
            prop_assert!(!line.contains(&b'\n'));
            let mut decoder = NdjsonDecoder::new();
            decoder.push(&line);
            decoder.finish();
            let _ = decoder.next_line::<ChatResponse>();
        }
    }
}

fn body(chunks: Vec<Result<&'static [u8], PayloadError>>) -> BodyStream {
    Box::pin(stream::iter(
        chunks
            .into_iter()
            .map(|chunk| chunk.map(Bytes::from_static)),
    ))
}

const DELTA: &[u8] =
    b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n";
const DONE: &[u8] = b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":1}\n";

async fn collect(stream: ChatStream) -> Vec<Result<ChatResponse, OllamaError>> {
    stream.collect().await
}

#[actix_rt::test]
async fn a_complete_stream_yields_every_line_then_ends() {
    let stream = ChatStream::new(
        body(vec![Ok(DELTA), Ok(DELTA), Ok(DONE)]),
        Duration::from_secs(60),
    );
    let items = collect(stream).await;
    assert_eq!(items.len(), 3);
    let last = items[2].as_ref().unwrap();
    assert!(last.done && last.eval_count == Some(1));
}

#[actix_rt::test]
async fn a_recorded_stream_in_one_chunk_decodes() {
    let recorded_body = recorded("chat-stream-stop.httprr").response_body;
    let chunk: &'static [u8] = Vec::leak(recorded_body);
    let items = collect(ChatStream::new(
        body(vec![Ok(chunk)]),
        Duration::from_secs(60),
    ))
    .await;
    let text: String = items
        .iter()
        .map(|item| {
            item.as_ref()
                .unwrap()
                .message
                .as_ref()
                .unwrap()
                .content
                .clone()
        })
        .collect();
    assert_eq!(text, "Okay, here we go!\n\n1, 2, 3, 4, 5\n");
}

#[actix_rt::test]
async fn nothing_after_the_done_line_is_yielded() {
    let stream = ChatStream::new(
        body(vec![Ok(DONE), Ok(DELTA), Ok(b"garbage\n")]),
        Duration::from_secs(60),
    );
    let items = collect(stream).await;
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().unwrap().done);
}

#[actix_rt::test]
async fn a_body_that_ends_before_done_is_interrupted() {
    let items = collect(ChatStream::new(
        body(vec![Ok(DELTA), Ok(b"{\"done\":fa")]),
        Duration::from_secs(60),
    ))
    .await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[0].is_ok());
    assert!(matches!(items[1], Err(OllamaError::InvalidResponse { .. })));
    assert!(matches!(items[2], Err(OllamaError::Interrupted { .. })));
}

#[actix_rt::test]
async fn a_broken_body_is_interrupted() {
    let broken = Err(PayloadError::Incomplete(None));
    let items = collect(ChatStream::new(
        body(vec![Ok(DELTA), broken, Ok(DONE)]),
        Duration::from_secs(60),
    ))
    .await;
    assert_eq!(items.len(), 2);
    assert!(matches!(items[1], Err(OllamaError::Interrupted { .. })));
}

#[actix_rt::test]
async fn an_error_line_ends_the_stream() {
    let error_line: &[u8] = b"{\"error\":\"an error was encountered while running the model\"}\n";
    let items = collect(ChatStream::new(
        body(vec![Ok(DELTA), Ok(error_line), Ok(DONE)]),
        Duration::from_secs(60),
    ))
    .await;
    assert_eq!(items.len(), 2);
    assert!(
        matches!(&items[1], Err(OllamaError::Stream { message }) if message.contains("running the model"))
    );
}

#[actix_rt::test]
async fn an_invalid_line_is_reported_and_the_stream_goes_on() {
    let items = collect(ChatStream::new(
        body(vec![Ok(b"not json\n"), Ok(DELTA), Ok(DONE)]),
        Duration::from_secs(60),
    ))
    .await;
    assert_eq!(items.len(), 3);
    assert!(matches!(items[0], Err(OllamaError::InvalidResponse { .. })));
    assert!(items[2].as_ref().unwrap().done);
}

// Tokio's paused clock: the idle deadline passes as soon as nothing else can run, so the
// timeout is a real one and the test takes no time.
#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out_as_idle_and_ends() {
    let stalled: BodyStream =
        Box::pin(stream::iter([Ok(Bytes::from_static(DELTA))]).chain(stream::pending()));
    let started = tokio::time::Instant::now();
    let items = collect(ChatStream::new(stalled, Duration::from_secs(120))).await;
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert_eq!(
        items[1].as_ref().unwrap_err(),
        &OllamaError::Timeout {
            phase: TimeoutPhase::Idle
        }
    );
    // Not before the idle timeout (on the paused clock, so this is no wall-time measurement).
    assert!(started.elapsed() >= Duration::from_secs(120));
}

#[tokio::test(start_paused = true)]
async fn time_the_consumer_spends_between_polls_is_not_upstream_idleness() {
    let idle_timeout = Duration::from_secs(120);
    // The second chunk comes a second after it is asked for, well within the idle timeout.
    let prompt_after_asked = stream::once(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(Bytes::from_static(DONE))
    });
    let upstream: BodyStream =
        Box::pin(stream::iter([Ok(Bytes::from_static(DELTA))]).chain(prompt_after_asked));
    let mut stream = ChatStream::new(upstream, idle_timeout);
    assert!(stream.next().await.unwrap().is_ok());
    // A slow consumer (say, a client on a bad link) takes longer than the idle timeout.
    tokio::time::sleep(idle_timeout * 2).await;
    assert!(stream.next().await.unwrap().unwrap().done);
    assert!(stream.next().await.is_none());
    assert!(stream.is_terminated());
}

#[actix_rt::test]
async fn the_generate_stream_uses_the_same_machinery() {
    let recorded_body = recorded("generate-stream.httprr").response_body;
    let chunk: &'static [u8] = Vec::leak(recorded_body);
    let items: Vec<_> = GenerateStream::new(body(vec![Ok(chunk)]), Duration::from_secs(60))
        .collect()
        .await;
    assert!(items.iter().all(Result::is_ok));
    assert!(items.last().unwrap().as_ref().unwrap().done);
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _ = deadline_after(Duration::MAX);
    });
}
