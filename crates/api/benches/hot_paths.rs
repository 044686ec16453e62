//! The HTTP layer's per-request CPU work, each beside a baseline measured in the same run (the
//! machines are shared and noisy: read the ratios, not the absolute times). The wire work
//! (parsing, translating and writing OpenAI's JSON) is benchmarked in
//! `crates/openai/benches/wire.rs`.
//!
//! `cargo bench -p aiproxy-api --bench hot_paths`

#![allow(clippy::unwrap_used, reason = "benchmark inputs are fixed and valid")]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use aiproxy_domain::{ApiKey, ApiKeyHash};
use criterion::{Criterion, criterion_group, criterion_main};

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

criterion_group!(benches, key_lookup);
criterion_main!(benches);
