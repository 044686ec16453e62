//! Unit tests of the limiter with a hand-moved clock.

use aiproxy_domain::{RateLimits, UnixMillis, UsageEvent, UserId};

use crate::{LimitKind, LimiterConfig, RETRY_HINT_MS, RateLimiter, Rejection, Reservation};

/// A time at a bucket start of both windows (a multiple of one minute), so offsets read as
/// positions inside the buckets.
const T0: i64 = 1_700_000_040_000;

fn at(offset_ms: i64) -> UnixMillis {
    UnixMillis(T0 + offset_ms)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn limits(edit: impl FnOnce(&mut RateLimits)) -> RateLimits {
    let mut limits = RateLimits::unlimited();
    edit(&mut limits);
    limits
}

fn admitted(
    limiter: &RateLimiter,
    who: &UserId,
    limits: &RateLimits,
    requested: Option<u64>,
    now: UnixMillis,
) -> Reservation {
    match limiter.admit(who, limits, requested, now) {
        Ok(reservation) => reservation,
        Err(rejection) => panic!("refused at {}: {rejection}", now.0 - T0),
    }
}

fn refused(
    limiter: &RateLimiter,
    who: &UserId,
    limits: &RateLimits,
    requested: Option<u64>,
    now: UnixMillis,
) -> Rejection {
    match limiter.admit(who, limits, requested, now) {
        Ok(reservation) => panic!("admitted at {}: {reservation:?}", now.0 - T0),
        Err(rejection) => rejection,
    }
}

#[test]
fn a_minute_slot_frees_at_most_one_bucket_late_and_never_early() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let one_a_minute = limits(|l| l.requests_per_minute = Some(1));

    // Admitted 1.5 s into the minute: the exact window ends at 61 500, the bucket at 62 000.
    drop(admitted(&limiter, &alice, &one_a_minute, None, at(1_500)));
    refused(&limiter, &alice, &one_a_minute, None, at(61_499));
    refused(&limiter, &alice, &one_a_minute, None, at(61_999));
    drop(admitted(&limiter, &alice, &one_a_minute, None, at(62_000)));

    // Admitted at a bucket start: one whole bucket late, the most the contract allows.
    refused(&limiter, &alice, &one_a_minute, None, at(62_000 + 60_999));
    drop(admitted(
        &limiter,
        &alice,
        &one_a_minute,
        None,
        at(62_000 + 61_000),
    ));
}

#[test]
fn a_day_slot_frees_at_most_one_minute_late_and_never_early() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let two_a_day = limits(|l| l.requests_per_day = Some(2));
    const DAY: i64 = 86_400_000;

    drop(admitted(&limiter, &alice, &two_a_day, None, at(30_000)));
    drop(admitted(&limiter, &alice, &two_a_day, None, at(7_200_000)));
    let rejection = refused(&limiter, &alice, &two_a_day, None, at(DAY + 29_999));
    assert_eq!(rejection.limit, LimitKind::RequestsPerDay);
    assert_eq!(rejection.value, 2);
    assert_eq!(rejection.retry_after_ms, Some(30_001));
    refused(&limiter, &alice, &two_a_day, None, at(DAY + 59_999));
    drop(admitted(
        &limiter,
        &alice,
        &two_a_day,
        None,
        at(DAY + 60_000),
    ));
    refused(&limiter, &alice, &two_a_day, None, at(DAY + 60_001));
}

#[test]
fn retry_after_is_the_first_moment_of_admission() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let three_a_minute = limits(|l| l.requests_per_minute = Some(3));
    for offset in [200, 4_300, 4_900] {
        drop(admitted(
            &limiter,
            &alice,
            &three_a_minute,
            None,
            at(offset),
        ));
    }
    let now = at(20_000);
    let rejection = refused(&limiter, &alice, &three_a_minute, None, now);
    assert_eq!(rejection.limit, LimitKind::RequestsPerMinute);
    assert_eq!(rejection.value, 3);
    // The request of 200 leaves with its bucket at 61 000.
    let retry = rejection.retry_after_ms.unwrap();
    assert_eq!(retry, 41_000);
    let retry = i64::try_from(retry).unwrap();
    refused(
        &limiter,
        &alice,
        &three_a_minute,
        None,
        now.plus_millis(retry - 1),
    );
    drop(admitted(
        &limiter,
        &alice,
        &three_a_minute,
        None,
        now.plus_millis(retry),
    ));

    // Now full again; the next to leave are both requests of the bucket at 4 000.
    let rejection = refused(&limiter, &alice, &three_a_minute, None, at(61_500));
    assert_eq!(rejection.retry_after_ms, Some(3_500));
}

