//! Many threads admitting for one user at the same instant.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use aiproxy_domain::{RateLimits, UnixMillis, UserId};
use aiproxy_ratelimit::{LimitKind, RateLimiter, Reservation};

const THREADS: usize = 8;
const ATTEMPTS_PER_THREAD: usize = 60;

/// Runs `THREADS` threads that each try `ATTEMPTS_PER_THREAD` admissions at the same `now`,
/// released together by a barrier, and returns the reservations granted (still held).
fn race(
    limiter: &Arc<RateLimiter>,
    limits: RateLimits,
    requested: Option<u64>,
) -> Vec<Reservation> {
    let alice = UserId::parse("alice").unwrap();
    let now = UnixMillis(1_700_000_000_123);
    let start = Barrier::new(THREADS);
    let granted = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                start.wait();
                for _ in 0..ATTEMPTS_PER_THREAD {
                    match limiter.admit(&alice, &limits, requested, now) {
                        Ok(reservation) => granted.lock().unwrap().push(reservation),
                        Err(rejection) => assert!(matches!(
                            rejection.limit,
                            LimitKind::RequestsPerMinute
                                | LimitKind::TokensPerMinute
                                | LimitKind::ConcurrentRequests
                        )),
                    }
                }
            });
        }
    });
    granted.into_inner().unwrap()
}

#[test]
fn simultaneous_admissions_admit_exactly_the_request_limit() {
    let limiter = Arc::new(RateLimiter::default());
    let limits = RateLimits {
        requests_per_minute: Some(100),
        ..RateLimits::unlimited()
    };
    let granted = race(&limiter, limits, None);
    assert_eq!(granted.len(), 100);
}

#[test]
fn simultaneous_admissions_share_the_token_limit_exactly() {
    let limiter = Arc::new(RateLimiter::default());
    let limits = RateLimits {
        tokens_per_minute: Some(10_050),
        ..RateLimits::unlimited()
    };
    let granted = race(&limiter, limits, Some(100));
    // 100 requests of 100 tokens, then one gets the 50 left, then every request is refused.
    assert_eq!(granted.len(), 101);
    let budgets: u64 = granted
        .iter()
        .map(|reservation| reservation.completion_budget().unwrap())
        .sum();
    assert_eq!(budgets, 10_050);
}

#[test]
fn simultaneous_admissions_respect_the_concurrency_cap_and_release_on_drop() {
    let limiter = Arc::new(RateLimiter::default());
    let limits = RateLimits {
        max_concurrent_requests: Some(7),
        ..RateLimits::unlimited()
    };
    let granted = race(&limiter, limits, None);
    assert_eq!(granted.len(), 7);
    drop(granted);
    assert_eq!(race(&limiter, limits, None).len(), 7);
}
