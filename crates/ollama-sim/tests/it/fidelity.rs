//! Fidelity against real recorded Ollama traffic: for every recording, the simulator's answer to
//! the same request must have the same status, Content-Type, framing, field names and JSON types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aiproxy_ollama_sim::OllamaSim;
use serde_json::{Value, json};

use crate::client::{RawResponse, assert_go_timestamp, dechunk, post, start};

/// The recordings, kept in the repository (sources and licences in their README).
fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ollama-recorded")
}

/// One exchange of an `.httprr` trace.
struct Recording {
    request_body: Value,
    path: String,
    response: RawResponse,
}

/// Parses langchaingo's `httprr trace v1` format: `<n> <m>\n`, n request bytes, m response bytes.
fn read_httprr(name: &str) -> Recording {
    let bytes =
        std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
    let header = b"httprr trace v1\n";
    assert!(bytes.starts_with(header), "{name}: not an httprr trace");
    let rest = &bytes[header.len()..];
    let newline = rest.iter().position(|b| *b == b'\n').unwrap();
    let sizes = std::str::from_utf8(&rest[..newline]).unwrap();
    let (request_len, response_len) = sizes.split_once(' ').unwrap();
    let (request_len, response_len): (usize, usize) =
        (request_len.parse().unwrap(), response_len.parse().unwrap());
    let request = &rest[newline + 1..newline + 1 + request_len];
    let response = &rest[newline + 1 + request_len..newline + 1 + request_len + response_len];

    let request_line_end = request.iter().position(|b| *b == b'\n').unwrap();
    let request_line = std::str::from_utf8(&request[..request_line_end]).unwrap();
    let url = request_line.split(' ').nth(1).unwrap();
    let path = url
        .split_once("11434")
        .map_or(url, |(_, path)| path)
        .to_owned();
    let body_start = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let request_body = serde_json::from_slice(&request[body_start..]).unwrap();

    let response = crate::client::parse_response(response, false);
    assert!(response.complete, "{name}: recording is incomplete");
    Recording {
        request_body,
        path,
        response,
    }
}

/// JSON type of a value; arrays include their first element's type.
fn type_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "integer".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => format!("array<{}>", items.first().map_or("empty".into(), type_of)),
        Value::Object(_) => "object".into(),
    }
}

fn field_types(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .iter()
        .map(|(key, value)| (key.clone(), type_of(value)))
        .collect()
}

/// Same field names, same types, and the same for the `message` sub-object.
fn assert_same_shape(context: &str, recorded: &Value, simulated: &Value) {
    assert_eq!(
        field_types(simulated),
        field_types(recorded),
        "{context}: top-level fields"
    );
    if let Some(message) = recorded.get("message") {
        assert_eq!(
            field_types(&simulated["message"]),
            field_types(message),
            "{context}: message fields"
        );
    }
    if recorded.get("created_at").is_some() {
        assert_go_timestamp(&simulated["created_at"]);
    }
}

/// The recordings used gemma3:1b; the simulator's counterpart is llama3.2 (or the embedder).
fn retarget(mut body: Value, model: &str) -> Value {
    body["model"] = json!(model);
    body
}

async fn replay(sim: &OllamaSim, recording: &Recording, model: &str) -> RawResponse {
    let mut body = retarget(recording.request_body.clone(), model);
    // Reproduce a `length` ending with the simulator's short replies.
    let recorded_lines = ndjson(&recording.response);
    if recorded_lines
        .last()
        .is_some_and(|last| last["done_reason"] == "length")
    {
        body["options"]["num_predict"] = json!(2);
    }
    post(sim, &recording.path, &body).await
}

fn ndjson(response: &RawResponse) -> Vec<Value> {
    if response.content_type() != "application/x-ndjson" {
        return Vec::new();
    }
    response.lines()
}

