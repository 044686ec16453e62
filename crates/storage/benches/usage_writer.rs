//! How fast usage is recorded (journal appends, and moving journaled rows into SQLite), and
//! how fast usage reads are on a big table.
//!
//! Run with `cargo bench -p aiproxy-storage --bench usage_writer`; `BENCH_QUICK=1` shortens
//! every phase (fewer appends and rows, 20 000 seeded rows instead of 1 000 000);
//! `BENCH_ONLY=writer` or `BENCH_ONLY=queries` runs one half.
//!
//! Appends come from plain threads, as request handlers call `record_usage` on their worker
//! threads. The baseline for moving rows into SQLite is one transaction per row: what each
//! request cost when rows were committed one request at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark harness")]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread::Thread;
use std::time::{Duration, Instant};

use aiproxy_domain::{
    ApiKey, Endpoint, NewUser, Period, RateLimits, UnixMillis, UsageCursor, UsageFilter,
    UsageGrouping, UsageQuery, UsageRecord, UsageStatus, UsageStore, UserId, UserStore,
};
use aiproxy_storage::{SqliteStore, StoreOptions};

const USERS: usize = 100;
const MODELS: [&str; 4] = ["llama3.2", "llama3.2:1b", "moondream", "nomic-embed-text"];
const DAY_MS: i64 = 86_400_000;
/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let run_for = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let seeded_rows = if quick { 20_000 } else { 1_000_000 };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "queries" {
        writer_table(run_for);
    }
    if only != "writer" {
        seeded_queries(seeded_rows);
    }
}

fn writer_table(run_for: Duration) {
    let quick = run_for < Duration::from_secs(2);
    let appends = if quick { 40_000 } else { 150_000 };
    println!("usage journal: {appends} appends (record_usage) split over N threads, 100 users");
    println!(
        "{:>8}  {:>11} {:>10} {:>10} {:>10}",
        "threads", "appends/s", "p50", "p99", "max"
    );
    for threads in [1, 2, 8] {
        let r = append_run(threads, appends);
        println!(
            "{threads:>8}  {:>11.0} {:>10} {:>10} {:>10}",
            r.per_second,
            fmt(r.p50),
            fmt(r.p99),
            fmt(r.max)
        );
    }
    let rows = if quick { 10_000 } else { 100_000 };
    println!();
    println!("moving {rows} journaled rows into SQLite; baseline: one transaction per row");
    println!("(what every request paid before the journal)");
    println!("{:<28} {:>11} {:>12}", "mode", "rows/s", "rows/commit");
    let batched = ingest_run(1024, rows);
    let single = ingest_run(1, rows);
    for (mode, r) in [
        ("batched (up to 1024)", &batched),
        ("one row per transaction", &single),
    ] {
        println!("{mode:<28} {:>11.0} {:>12.1}", r.0, r.1);
    }
    println!(
        "{:<28} {:>10.1}x",
        "batched / baseline",
        batched.0 / single.0
    );
    println!();
}

/// A query to time, run again and again.
type Query = Box<dyn Fn()>;