#[test]
fn the_limit_that_frees_last_is_reported() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let both = limits(|l| {
        l.requests_per_minute = Some(1);
        l.requests_per_day = Some(1);
    });
    drop(admitted(&limiter, &alice, &both, None, at(0)));
    let rejection = refused(&limiter, &alice, &both, None, at(1_000));
    assert_eq!(rejection.limit, LimitKind::RequestsPerDay);
    assert_eq!(rejection.retry_after_ms, Some(86_400_000 + 60_000 - 1_000));
}

#[test]
fn a_refused_request_counts_against_nothing() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let tight = limits(|l| {
        l.requests_per_minute = Some(1);
        l.requests_per_day = Some(5);
        l.tokens_per_minute = Some(1_000);
    });
    let reservation = admitted(&limiter, &alice, &tight, Some(100), at(0));
    for offset in 1..50 {
        refused(&limiter, &alice, &tight, Some(100), at(offset));
    }
    let status = reservation.settle(50, at(100));
    let tokens = status.tokens.unwrap();
    assert_eq!(tokens.remaining, 950);
    assert_eq!(status.requests.unwrap().remaining, 0);
    // Had the refusals counted, the day limit of 5 would refuse now.
    drop(admitted(&limiter, &alice, &tight, Some(100), at(61_000)));
}

#[test]
fn concurrent_reservations_share_what_is_left() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let ten_thousand = limits(|l| l.tokens_per_minute = Some(10_000));

    let first = admitted(&limiter, &alice, &ten_thousand, Some(4_000), at(0));
    let second = admitted(&limiter, &alice, &ten_thousand, Some(4_000), at(1));
    let third = admitted(&limiter, &alice, &ten_thousand, Some(4_000), at(2));
    assert_eq!(first.completion_budget(), Some(4_000));
    assert_eq!(second.completion_budget(), Some(4_000));
    assert_eq!(third.completion_budget(), Some(2_000));
    assert_eq!(third.status().tokens.unwrap().remaining, 0);

    // Reservations alone fill the window: only their end can help, so the hint is given.
    let rejection = refused(&limiter, &alice, &ten_thousand, Some(1), at(3));
    assert_eq!(rejection.limit, LimitKind::TokensPerMinute);
    assert_eq!(rejection.value, 10_000);
    assert_eq!(rejection.retry_after_ms, Some(RETRY_HINT_MS));

    // The first used 1000 of its 4000: 3000 come back.
    first.settle(1_000, at(500));
    let fourth = admitted(&limiter, &alice, &ten_thousand, None, at(600));
    assert_eq!(fourth.completion_budget(), Some(3_000));
    drop((second, third, fourth));
}

#[test]
fn a_request_without_max_tokens_reserves_the_default_budget() {
    let limiter = RateLimiter::new(LimiterConfig {
        default_completion_budget: 512,
    });
    let alice = user("alice");
    let roomy = limits(|l| l.tokens_per_day = Some(1_000_000));
    let reservation = admitted(&limiter, &alice, &roomy, None, at(0));
    assert_eq!(reservation.completion_budget(), Some(512));
    let asked = admitted(&limiter, &alice, &roomy, Some(20_000), at(0));
    assert_eq!(asked.completion_budget(), Some(20_000));
}

#[test]
fn without_token_limits_nothing_is_reserved_or_clamped() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let no_tokens = limits(|l| l.requests_per_minute = Some(100));
    let open = admitted(&limiter, &alice, &no_tokens, None, at(0));
    assert_eq!(open.completion_budget(), None);
    assert_eq!(open.status().tokens, None);
    let asked = admitted(&limiter, &alice, &no_tokens, Some(123_456), at(1));
    assert_eq!(asked.completion_budget(), Some(123_456));
    drop((open, asked));

    // Nothing was reserved: a token limit set now sees an empty window.
    let with_tokens = limits(|l| l.tokens_per_minute = Some(100));
    let status = limiter.status(&alice, &with_tokens, at(2));
    assert_eq!(status.tokens.unwrap().remaining, 100);
}