async fn assert_stream_matches(name: &str, model: &str) {
    let sim = start().await;
    let recording = read_httprr(name);
    let simulated = replay(&sim, &recording, model).await;
    assert_eq!(
        simulated.status, recording.response.status,
        "{name}: status"
    );
    assert_eq!(
        simulated.content_type(),
        recording.response.content_type(),
        "{name}: content type"
    );
    assert_eq!(
        simulated.chunked, recording.response.chunked,
        "{name}: chunked framing"
    );
    assert!(simulated.complete, "{name}: simulated stream incomplete");

    let recorded = ndjson(&recording.response);
    let produced = simulated.lines();
    let (recorded_last, recorded_tokens) = recorded.split_last().unwrap();
    let (produced_last, produced_tokens) = produced.split_last().unwrap();
    assert!(!produced_tokens.is_empty(), "{name}: no token lines");
    for token in produced_tokens {
        assert_same_shape(&format!("{name} token line"), &recorded_tokens[0], token);
    }
    assert_same_shape(&format!("{name} final line"), recorded_last, produced_last);
    assert_eq!(
        produced_last["done_reason"], recorded_last["done_reason"],
        "{name}: done_reason"
    );
}

#[actix_rt::test]
async fn chat_stream_stop_matches_the_recording() {
    assert_stream_matches("chat-stream-stop.httprr", "llama3.2").await;
}

#[actix_rt::test]
async fn chat_stream_length_matches_the_recording() {
    assert_stream_matches("chat-stream-length.httprr", "llama3.2").await;
}

#[actix_rt::test]
async fn chat_format_streams_match_the_recordings() {
    assert_stream_matches("chat-format-json.httprr", "llama3.2").await;
    assert_stream_matches("chat-format-jsonschema.httprr", "llama3.2").await;
}

#[actix_rt::test]
async fn generate_stream_matches_the_recording() {
    assert_stream_matches("generate-stream.httprr", "llama3.2").await;
}

async fn assert_object_matches(name: &str, model: &str) {
    let sim = start().await;
    let recording = read_httprr(name);
    let simulated = replay(&sim, &recording, model).await;
    assert_eq!(
        simulated.status, recording.response.status,
        "{name}: status"
    );
    assert_eq!(
        simulated.content_type(),
        recording.response.content_type(),
        "{name}: content type"
    );
    assert!(simulated.complete, "{name}: simulated body incomplete");
    assert_same_shape(name, &recording.response.json(), &simulated.json());
}

#[actix_rt::test]
async fn generate_without_stream_matches_the_recording() {
    assert_object_matches("generate-nonstream.httprr", "llama3.2").await;
}

#[actix_rt::test]
async fn embed_matches_the_recording() {
    assert_object_matches("embed.httprr", "nomic-embed-text").await;
    let recording = read_httprr("embed.httprr");
    let recorded_dims = recording.response.json()["embeddings"][0]
        .as_array()
        .unwrap()
        .len();
    let sim = start().await;
    let simulated = replay(&sim, &recording, "nomic-embed-text").await.json();
    assert_eq!(
        simulated["embeddings"][0].as_array().unwrap().len(),
        recorded_dims
    );
    assert_eq!(
        simulated["prompt_eval_count"],
        recording.response.json()["prompt_eval_count"]
    );
}

#[actix_rt::test]
async fn the_no_tools_refusal_matches_the_recording() {
    let sim = start().await;
    let recording = read_httprr("chat-error-400-no-tools.httprr");
    let simulated = replay(&sim, &recording, "moondream").await;
    assert_eq!(simulated.status, 400);
    assert_eq!(simulated.content_type(), recording.response.content_type());
    assert_same_shape("no tools", &recording.response.json(), &simulated.json());
    let recorded = recording.response.json()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    let produced = simulated.json()["error"].as_str().unwrap().to_owned();
    let same_text = |text: &str, model: &str| text.replace(model, "<model>");
    assert_eq!(
        same_text(&produced, "moondream:latest"),
        same_text(&recorded, "gemma3:1b"),
        "the error text differs only in the model name"
    );
}

#[actix_rt::test]
async fn non_streaming_chat_matches_the_semantic_kernel_capture() {
    let path = fixtures_dir().join("sk-chat-nonstream.json");
    let recorded: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let sim = start().await;
    let simulated = post(
        &sim,
        "/api/chat",
        &json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Hello"}], "stream": false}),
    )
    .await;
    assert_eq!(simulated.content_type(), "application/json; charset=utf-8");
    assert_same_shape("sk-chat-nonstream", &recorded, &simulated.json());
}

#[test]
fn the_recorded_stream_dechunks_into_its_lines() {
    let recording = read_httprr("chat-stream-stop.httprr");
    assert!(recording.response.chunked);
    assert!(dechunk(b"0\r\n\r\n").1);
    // 21 token lines and the final line, as the recording's own framing says.
    assert_eq!(recording.response.lines().len(), 22);
}
