//! The proxy's per-request CPU work, each beside a baseline measured in the same run (the
//! machines are shared and noisy: read the ratios, not the absolute times).
//!
//! `cargo bench -p aiproxy-api --bench hot_paths`

#![allow(clippy::unwrap_used, reason = "benchmark inputs are fixed and valid")]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use aiproxy_api::openai::{AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, Usage};
use aiproxy_api::sse::ChatChunkWriter;
use aiproxy_api::translate::{chat_request_to_ollama, requested_completion_tokens};
use aiproxy_domain::{ApiKey, ApiKeyHash};
use criterion::{Criterion, criterion_group, criterion_main};

const REQUEST: &[u8] = br#"{"model":"llama3.2","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Why is the sky blue? Answer in one sentence."}],"stream":false,"max_tokens":200,"temperature":0.2}"#;

const LINE: &[u8] = br#"{"model":"llama3.2","created_at":"2025-08-20T13:48:24.316155Z","message":{"role":"assistant","content":" Rayleigh"},"done":false}"#;

fn request_translation(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    group.bench_function("baseline: parse body as serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(REQUEST)))
    });
    group.bench_function("parse + translate to Ollama + serialise", |b| {
        b.iter(|| {
            let request: ChatCompletionRequest =
                serde_json::from_slice(black_box(REQUEST)).unwrap();
            let requested = requested_completion_tokens(&request);
            let translated = chat_request_to_ollama(request, requested).unwrap();
            serde_json::to_vec(&translated.request).unwrap()
        })
    });
    group.finish();
}

const ANSWER: &[u8] = br#"{"model":"llama3.2","created_at":"2025-08-20T13:48:24.316155Z","message":{"role":"assistant","content":"The sky looks blue because air molecules scatter the short blue wavelengths of sunlight far more than the longer red ones (Rayleigh scattering)."},"done":true,"done_reason":"stop","total_duration":812345678,"load_duration":12345678,"prompt_eval_count":31,"prompt_eval_duration":23456789,"eval_count":29,"eval_duration":765432109}"#;

fn completion(answer: aiproxy_ollama::ChatResponse) -> ChatCompletion {
    let message = answer.message.unwrap_or_default();
    ChatCompletion {
        id: "chatcmpl-0123456789abcdef".into(),
        object: "chat.completion",
        created: 1_700_000_000,
        model: "llama3.2".into(),
        choices: vec![Choice {
            index: 0,
            finish_reason: Some("stop"),
            message: AssistantMessage {
                role: "assistant",
                content: Some(message.content),
                reasoning_content: message.thinking,
                tool_calls: None,
                refusal: None,
            },
            logprobs: None,
        }],
        usage: Usage::new(
            answer.prompt_eval_count.unwrap_or(0),
            answer.eval_count.unwrap_or(0),
        ),
        system_fingerprint: "fp_ollama",
    }
}

fn answer_translation(c: &mut Criterion) {
    let answer: aiproxy_ollama::ChatResponse = serde_json::from_slice(ANSWER).unwrap();
    let mut group = c.benchmark_group("answer");
    group.bench_function(
        "baseline: serialise Ollama's answer (derived Serialize)",
        |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                out.clear();
                serde_json::to_writer(&mut out, black_box(&answer)).unwrap();
                black_box(out.len())
            })
        },
    );
    group.bench_function("Ollama answer -> chat.completion bytes (write_json)", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            completion(black_box(&answer).clone()).write_json(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function(
        "Ollama answer -> chat.completion bytes (derived Serialize)",
        |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                out.clear();
                serde_json::to_writer(&mut out, &completion(black_box(&answer).clone())).unwrap();
                black_box(out.len())
            })
        },
    );
    group.finish();
}

fn stream_translation(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream line");
    group.bench_function("baseline: parse NDJSON line as serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(LINE)))
    });
    group.bench_function("NDJSON line -> chat.completion.chunk SSE event", |b| {
        let mut writer = ChatChunkWriter::new(
            "chatcmpl-0123456789abcdef".into(),
            "llama3.2".into(),
            1_700_000_000,
            true,
        );
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            let chunk: aiproxy_ollama::ChatResponse =
                serde_json::from_slice(black_box(LINE)).unwrap();
            if let Some(message) = chunk.message {
                writer.write_deltas(&mut out, message);
            }
            black_box(out.len())
        })
    });
    group.bench_function("final events (finish, usage, [DONE])", |b| {
        let mut writer = ChatChunkWriter::new(
            "chatcmpl-0123456789abcdef".into(),
            "llama3.2".into(),
            1_700_000_000,
            true,
        );
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            writer.write_finish(&mut out, Some("stop"));
            writer.write_usage(&mut out, Usage::new(31, 20));
            black_box(out.len())
        })
    });
    group.finish();
}

fn key_lookup(c: &mut Criterion) {
    let keys: Vec<ApiKey> = (0..10_000).map(|_| ApiKey::generate()).collect();
    let by_hash: HashMap<ApiKeyHash, Arc<usize>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.hash(), Arc::new(i)))
        .collect();
    let by_text: HashMap<String, Arc<usize>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.expose().to_owned(), Arc::new(i)))
        .collect();
    let presented = keys[4321].expose().to_owned();
    let mut group = c.benchmark_group("key lookup (10k users)");
    group.bench_function("baseline: plain-text key in a HashMap", |b| {
        b.iter(|| by_text.get(black_box(presented.as_str())).cloned())
    });
    group.bench_function("parse + SHA-256 + hash lookup", |b| {
        b.iter(|| {
            let key = ApiKey::parse(black_box(&presented)).unwrap();
            by_hash.get(&key.hash()).cloned()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    request_translation,
    answer_translation,
    stream_translation,
    key_lookup
);
criterion_main!(benches);
