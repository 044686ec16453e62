//! The wire work of every request, each beside a baseline measured in the same run (the
//! machines are shared and noisy: read the ratios, not the absolute times).
//!
//! `cargo bench -p aiproxy-openai --bench wire`

#![allow(clippy::unwrap_used, reason = "benchmark inputs are fixed and valid")]

use std::hint::black_box;

use aiproxy_openai::{
    ChatChunkWriter, ChatCompletion, ChatCompletionRequest, ResponseEventWriter, ResponseObject,
    ResponseSettings, ResponseUsage, ResponsesRequest, Usage, chat_request_to_ollama,
    responses_request_to_ollama,
};
use criterion::{Criterion, criterion_group, criterion_main};

const REQUEST: &[u8] = br#"{"model":"llama3.2","messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"Why is the sky blue? Answer in one sentence."}],"stream":false,"max_tokens":200,"temperature":0.2}"#;

const RESPONSES_REQUEST: &[u8] = br#"{"model":"llama3.2","instructions":"You are a concise assistant.","input":[{"role":"user","content":[{"type":"input_text","text":"Why is the sky blue? Answer in one sentence."}]}],"stream":false,"max_output_tokens":200,"temperature":0.2}"#;

const ANSWER: &[u8] = br#"{"model":"llama3.2","created_at":"2025-08-20T13:48:24.316155Z","message":{"role":"assistant","content":"The sky looks blue because air molecules scatter the short blue wavelengths of sunlight far more than the longer red ones (Rayleigh scattering)."},"done":true,"done_reason":"stop","total_duration":812345678,"load_duration":12345678,"prompt_eval_count":31,"prompt_eval_duration":23456789,"eval_count":29,"eval_duration":765432109}"#;

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
            let mut translated = chat_request_to_ollama(request).unwrap();
            translated.limit_completion(200);
            serde_json::to_vec(&translated.request).unwrap()
        })
    });
    group.bench_function("Responses: parse + translate to Ollama + serialise", |b| {
        b.iter(|| {
            let request: ResponsesRequest =
                serde_json::from_slice(black_box(RESPONSES_REQUEST)).unwrap();
            let mut translated = responses_request_to_ollama(request).unwrap();
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
    group.bench_function("Ollama answer -> chat.completion bytes", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let answer = black_box(&answer).clone();
            ChatCompletion::from_ollama(
                answer,
                "0123456789abcdef",
                "llama3.2".into(),
                1_700_000_000,
            )
            .write_json(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("Ollama answer -> Responses response bytes", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            let answer = black_box(&answer).clone();
            ResponseObject::from_ollama(
                answer,
                "0123456789abcdef",
                "llama3.2".into(),
                1_700_000_000,
                1_700_000_001,
                ResponseSettings::default(),
            )
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
    group.bench_function("NDJSON line -> chat.completion.chunk SSE event", |b| {
        let mut writer =
            ChatChunkWriter::new("0123456789abcdef", "llama3.2".into(), 1_700_000_000, true);
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
    group.bench_function("NDJSON line -> response.output_text.delta SSE event", |b| {
        let mut writer = ResponseEventWriter::new(
            "0123456789abcdef",
            "llama3.2".into(),
            1_700_000_000,
            ResponseSettings::default(),
        );
        let mut out = Vec::with_capacity(512);
        // The lifecycle events and the message's opening events are written once, here.
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
        "Responses: a whole one-line stream (created ... completed)",
        |b| {
            let mut out = Vec::with_capacity(4096);
            b.iter(|| {
                out.clear();
                let mut writer = ResponseEventWriter::new(
                    "0123456789abcdef",
                    "llama3.2".into(),
                    1_700_000_000,
                    ResponseSettings::default(),
                );
                let chunk: aiproxy_ollama::ChatResponse =
                    serde_json::from_slice(black_box(LINE)).unwrap();
                writer.write_deltas(&mut out, chunk.message.unwrap());
                writer.write_finish(&mut out, Some("stop"));
                writer.write_usage(&mut out, ResponseUsage::new(31, 20), 1_700_000_001);
                black_box(out.len())
            })
        },
    );
    group.bench_function("final events (finish, usage, [DONE])", |b| {
        let mut writer =
            ChatChunkWriter::new("0123456789abcdef", "llama3.2".into(), 1_700_000_000, true);
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

criterion_group!(
    benches,
    request_translation,
    answer_translation,
    stream_translation
);
criterion_main!(benches);