#[test]
fn settle_replaces_the_reservation_with_the_real_count() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let limited = limits(|l| {
        l.requests_per_minute = Some(10);
        l.tokens_per_minute = Some(5_000);
        l.total_token_limit = Some(1_000_000);
    });
    let reservation = admitted(&limiter, &alice, &limited, Some(2_000), at(0));
    let during = reservation.status().tokens.unwrap();
    assert_eq!(during.remaining, 3_000);
    assert_eq!(during.reset_ms, 0);

    let after = reservation.settle(700, at(2_500)).tokens.unwrap();
    assert_eq!(after.remaining, 4_300);
    // Counted at settle time: the bucket of 2 000 ends at 3 000 and the window a minute later.
    assert_eq!(after.reset_ms, 60_500);
    let requests = limiter
        .status(&alice, &limited, at(2_500))
        .requests
        .unwrap();
    assert_eq!(requests.remaining, 9);
    assert_eq!(requests.reset_ms, 58_500);
}

#[test]
fn prompt_tokens_can_pass_a_limit_and_then_refuse_until_the_window_frees() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let small = limits(|l| l.tokens_per_minute = Some(1_000));
    let reservation = admitted(&limiter, &alice, &small, Some(1_000), at(0));
    assert_eq!(reservation.completion_budget(), Some(1_000));
    // A long prompt: 800 prompt tokens plus the full 1000 of completion.
    let status = reservation.settle(1_800, at(10_000));
    assert_eq!(status.tokens.unwrap().remaining, 0);
    let rejection = refused(&limiter, &alice, &small, None, at(10_000));
    assert_eq!(rejection.retry_after_ms, Some(61_000));
    drop(admitted(&limiter, &alice, &small, None, at(71_000)));
}

#[test]
fn dropping_a_reservation_frees_its_slot_and_tokens_but_keeps_the_request() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let limited = limits(|l| {
        l.requests_per_minute = Some(2);
        l.tokens_per_minute = Some(1_000);
        l.max_concurrent_requests = Some(1);
    });
    let reservation = admitted(&limiter, &alice, &limited, Some(100), at(0));
    assert_eq!(reservation.completion_budget(), Some(100));
    let rejection = refused(&limiter, &alice, &limited, Some(1), at(1));
    assert_eq!(rejection.limit, LimitKind::ConcurrentRequests);
    drop(reservation);

    let status = limiter.status(&alice, &limited, at(2));
    assert_eq!(status.tokens.unwrap().remaining, 1_000);
    assert_eq!(status.requests.unwrap().remaining, 1);
    drop(admitted(&limiter, &alice, &limited, Some(1), at(3)));
    let rejection = refused(&limiter, &alice, &limited, Some(1), at(4));
    assert_eq!(rejection.limit, LimitKind::RequestsPerMinute);
}

#[test]
fn the_concurrency_cap_counts_requests_in_flight() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let two_at_once = limits(|l| l.max_concurrent_requests = Some(2));
    let first = admitted(&limiter, &alice, &two_at_once, None, at(0));
    let second = admitted(&limiter, &alice, &two_at_once, None, at(0));
    let rejection = refused(&limiter, &alice, &two_at_once, None, at(0));
    assert_eq!(rejection.limit, LimitKind::ConcurrentRequests);
    assert_eq!(rejection.value, 2);
    assert_eq!(rejection.retry_after_ms, Some(RETRY_HINT_MS));
    first.settle(10, at(5));
    let third = admitted(&limiter, &alice, &two_at_once, None, at(6));
    drop((second, third));
}

