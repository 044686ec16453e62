//! The Messages API's wire work, each beside a baseline measured in the same run (the
//! machines are shared and noisy: read the ratios, not the absolute times).
//!
//! `cargo bench -p aiproxy-anthropic --bench wire`

#![allow(clippy::unwrap_used, reason = "benchmark inputs are fixed and valid")]

use std::hint::black_box;

use aiproxy_anthropic::{
    MessageEventWriter, MessageResponse, MessagesRequest, messages_request_to_ollama,
};
use criterion::{Criterion, criterion_group, criterion_main};

const REQUEST: &[u8] = br#"{"model":"llama3.2","max_tokens":200,"system":"You are a concise assistant.","messages":[{"role":"user","content":[{"type":"text","text":"Why is the sky blue? Answer in one sentence."}]}],"temperature":0.2}"#;

const ANSWER: &[u8] = br#"{"model":"llama3.2","created_at":"2025-08-20T13:48:24.316155Z","message":{"role":"assistant","content":"The sky looks blue because air molecules scatter the short blue wavelengths of sunlight far more than the longer red ones (Rayleigh scattering)."},"done":true,"done_reason":"stop","total_duration":812345678,"load_duration":12345678,"prompt_eval_count":31,"prompt_eval_duration":23456789,"eval_count":29,"eval_duration":765432109}"#;

const LINE: &[u8] = br#"{"model":"llama3.2","created_at":"2025-08-20T13:48:24.316155Z","message":{"role":"assistant","content":" Rayleigh"},"done":false}"#;

fn request_translation(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    group.bench_function("baseline: parse body as serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(REQUEST)))
    });
    group.bench_function("parse + translate to Ollama + serialise", |b| {
        b.iter(|| {
            let request: MessagesRequest = serde_json::from_slice(black_box(REQUEST)).unwrap();
            let mut translated = messages_request_to_ollama(request).unwrap();
            translated.limit_completion(200);
            serde_json::to_vec(&translated.request).unwrap()
        })
    });
    group.finish();
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
    group.bench_function("Ollama answer -> message bytes", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let answer = black_box(&answer).clone();
            MessageResponse::from_ollama(answer, "0123456789abcdef", "llama3.2".into())
                .write_json(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn stream_translation(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream line");
    group.bench_function("baseline: parse NDJSON line as serde_json::Value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(LINE)))
    });
    group.bench_function("NDJSON line -> content_block_delta SSE event", |b| {
        let mut writer = MessageEventWriter::new("0123456789abcdef", "llama3.2".into(), 31);
        let mut out = Vec::with_capacity(512);
        // message_start, ping and the text block's start are written once, here.
        let chunk: aiproxy_ollama::ChatResponse = serde_json::from_slice(LINE).unwrap();
        writer.write_deltas(&mut out, chunk.message.unwrap());
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
    group.bench_function(
        "a whole one-line stream (message_start ... message_stop)",
        |b| {
            let mut out = Vec::with_capacity(2048);
            b.iter(|| {
                out.clear();
                let mut writer = MessageEventWriter::new("0123456789abcdef", "llama3.2".into(), 31);
                let chunk: aiproxy_ollama::ChatResponse =
                    serde_json::from_slice(black_box(LINE)).unwrap();
                writer.write_deltas(&mut out, chunk.message.unwrap());
                writer.write_finish(&mut out, Some("stop"));
                writer.write_usage(&mut out, 31, 20);
                black_box(out.len())
            })
        },
    );
    group.finish();
}

criterion_group!(
    benches,
    request_translation,
    answer_translation,
    stream_translation
);
criterion_main!(benches);