struct AppendRun {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `total` appends from `threads` threads at once, each timed; the writer thread ingests
/// meanwhile as it does in the server.
fn append_run(threads: usize, total: usize) -> AppendRun {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"), StoreOptions::default()).unwrap();
    create_users(&store);
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut latencies = Vec::with_capacity(total / threads);
                for i in 0..total / threads {
                    let record =
                        usage_record(t % USERS, i as u64, (t as i64) * 1_000_000 + i as i64);
                    let sent = Instant::now();
                    block_on(store.record_usage(record)).unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    // Everything appended reaches the table (a read waits for the writer).
    let requests: u64 = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(1000, 0))
        .unwrap()
        .0
        .iter()
        .map(|u| u.totals.requests)
        .sum();
    assert_eq!(requests, latencies.len() as u64);
    latencies.sort_unstable();
    AppendRun {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

/// Journals `rows` records while the writer waits, then times moving them all into SQLite in
/// transactions of at most `max_batch_records`. Returns rows per second and rows per commit.
fn ingest_run(max_batch_records: usize, rows: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("bench.db"),
        StoreOptions {
            max_batch_records,
            ingest_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    create_users(&store);
    // Appended without waking the writer: one batch of the size wakes it, so the batch-of-one
    // store starts moving rows at once; the timing below starts from the same point for both.
    for i in 0..rows {
        block_on(store.record_usage(usage_record(i % USERS, i as u64, i as i64))).unwrap();
    }
    let started = Instant::now();
    let lifetime: u64 = store
        .blocking()
        .lifetime_tokens()
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    let elapsed = started.elapsed();
    let stats = store.writer_stats();
    assert_eq!(stats.records_committed, rows as u64);
    assert!(lifetime > 0);
    (
        rows as f64 / elapsed.as_secs_f64(),
        stats.records_committed as f64 / stats.batches_committed.max(1) as f64,
    )
}

fn seeded_queries(rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seeded.db");
    // Big transactions for seeding: the writer takes up to 50 000 queued records at once.
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            max_batch_records: 50_000,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    create_users(&store);

    let started = Instant::now();
    let chunk = 50_000;
    for first in (0..rows).step_by(chunk) {
        let pending: Vec<_> = (first..(first + chunk).min(rows))
            .map(|i| {
                // Spread over 30 days, round-robin over users and models.
                let at = (i as i64) * (30 * DAY_MS) / rows as i64;
                store.record_usage(usage_record(i % USERS, i as u64, at))
            })
            .collect();
        for commit in pending {
            block_on(commit).unwrap();
        }
        // Waits for the writer, so the journal's backlog stays far below its bound.
        store.blocking().lifetime_tokens().unwrap();
    }
    let seeding = started.elapsed();
    let size_mb = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "seeded {rows} usage rows ({USERS} users, {} models, 30 days) in {:.1} s ({:.0} rows/s), file {size_mb:.0} MB",
        MODELS.len(),
        seeding.as_secs_f64(),
        rows as f64 / seeding.as_secs_f64()
    );

    let user = Some(UserId::parse("user-7").unwrap());
    let one_user = UsageFilter {
        user_id: user.clone(),
        ..UsageFilter::default()
    };
    let one_user_week_model = UsageFilter {
        user_id: user,
        model: Some(MODELS[3].to_owned()),
        start: Some(UnixMillis(T0 + 10 * DAY_MS)),
        end: Some(UnixMillis(T0 + 17 * DAY_MS)),
        ..UsageFilter::default()
    };
    let page = |filter: &UsageFilter, offset| {
        let filter = filter.clone();
        let store = store.clone();
        move || {
            store
                .blocking()
                .usage_page(&UsageQuery {
                    filter: filter.clone(),
                    limit: 50,
                    offset,
                })
                .unwrap();
        }
    };
    let summary = |filter: &UsageFilter, grouping| {
        let filter = filter.clone();
        let store = store.clone();
        move || {
            store.blocking().usage_summary(&filter, grouping).unwrap();
        }
    };
    let batch_after = |cursor_at: i64| {
        let store = store.clone();
        move || {
            let cursor = UsageCursor {
                created_at: UnixMillis(T0 + cursor_at),
                request_id: String::new(),
            };
            let batch = store
                .blocking()
                .usage_batch(&UsageFilter::default(), Some(&cursor), 1000)
                .unwrap();
            assert_eq!(batch.len(), 1000);
        }
    };
    let key = create_user(&store, "lookup");
    let hash = key.hash();
    let lookup_blocking = {
        let store = store.clone();
        move || {
            store.blocking().find_user_by_key(&hash).unwrap().unwrap();
        }
    };
    let lookup_async = {
        let store = store.clone();
        move || {
            block_on(store.find_user_by_key(&hash)).unwrap().unwrap();
        }
    };
    let by_model_and_day = UsageGrouping {
        by_model: true,
        period: Some(Period::Day),
        ..Default::default()
    };
    let by_user = UsageGrouping {
        by_user: true,
        ..Default::default()
    };
    let rows_of_user = rows / USERS;
    println!(
        "{:<58} {:>10} {:>10}",
        "query (one user has ~".to_owned() + &rows_of_user.to_string() + " rows)",
        "median",
        "max"
    );
    let cases: Vec<(&str, Query)> = vec![
        (
            "usage_page one user, newest 50 (+ totals)",
            Box::new(page(&one_user, 0)),
        ),
        (
            "usage_page one user, 50 at offset 1000 (+ totals)",
            Box::new(page(&one_user, 1000)),
        ),
        (
            "usage_page one user, one model, one week",
            Box::new(page(&one_user_week_model, 0)),
        ),
        (
            "usage_summary one user, by model and day",
            Box::new(summary(&one_user, by_model_and_day)),
        ),
        (
            "usage_summary one user, no grouping",
            Box::new(summary(&one_user, UsageGrouping::default())),
        ),
        (
            "usage_summary everyone, by user (full scan)",
            Box::new(summary(&UsageFilter::default(), by_user)),
        ),
        (
            "usage_batch everyone, 1000 after a cursor mid-table",
            Box::new(batch_after(15 * DAY_MS)),
        ),
        (
            "find_user_by_key, blocking on this thread",
            Box::new(lookup_blocking),
        ),
        (
            "find_user_by_key, async (on a store thread)",
            Box::new(lookup_async),
        ),
    ];
    for (name, run) in cases {
        let mut times: Vec<Duration> = (0..15)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed()
            })
            .collect();
        times.sort_unstable();
        println!(
            "{name:<58} {:>10} {:>10}",
            fmt(percentile(&times, 0.5)),
            fmt(*times.last().unwrap())
        );
    }
}

fn create_users(store: &SqliteStore) {
    for u in 0..USERS {
        create_user(store, &format!("user-{u}"));
    }
}

fn create_user(store: &SqliteStore, id: &str) -> ApiKey {
    let key = ApiKey::generate();
    store
        .blocking()
        .create_user(NewUser {
            id: UserId::parse(id).unwrap(),
            display_name: None,
            note: None,
            key_hash: key.hash(),
            key_prefix: key.prefix(),
            key_expires_at: None,
            allowed_models: None,
            limits: RateLimits::default(),
            created_at: UnixMillis(T0),
        })
        .unwrap();
    key
}

fn usage_record(user: usize, i: u64, offset_ms: i64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{user}-{i}"),
        user_id: UserId::parse(&format!("user-{user}")).unwrap(),
        model: MODELS[(i as usize / USERS) % MODELS.len()].to_owned(),
        endpoint: Endpoint::ChatCompletions,
        backend: None,
        client_request_id: None,
        prompt_tokens: 100 + i % 50,
        completion_tokens: 200 + i % 70,
        status: UsageStatus::Ok,
        duration_ms: 800,
        created_at: UnixMillis(T0 + offset_ms),
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