#[test]
fn the_lifetime_quota_refuses_for_good() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let quota = limits(|l| l.total_token_limit = Some(1_000));
    let reservation = admitted(&limiter, &alice, &quota, Some(5_000), at(0));
    assert_eq!(reservation.completion_budget(), Some(1_000));
    // In flight, the reservation may still settle for less: a hint, not a verdict.
    let rejection = refused(&limiter, &alice, &quota, None, at(1));
    assert_eq!(rejection.limit, LimitKind::TotalTokens);
    assert_eq!(rejection.retry_after_ms, Some(RETRY_HINT_MS));

    reservation.settle(400, at(2));
    let second = admitted(&limiter, &alice, &quota, None, at(3));
    assert_eq!(second.completion_budget(), Some(600));
    second.settle(600, at(4));

    let rejection = refused(&limiter, &alice, &quota, None, at(90_000_000));
    assert_eq!(rejection.limit, LimitKind::TotalTokens);
    assert!(rejection.limit.is_quota());
    assert_eq!(rejection.value, 1_000);
    assert_eq!(rejection.retry_after_ms, None);
}

#[test]
fn a_used_up_quota_outranks_a_window_that_will_free() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let both = limits(|l| {
        l.requests_per_minute = Some(1);
        l.total_token_limit = Some(10);
    });
    admitted(&limiter, &alice, &both, None, at(0)).settle(10, at(1));
    let rejection = refused(&limiter, &alice, &both, None, at(2));
    assert_eq!(rejection.limit, LimitKind::TotalTokens);
    assert_eq!(rejection.retry_after_ms, None);
}

#[test]
fn a_day_token_window_frees_by_the_minute() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let daily = limits(|l| l.tokens_per_day = Some(1_000));
    admitted(&limiter, &alice, &daily, Some(10), at(0)).settle(600, at(90_000));
    admitted(&limiter, &alice, &daily, Some(10), at(95_000)).settle(400, at(200_000));
    let rejection = refused(&limiter, &alice, &daily, None, at(300_000));
    assert_eq!(rejection.limit, LimitKind::TokensPerDay);
    // The 600 settled at 90 000 leave with their minute bucket: 120 000 + one day.
    assert_eq!(
        rejection.retry_after_ms,
        Some(120_000 + 86_400_000 - 300_000)
    );
    let granted = admitted(&limiter, &alice, &daily, None, at(120_000 + 86_400_000));
    assert_eq!(granted.completion_budget(), Some(600));
}

#[test]
fn status_reads_without_recording() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let limited = limits(|l| {
        l.requests_per_minute = Some(5);
        l.tokens_per_minute = Some(100);
    });
    let fresh = limiter.status(&alice, &limited, at(0));
    assert_eq!(fresh.requests.unwrap().remaining, 5);
    assert_eq!(fresh.tokens.unwrap().remaining, 100);
    assert_eq!(fresh.requests.unwrap().reset_ms, 0);
    for _ in 0..10 {
        limiter.status(&alice, &limited, at(1));
    }
    let reservation = admitted(&limiter, &alice, &limited, Some(10), at(2));
    let status = reservation.status().requests.unwrap();
    assert_eq!(status.remaining, 4);
    assert_eq!(status.reset_ms, 61_000 - 2);
    assert_eq!(
        limiter.status(&alice, &limited, at(2)),
        *reservation.status()
    );
    assert_eq!(
        limiter
            .status(&alice, &RateLimits::unlimited(), at(2))
            .requests,
        None
    );
}

#[test]
fn restore_rebuilds_the_windows_and_does_not_double_count() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let bob = user("bob");
    let limited = limits(|l| {
        l.requests_per_minute = Some(3);
        l.requests_per_day = Some(4);
        l.tokens_per_minute = Some(1_000);
        l.total_token_limit = Some(10_000);
    });
    let now = at(100_000);
    let events = vec![
        // Older than a day: ignored.
        UsageEvent {
            user_id: alice.clone(),
            at: now.plus_millis(-90_000_000),
            requests: 1,
            total_tokens: 9_999,
        },
        // Earlier today: counts in the day window only.
        UsageEvent {
            user_id: alice.clone(),
            at: now.plus_millis(-3_600_000),
            requests: 1,
            total_tokens: 100,
        },
        // In the last minute.
        UsageEvent {
            user_id: alice.clone(),
            at: now.plus_millis(-30_000),
            requests: 1,
            total_tokens: 300,
        },
        UsageEvent {
            user_id: alice.clone(),
            at: now.plus_millis(-10_000),
            requests: 1,
            total_tokens: 200,
        },
    ];
    let lifetime = vec![(alice.clone(), 9_000), (bob.clone(), 42)];
    limiter.restore(events.clone(), lifetime.clone(), now);
    limiter.restore(events, lifetime, now);

    let status = limiter.status(&alice, &limited, now);
    assert_eq!(status.requests.unwrap().remaining, 1);
    assert_eq!(status.tokens.unwrap().remaining, 500);
    // The lifetime total leaves 1000; the minute window leaves 500: the smaller wins.
    let reservation = admitted(&limiter, &alice, &limited, None, now);
    assert_eq!(reservation.completion_budget(), Some(500));
    reservation.settle(500, now);
    // The three restored requests of today and the one just admitted fill the day's four.
    let rejection = refused(&limiter, &alice, &limited, None, now.plus_millis(61_000));
    assert_eq!(rejection.limit, LimitKind::RequestsPerDay);

    let quota = limits(|l| l.total_token_limit = Some(43));
    let bobs = admitted(&limiter, &bob, &quota, None, now);
    assert_eq!(bobs.completion_budget(), Some(1));
}

