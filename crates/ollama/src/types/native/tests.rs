use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::test_support::{ndjson_lines, recorded};

fn parse(endpoint: NativeEndpoint, body: &str) -> Result<NativeRequest, NativeRequestError> {
    NativeRequest::parse(endpoint, body.as_bytes())
}

fn written(request: &NativeRequest) -> Value {
    serde_json::from_slice(&request.to_vec()).unwrap()
}

#[test]
fn unknown_fields_are_kept_with_their_exact_bytes() {
    let body = r#"{"model":"qwen3:8b","messages":[{"role":"user","content":"hi \u00e9","images":["iVBORw0KGgo="]}],
        "tools":[],"think":"high","logprobs":true,"top_logprobs":3,"_debug_render_only":false,
        "format":{"type":"object"},"x":1.50,"y":1e400}"#;
    let request = parse(NativeEndpoint::Chat, body).unwrap();
    assert_eq!(request.model, "qwen3:8b");
    assert_eq!(request.stream, None);
    assert!(request.streams(), "chat streams unless told otherwise");
    let out = String::from_utf8(request.to_vec()).unwrap();
    // The raw text is kept: the escape, the number's spelling, a number serde could not hold.
    for kept in [
        r#""content":"hi \u00e9""#,
        r#""x":1.50"#,
        r#""y":1e400"#,
        r#""think":"high""#,
        r#""_debug_render_only":false"#,
    ] {
        assert!(out.contains(kept), "{kept} missing from {out}");
    }
    assert!(
        out.starts_with(r#"{"model":"qwen3:8b","messages":"#),
        "{out}"
    );
}

