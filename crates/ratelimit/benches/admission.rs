//! Cost of admission: one user, many users on several threads, and a bare `Mutex<HashMap>`
//! lookup in the same run as the yardstick, so results read as a ratio on a noisy machine.
//!
//! Run with `cargo bench -p aiproxy-ratelimit --bench admission -- --quick`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use aiproxy_domain::{MAX_LIMIT_VALUE, RateLimits, UnixMillis, UserId};
use aiproxy_ratelimit::RateLimiter;
use criterion::{Criterion, criterion_group, criterion_main};

const START: i64 = 1_700_000_000_000;

/// Every limit set, so every check runs, but high enough never to refuse.
fn every_limit_set() -> RateLimits {
    RateLimits {
        requests_per_minute: Some(MAX_LIMIT_VALUE),
        requests_per_day: Some(MAX_LIMIT_VALUE),
        tokens_per_minute: Some(MAX_LIMIT_VALUE),
        tokens_per_day: Some(MAX_LIMIT_VALUE),
        total_token_limit: Some(MAX_LIMIT_VALUE),
        max_concurrent_requests: Some(1_000),
        ..RateLimits::unlimited()
    }
}

fn user_ids(prefix: &str, n: usize) -> Vec<UserId> {
    (0..n)
        .filter_map(|i| UserId::parse(&format!("{prefix}-user-{i}")).ok())
        .collect()
}

/// One admission and its settlement. The clock moves 1 ms per request, so the rings turn
/// as they would under a busy user.
fn admit_and_settle(limiter: &RateLimiter, user: &UserId, limits: &RateLimits, now: i64) {
    if let Ok(reservation) = limiter.admit(user, limits, Some(256), UnixMillis(now)) {
        black_box(reservation.completion_budget());
        black_box(reservation.settle(300, UnixMillis(now)));
    }
}

fn threads() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

fn single_user(c: &mut Criterion) {
    let mut group = c.benchmark_group("single_user");
    let users = user_ids("single", 1);
    let limits = every_limit_set();

    let baseline: Mutex<HashMap<UserId, u64>> =
        Mutex::new(users.iter().map(|user| (user.clone(), 0)).collect());
    group.bench_function("baseline_mutex_hashmap_lookup", |b| {
        b.iter(|| {
            if let Ok(mut map) = baseline.lock()
                && let Some(count) = map.get_mut(black_box(&users[0]))
            {
                *count += 1;
            }
        });
    });

    let limiter = RateLimiter::default();
    let mut now = START;
    group.bench_function("admit_settle", |b| {
        b.iter(|| {
            now += 1;
            admit_and_settle(&limiter, black_box(&users[0]), &limits, now);
        });
    });

    let full = RateLimits {
        requests_per_minute: Some(1),
        ..every_limit_set()
    };
    let refusing = RateLimiter::default();
    admit_and_settle(&refusing, &users[0], &full, START);
    group.bench_function("admit_refused", |b| {
        b.iter(|| black_box(refusing.admit(black_box(&users[0]), &full, None, UnixMillis(START))));
    });
    group.finish();
}

/// Each thread works through its own users; criterion's time per iteration is the wall time
/// for every thread to do one operation each. With 10 users a thread everything stays in the
/// CPU caches; with 1000 (about 18 MiB of windows per thread) nearly every admission misses
/// them, as on a busy proxy with many users.
fn many_users(c: &mut Criterion) {
    let n_threads = threads();
    let limits = every_limit_set();
    for users_per_thread in [10, 1_000] {
        let mut group =
            c.benchmark_group(format!("{n_threads}_threads_{users_per_thread}_users_each"));
        let users: Vec<Vec<UserId>> = (0..n_threads)
            .map(|t| user_ids(&format!("t{t}"), users_per_thread))
            .collect();

        let baseline: Mutex<HashMap<UserId, u64>> = Mutex::new(
            users
                .iter()
                .flatten()
                .map(|user| (user.clone(), 0))
                .collect(),
        );
        group.bench_function("baseline_one_mutex_hashmap_lookup", |b| {
            b.iter_custom(|iters| {
                run_threads(&users, iters, |user, _| {
                    if let Ok(mut map) = baseline.lock()
                        && let Some(count) = map.get_mut(user)
                    {
                        *count += 1;
                    }
                })
            });
        });

        let limiter = RateLimiter::default();
        group.bench_function("admit_settle", |b| {
            b.iter_custom(|iters| {
                run_threads(&users, iters, |user, i| {
                    admit_and_settle(&limiter, user, &limits, START + i as i64);
                })
            });
        });
        group.finish();
    }
}

fn run_threads(users: &[Vec<UserId>], iters: u64, work: impl Fn(&UserId, u64) + Sync) -> Duration {
    let started = Instant::now();
    thread::scope(|scope| {
        for own_users in users {
            let work = &work;
            scope.spawn(move || {
                for (i, user) in (0..iters).zip(own_users.iter().cycle()) {
                    work(user, i);
                }
            });
        }
    });
    started.elapsed()
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = single_user, many_users
}
criterion_main!(benches);