#[test]
fn restore_keeps_requests_in_flight() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let one_at_once = limits(|l| {
        l.max_concurrent_requests = Some(1);
        l.tokens_per_minute = Some(1_000);
    });
    let reservation = admitted(&limiter, &alice, &one_at_once, Some(300), at(0));
    limiter.restore(Vec::new(), vec![(alice.clone(), 5)], at(1));
    let rejection = refused(&limiter, &alice, &one_at_once, None, at(2));
    assert_eq!(rejection.limit, LimitKind::ConcurrentRequests);
    assert_eq!(rejection.status.tokens.unwrap().remaining, 700);
    reservation.settle(100, at(3));
    drop(admitted(&limiter, &alice, &one_at_once, None, at(4)));
}

#[test]
fn forget_drops_a_users_state_only() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let bob = user("bob");
    let one = limits(|l| l.requests_per_minute = Some(1));
    let in_flight = admitted(&limiter, &alice, &one, None, at(0));
    drop(admitted(&limiter, &bob, &one, None, at(0)));
    limiter.forget(&alice);
    drop(admitted(&limiter, &alice, &one, None, at(1)));
    refused(&limiter, &bob, &one, None, at(1));
    // Settling into the forgotten state changes nothing for the new one.
    in_flight.settle(1_000, at(2));
    let status = limiter.status(&alice, &RateLimits::default(), at(3));
    assert_eq!(status.tokens.unwrap().remaining, 100_000);
}

#[test]
fn forget_all_drops_every_user() {
    let limiter = RateLimiter::default();
    let one = limits(|l| l.requests_per_minute = Some(1));
    let everyone: Vec<UserId> = (0..50).map(|n| user(&format!("user{n}"))).collect();
    for who in &everyone {
        drop(admitted(&limiter, who, &one, None, at(0)));
    }
    limiter.forget_all();
    for who in &everyone {
        drop(admitted(&limiter, who, &one, None, at(1)));
    }
}

#[test]
fn a_lowered_limit_applies_to_the_next_request() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let generous = limits(|l| l.requests_per_minute = Some(10));
    for offset in 0..5 {
        drop(admitted(
            &limiter,
            &alice,
            &generous,
            None,
            at(offset * 1_000),
        ));
    }
    let strict = limits(|l| l.requests_per_minute = Some(2));
    let rejection = refused(&limiter, &alice, &strict, None, at(5_000));
    // Four of the five must leave to let one more in under 2: the fourth leaves with its
    // bucket at 64 000.
    assert_eq!(rejection.retry_after_ms, Some(59_000));
    assert_eq!(rejection.status.requests.unwrap().remaining, 0);
}

#[test]
fn a_clock_stepping_back_neither_panics_nor_frees_early() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let one = limits(|l| {
        l.requests_per_minute = Some(1);
        l.tokens_per_minute = Some(100);
    });
    admitted(&limiter, &alice, &one, Some(10), at(50_000)).settle(10, at(20_000));
    let rejection = refused(&limiter, &alice, &one, None, at(-1_000_000));
    assert_eq!(rejection.limit, LimitKind::RequestsPerMinute);
    refused(&limiter, &alice, &one, None, at(110_999));
    drop(admitted(&limiter, &alice, &one, None, at(111_000)));
    // Extreme clocks must not overflow anything.
    let _ = limiter.admit(&alice, &one, None, UnixMillis(i64::MAX));
    let _ = limiter.admit(&alice, &one, Some(u64::MAX), UnixMillis(i64::MIN));
    limiter.status(&alice, &one, UnixMillis(i64::MAX));
}

