//! The cost of the routing decision per request: `BackendClients::route` plus dropping its
//! lease (the decision, and the in-flight count up and down), with one backend and with
//! three; then the same from 1, 2, 4 and 8 threads at once, each its own worker, to show
//! that workers do not slow each other down (per-thread CPU time, see `run_threads`).
//!
//! `cargo bench -p aiproxy-backends --bench routing`. The simulators only answer discovery;
//! nothing in the measured loop does I/O.

#![allow(clippy::expect_used, reason = "benchmark harness")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aiproxy_backends::{BackendSpec, Backends, RouterConfig};
use aiproxy_ollama_sim::{OllamaSim, SimConfig};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Starts `sets.len()` simulators with those models, reads their models, and returns the
/// router (the simulators keep running on their own thread until the process ends).
fn router(sets: &[(&[&str], &[&str])], stripes: usize) -> Backends {
    let owned: Vec<(Vec<String>, Vec<String>)> = sets
        .iter()
        .map(|(models, loaded)| {
            (
                models.iter().map(|m| (*m).to_owned()).collect(),
                loaded.iter().map(|m| (*m).to_owned()).collect(),
            )
        })
        .collect();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let mut sims = Vec::new();
            let mut specs = Vec::new();
            for (index, (models, loaded)) in owned.iter().enumerate() {
                let mut config = SimConfig {
                    name: format!("b{index}"),
                    loaded: loaded.clone(),
                    ..SimConfig::default()
                };
                let names: Vec<&str> = models.iter().map(String::as_str).collect();
                config.select_models(&names).expect("catalog models");
                let sim = OllamaSim::start(config).await.expect("simulator starts");
                specs.push(BackendSpec {
                    name: Some(sim.name().to_owned()),
                    ..BackendSpec::new(sim.base_url())
                });
                sims.push(sim);
            }
            let config = RouterConfig {
                refresh_interval: Duration::from_secs(3600),
                stripes,
                ..RouterConfig::default()
            };
            let backends = Backends::new(specs, config).expect("valid backends");
            backends.discover_all().await;
            sender.send(backends).expect("bench waits");
            std::future::pending::<()>().await;
            drop(sims);
        });
    });
    receiver.recv().expect("router built")
}

const ONE: &[(&[&str], &[&str])] = &[(&["llama3.2", "nomic-embed-text"], &[])];
/// The model on all three, loaded on none: every decision ranks three backends.
const THREE_SHARED: &[(&[&str], &[&str])] = &[
    (&["llama3.2"], &[]),
    (&["llama3.2"], &[]),
    (&["llama3.2"], &[]),
];
/// The model on one of three: the usual case with different model sets.
const THREE_SPLIT: &[(&[&str], &[&str])] = &[
    (&["gemma3:1b"], &[]),
    (&["llama3.2"], &[]),
    (&["qwen3:0.6b"], &[]),
];

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for (name, sets) in [
        ("1_backend", ONE),
        ("3_backends_model_on_all", THREE_SHARED),
        ("3_backends_model_on_one", THREE_SPLIT),
    ] {
        let backends = router(sets, 8);
        let clients = backends.worker();
        group.bench_function(name, |b| {
            b.iter(|| drop(black_box(clients.route(black_box("llama3.2")))))
        });
    }
    group.finish();
}

/// Time per decision on each thread while `threads` threads decide at once.
fn threaded(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_threads");
    for (name, sets) in [
        ("1_backend", ONE),
        ("3_backends_model_on_all", THREE_SHARED),
    ] {
        let backends = router(sets, 8);
        for threads in [1usize, 2, 4, 8] {
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| run_threads(&backends, threads, iters))
            });
        }
    }
    group.finish();
}

/// Each thread makes its own worker, waits for the others, then decides `iters` times; the
/// result is the largest per-thread time, i.e. the time per decision on a thread.
///
/// Where Linux reports it (`/proc/thread-self/schedstat`), the time a thread spent runnable
/// but waiting for a core is taken off its wall time: on a machine shared with other work
/// the figure then shows what the threads cost each other (cache lines moving between
/// cores, spinning), not the moments the scheduler gave their core away.
fn run_threads(backends: &Backends, threads: usize, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let backends = backends.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let clients = backends.worker();
                barrier.wait();
                let waited_before = time_waiting_for_a_core();
                let started = Instant::now();
                for _ in 0..iters {
                    drop(black_box(clients.route(black_box("llama3.2"))));
                }
                let wall = started.elapsed();
                match (waited_before, time_waiting_for_a_core()) {
                    (Some(before), Some(after)) => {
                        wall.saturating_sub(after.saturating_sub(before))
                    }
                    _ => wall,
                }
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

/// How long the calling thread has been runnable but not running (Linux; the second field of
/// its schedstat, brought up to date whenever the thread gets a core back).
fn time_waiting_for_a_core() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

criterion_group!(benches, decision, threaded);
criterion_main!(benches);