#[test]
fn owned_fields_are_read_and_rewritten() {
    let body = r#"{"model":"m","stream":false,"options":{"num_ctx":8192,"temperature":0.2},"keep_alive":"10m","prompt":"Hi"}"#;
    let mut request = parse(NativeEndpoint::Generate, body).unwrap();
    assert_eq!(request.stream, Some(false));
    assert!(!request.streams());
    assert_eq!(request.keep_alive, Some(json!("10m")));
    request.set_num_predict(64);
    request.keep_alive = Some(KeepAlive::For(Duration::from_secs(300)).to_value());
    request.model = "m:latest".into();
    assert_eq!(
        written(&request),
        json!({"model": "m:latest", "stream": false,
               "options": {"num_ctx": 8192, "temperature": 0.2, "num_predict": 64},
               "keep_alive": 300, "prompt": "Hi"})
    );

    let mut bare = parse(NativeEndpoint::Embed, r#"{"model":"e","input":["a"]}"#).unwrap();
    assert!(!bare.streams(), "embeddings never stream");
    bare.set_num_predict(1);
    assert_eq!(
        written(&bare),
        json!({"model": "e", "options": {"num_predict": 1}, "input": ["a"]})
    );
}

#[test]
fn owned_fields_match_as_go_matches_them() {
    // Go's encoding/json matches field names case-insensitively, with ſ and K folding to s
    // and k: each of these is Ollama's `options`, `stream` or `keep_alive`.
    let request = parse(
        NativeEndpoint::Chat,
        r#"{"MODEL":"m","Optionſ":{"num_ctx":1},"STREAM":true,"\u212aeep_alive":0}"#,
    )
    .unwrap();
    assert_eq!(request.model, "m");
    assert_eq!(
        request.options,
        Some(json!({"num_ctx": 1}).as_object().unwrap().clone())
    );
    assert_eq!(request.stream, Some(true));
    assert_eq!(request.keep_alive, Some(json!(0)));
    assert_eq!(
        written(&request),
        json!({"model": "m", "stream": true, "options": {"num_ctx": 1}, "keep_alive": 0})
    );

    // Ollama would merge two `options` objects; the proxy would check only one.
    let twice = parse(
        NativeEndpoint::Chat,
        r#"{"model":"m","options":{},"Options":{"num_ctx":999999}}"#,
    )
    .unwrap_err();
    assert_eq!(twice.field, Some("options"));
    assert!(twice.message.contains("more than once"), "{twice}");
}

#[test]
fn bad_bodies_are_refused_naming_the_field() {
    let cases = [
        ("[1]", None),
        ("not json", None),
        (r#"{"messages":[]}"#, Some("model")),
        (r#"{"model":""}"#, Some("model")),
        (r#"{"model":null}"#, Some("model")),
        (r#"{"model":7}"#, Some("model")),
        (r#"{"model":"m","stream":"yes"}"#, Some("stream")),
        (r#"{"model":"m","options":[1]}"#, Some("options")),
    ];
    for (body, field) in cases {
        let error = parse(NativeEndpoint::Chat, body).unwrap_err();
        assert_eq!(error.field, field, "{body}: {error}");
    }
    let nulls = parse(
        NativeEndpoint::Chat,
        r#"{"model":"m","stream":null,"options":null,"keep_alive":null}"#,
    )
    .unwrap();
    assert_eq!(
        (nulls.stream, nulls.options, nulls.keep_alive),
        (None, None, None),
        "null is absent, as for Ollama"
    );
}

#[test]
fn prompt_text_counts_strings_but_not_images() {
    let chat = parse(
        NativeEndpoint::Chat,
        r#"{"model":"m","messages":[{"role":"user","content":"12345678","images":["AAAAAAAAAAAAAAAAAAAAAAAA"]},
            {"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":"xy"}}}]}],
            "options":{"stop":["zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"]}}"#,
    )
    .unwrap();
    // "user" 4 + "12345678" 8 + "assistant" 9 + "" + "f" 1 + "xy" 2 = 24.
    assert_eq!(chat.prompt_text_bytes(), 24);
    assert_eq!(chat.estimated_prompt_tokens(), 6);

    let generate = parse(
        NativeEndpoint::Generate,
        r#"{"model":"m","prompt":"abcd","system":"ef","suffix":"g","images":["AAAA"]}"#,
    )
    .unwrap();
    assert_eq!(generate.prompt_text_bytes(), 7);
    assert_eq!(generate.estimated_prompt_tokens(), 2, "rounded up");

    let embed = parse(
        NativeEndpoint::Embed,
        r#"{"model":"m","input":["ab","cd"]}"#,
    )
    .unwrap();
    assert_eq!(embed.prompt_text_bytes(), 4);
    let legacy = parse(
        NativeEndpoint::Embeddings,
        r#"{"model":"m","prompt":"abc"}"#,
    )
    .unwrap();
    assert_eq!(legacy.prompt_text_bytes(), 3);
}

#[test]
fn an_empty_prompt_only_loads_or_unloads() {
    let empty = [
        (NativeEndpoint::Chat, r#"{"model":"m"}"#),
        (NativeEndpoint::Chat, r#"{"model":"m","messages":[ ]}"#),
        (NativeEndpoint::Chat, r#"{"model":"m","messages":null}"#),
        (NativeEndpoint::Generate, r#"{"model":"m","prompt":""}"#),
        (NativeEndpoint::Embed, r#"{"model":"m","input":[]}"#),
        (NativeEndpoint::Embeddings, r#"{"model":"m","prompt":""}"#),
    ];
    for (endpoint, body) in empty {
        assert!(parse(endpoint, body).unwrap().has_no_prompt(), "{body}");
    }
    let full = [
        (
            NativeEndpoint::Chat,
            r#"{"model":"m","messages":[{"role":"user","content":""}]}"#,
        ),
        (NativeEndpoint::Generate, r#"{"model":"m","prompt":" "}"#),
        (NativeEndpoint::Embed, r#"{"model":"m","input":"x"}"#),
    ];
    for (endpoint, body) in full {
        assert!(!parse(endpoint, body).unwrap().has_no_prompt(), "{body}");
    }
}

#[test]
fn keep_alive_reads_as_ollama_reads_it() {
    let secs = |s: f64| Ok(KeepAlive::For(Duration::from_secs_f64(s)));
    let cases = [
        (json!(300), secs(300.0)),
        (json!(1.5), secs(1.5)),
        (json!(0), secs(0.0)),
        (json!(-1), Ok(KeepAlive::Forever)),
        (json!("5m"), secs(300.0)),
        (json!("1h30m"), secs(5400.0)),
        (json!("250ms"), secs(0.25)),
        (json!("1.5h"), secs(5400.0)),
        (json!("0"), secs(0.0)),
        (json!("-1s"), Ok(KeepAlive::Forever)),
        (json!("-0"), secs(0.0)),
        (json!("+2s"), secs(2.0)),
    ];
    for (value, expected) in cases {
        assert_eq!(KeepAlive::parse(&value), expected, "{value}");
    }
    for bad in [
        json!("300"),
        json!("abc"),
        json!("5 m"),
        json!("5x"),
        json!(""),
        json!("-"),
        json!("."),
        json!(true),
        json!([1]),
        json!("9999999999h"),
    ] {
        assert!(KeepAlive::parse(&bad).is_err(), "{bad}");
    }
    assert_eq!(
        KeepAlive::parse(&json!("300")).unwrap_err(),
        r#"time: missing unit in duration "300""#
    );
}

#[test]
fn keep_alive_is_written_so_ollama_reads_it_back() {
    for keep_alive in [
        KeepAlive::Forever,
        KeepAlive::For(Duration::ZERO),
        KeepAlive::For(Duration::from_secs(600)),
        KeepAlive::For(Duration::from_millis(250)),
    ] {
        assert_eq!(KeepAlive::parse(&keep_alive.to_value()), Ok(keep_alive));
    }
    assert_eq!(KeepAlive::Forever.to_value(), json!(-1));
    assert_eq!(
        KeepAlive::For(Duration::from_millis(1500)).to_value(),
        json!("1500000000ns")
    );
}

#[test]
fn recorded_stream_lines_give_their_end_and_usage() {
    for (name, reason, counts) in [
        ("chat-stream-stop.httprr", "stop", (16, 22)),
        ("chat-stream-length.httprr", "length", (15, 50)),
    ] {
        let lines = ndjson_lines(&recorded(name).response_body);
        let summaries: Vec<LineSummary<'_>> = lines
            .iter()
            .map(|line| LineSummary::read(line).unwrap())
            .collect();
        let (last, deltas) = summaries.split_last().unwrap();
        assert!(deltas.iter().all(|s| !s.done && s.error.is_none()));
        assert!(deltas.iter().filter(|s| s.carries_output()).count() > 2);
        assert!(last.done);
        assert_eq!(last.done_reason.as_ref().map(Text::as_str), Some(reason));
        assert!(
            matches!(last.done_reason, Some(Text(Cow::Borrowed(_)))),
            "read in place"
        );
        assert_eq!(
            (last.prompt_eval_count, last.eval_count),
            (Some(counts.0), Some(counts.1))
        );
    }
    let generate = ndjson_lines(&recorded("generate-stream.httprr").response_body);
    let first = LineSummary::read(&generate[0]).unwrap();
    assert!(first.carries_output() && !first.done);
    let whole = recorded("generate-nonstream.httprr").response_body;
    let whole = LineSummary::read(&whole).unwrap();
    assert_eq!(
        (whole.prompt_eval_count, whole.eval_count),
        (Some(15), Some(65))
    );
    let embed = recorded("embed.httprr").response_body;
    let embed = LineSummary::read(&embed).unwrap();
    assert_eq!(embed.prompt_eval_count, Some(2));
}

#[test]
fn lines_with_errors_tool_calls_or_nothing_are_told_apart() {
    let error = LineSummary::read(br#"{"error":"model \"x\" not found"}"#).unwrap();
    assert_eq!(
        error.error.as_ref().map(Text::as_str),
        Some(r#"model "x" not found"#)
    );
    assert!(!error.done && !error.carries_output());

    let call = LineSummary::read(
        br#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}"#,
    )
    .unwrap();
    assert!(call.carries_output());
    let empty = LineSummary::read(
        br#"{"message":{"role":"assistant","content":"","thinking":null,"tool_calls":[]},"done":null,"logprobs":[{"token":"x"}]}"#,
    )
    .unwrap();
    assert!(!empty.carries_output() && !empty.done);
    assert!(LineSummary::read(b"not json").is_err());
}

proptest! {
    /// Whatever the client sends besides the owned fields comes back with the same values.
    #[test]
    fn other_fields_survive_a_round_trip(
        extra in prop::collection::btree_map("[a-z_]{1,8}", any::<(bool, i32, String)>(), 0..6)
    ) {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!("m"));
        for (key, (flag, number, text)) in &extra {
            if ["model", "stream", "options", "keep_alive"].contains(&key.as_str()) {
                continue;
            }
            body.insert(key.clone(), json!({"flag": flag, "number": number, "text": text}));
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        let request = NativeRequest::parse(NativeEndpoint::Generate, &bytes).unwrap();
        prop_assert_eq!(written(&request), Value::Object(body));
    }
}