#[test]
fn users_do_not_share_windows() {
    let limiter = RateLimiter::default();
    let one = limits(|l| l.requests_per_minute = Some(1));
    for n in 0..100 {
        drop(admitted(
            &limiter,
            &user(&format!("user{n}")),
            &one,
            None,
            at(0),
        ));
    }
}

#[test]
fn the_limiter_is_shared_across_threads_and_reservations_move_between_them() {
    fn shareable<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shareable::<RateLimiter>();
    movable::<Reservation>();
    shareable::<Rejection>();
}

#[test]
fn a_restored_event_counts_all_the_requests_it_stands_for() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let three_a_minute = limits(|l| {
        l.requests_per_minute = Some(3);
        l.tokens_per_minute = Some(1_000);
    });
    let now = at(100_000);
    let merged = UsageEvent {
        user_id: alice.clone(),
        at: now.plus_millis(-5_000),
        requests: 2,
        total_tokens: 900,
    };
    limiter.restore(vec![merged], vec![(alice.clone(), 900)], now);
    // Two of three requests and 900 of 1000 tokens are used: one more request is admitted
    // with the 100 tokens left, and the next is refused.
    let reservation = admitted(&limiter, &alice, &three_a_minute, Some(500), now);
    assert_eq!(reservation.completion_budget(), Some(100));
    let rejection = refused(&limiter, &alice, &three_a_minute, None, now.plus_millis(1));
    assert_eq!(rejection.limit, LimitKind::RequestsPerMinute);
}

#[test]
fn precheck_refuses_what_admit_would_refuse_and_records_nothing() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let one_at_a_time = limits(|l| {
        l.requests_per_minute = Some(2);
        l.max_concurrent_requests = Some(1);
    });
    // Nobody seen yet: let through, and nothing is recorded by looking.
    assert!(limiter.precheck(&alice, &one_at_a_time, at(0)).is_ok());
    assert!(limiter.precheck(&alice, &one_at_a_time, at(0)).is_ok());
    let first = admitted(&limiter, &alice, &one_at_a_time, None, at(0));
    let busy = limiter.precheck(&alice, &one_at_a_time, at(1)).unwrap_err();
    assert_eq!(busy.limit, LimitKind::ConcurrentRequests);
    drop(first);
    assert!(limiter.precheck(&alice, &one_at_a_time, at(2)).is_ok());
    let second = admitted(&limiter, &alice, &one_at_a_time, None, at(3));
    drop(second);
    let full = limiter.precheck(&alice, &one_at_a_time, at(4)).unwrap_err();
    assert_eq!(full.limit, LimitKind::RequestsPerMinute);
    assert_eq!(
        refused(&limiter, &alice, &one_at_a_time, None, at(4)).limit,
        LimitKind::RequestsPerMinute
    );
}

#[test]
fn a_request_asking_for_no_tokens_gets_a_budget_of_one() {
    let limiter = RateLimiter::default();
    let alice = user("alice");
    let tokens = limits(|l| l.tokens_per_minute = Some(100));
    let reservation = admitted(&limiter, &alice, &tokens, Some(0), at(0));
    assert_eq!(reservation.completion_budget(), Some(1));
    let unlimited = RateLimits::unlimited();
    let reservation = admitted(&limiter, &user("bob"), &unlimited, Some(0), at(0));
    assert_eq!(reservation.completion_budget(), Some(1));
}

mod local {
    use std::sync::{Arc, Mutex};

    use aiproxy_domain::{
        Admission, AdmissionError, AdmissionRequest, Endpoint, RateLimits, UsageCommit,
        UsageRecord, UsageStatus, UsageStore,
    };

    use super::{at, limits, user};
    use crate::{LimitKind, LocalAdmission, RateLimiter};

    /// Keeps the records it is given; every other method is unused here.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<UsageRecord>>);

    impl UsageStore for Recorded {
        fn record_usage(&self, record: UsageRecord) -> UsageCommit {
            self.0.lock().unwrap().push(record);
            Box::pin(std::future::ready(Ok(())))
        }
        fn usage_page<'a>(
            &'a self,
            _: &'a aiproxy_domain::UsageQuery,
        ) -> aiproxy_domain::StoreFuture<'a, aiproxy_domain::UsagePage> {
            unimplemented!()
        }
        fn usage_summary<'a>(
            &'a self,
            _: &'a aiproxy_domain::UsageFilter,
            _: aiproxy_domain::UsageGrouping,
        ) -> aiproxy_domain::StoreFuture<'a, Vec<aiproxy_domain::UsageSummaryRow>> {
            unimplemented!()
        }
        fn usage_batch<'a>(
            &'a self,
            _: &'a aiproxy_domain::UsageFilter,
            _: Option<&'a aiproxy_domain::UsageCursor>,
            _: u32,
        ) -> aiproxy_domain::StoreFuture<'a, Vec<UsageRecord>> {
            unimplemented!()
        }
        fn usage_events_since(
            &self,
            _: aiproxy_domain::UnixMillis,
        ) -> aiproxy_domain::StoreFuture<'_, Vec<aiproxy_domain::UsageEvent>> {
            unimplemented!()
        }
        fn lifetime_tokens(
            &self,
        ) -> aiproxy_domain::StoreFuture<'_, Vec<(aiproxy_domain::UserId, u64)>> {
            unimplemented!()
        }
        fn delete_usage_before(
            &self,
            _: aiproxy_domain::UnixMillis,
        ) -> aiproxy_domain::StoreFuture<'_, u64> {
            unimplemented!()
        }
        fn record_refusals(
            &self,
            _: Vec<aiproxy_domain::RefusalCount>,
        ) -> aiproxy_domain::StoreFuture<'_, ()> {
            unimplemented!()
        }
        fn refusal_summary<'a>(
            &'a self,
            _: &'a aiproxy_domain::UsageFilter,
            _: aiproxy_domain::RefusalGrouping,
        ) -> aiproxy_domain::StoreFuture<'a, Vec<aiproxy_domain::RefusalSummaryRow>> {
            unimplemented!()
        }
    }

    /// The futures here are ready at once; poll them once with a no-op waker.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("a local admission future was not ready"),
        }
    }

    fn record(tokens: u64) -> UsageRecord {
        UsageRecord {
            request_id: "r".into(),
            user_id: user("alice"),
            model: "m".into(),
            endpoint: Endpoint::ChatCompletions,
            backend: None,
            client_request_id: None,
            prompt_tokens: tokens,
            completion_tokens: 0,
            status: UsageStatus::Ok,
            duration_ms: 0,
            created_at: at(0),
        }
    }

    #[test]
    fn finishing_a_ticket_settles_the_tokens_and_records_the_row() {
        let store = Arc::new(Recorded::default());
        let admission = LocalAdmission::new(Arc::new(RateLimiter::default()), store.clone());
        let request = |requested| AdmissionRequest {
            user: user("alice"),
            limits: limits(|l| {
                l.tokens_per_minute = Some(100);
                l.max_concurrent_requests = Some(1);
            }),
            requested_completion_tokens: requested,
            now: at(0),
        };
        let admitted = block_on(admission.admit(request(Some(30)))).unwrap();
        assert_eq!(admitted.completion_budget, Some(30));
        assert!(matches!(
            block_on(admission.admit(request(None))),
            Err(AdmissionError::Refused(r)) if r.limit == LimitKind::ConcurrentRequests
        ));
        block_on(admitted.ticket.finish(record(90))).unwrap();
        assert_eq!(store.0.lock().unwrap().len(), 1);
        let next = block_on(admission.admit(request(None))).unwrap();
        assert_eq!(
            next.completion_budget,
            Some(10),
            "90 of 100 tokens were used"
        );
        next.ticket.cancel();
        let status = block_on(admission.status(&user("alice"), &RateLimits::unlimited(), at(1)));
        assert_eq!(status.unwrap().requests, None);
    }
}
