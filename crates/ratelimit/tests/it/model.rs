//! Random arrival sequences checked against a naive model that keeps every event.
//!
//! The model implements the documented contract directly: an event at `t` counts in a window
//! of length `W` with buckets of `B` while `now < (floor(t / B) + 1) * B + W`. It keeps every
//! event in a list and sums it on every question, so it shares no code or data structure with
//! the rings it checks.

use aiproxy_domain::{RateLimits, UnixMillis, UserId};
use aiproxy_ratelimit::{
    DAY_BUCKET_MS, DAY_WINDOW_MS, LimitKind, LimitStatus, LimiterConfig, MINUTE_BUCKET_MS,
    MINUTE_WINDOW_MS, RETRY_HINT_MS, RateLimiter, Reservation, WindowStatus,
};
use proptest::prelude::*;

const START: i64 = 1_700_000_012_345;

#[derive(Debug, Clone)]
enum Op {
    Wait(i64),
    Admit { requested: Option<u64> },
    Settle { pick: usize, total_tokens: u64 },
    Drop { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let wait = prop_oneof![
        6 => 0i64..1_500,
        3 => 0i64..20_000,
        2 => 55_000i64..65_000,
        1 => 0i64..100_000_000,
    ];
    prop_oneof![
        3 => wait.prop_map(Op::Wait),
        4 => proptest::option::weighted(0.7, 0u64..3_000).prop_map(|requested| Op::Admit { requested }),
        2 => (any::<usize>(), 0u64..4_000).prop_map(|(pick, total_tokens)| Op::Settle { pick, total_tokens }),
        1 => any::<usize>().prop_map(|pick| Op::Drop { pick }),
    ]
}

fn limits() -> impl Strategy<Value = RateLimits> {
    use proptest::option::weighted;
    (
        weighted(0.6, 1u64..8),
        weighted(0.4, 1u64..40),
        weighted(0.6, 100u64..6_000),
        weighted(0.4, 1_000u64..40_000),
        weighted(0.3, 1_000u64..100_000),
        weighted(0.3, 1u64..4),
    )
        .prop_map(
            |(
                requests_per_minute,
                requests_per_day,
                tokens_per_minute,
                tokens_per_day,
                total_token_limit,
                max_concurrent_requests,
            )| RateLimits {
                requests_per_minute,
                requests_per_day,
                tokens_per_minute,
                tokens_per_day,
                total_token_limit,
                max_concurrent_requests,
                ..RateLimits::unlimited()
            },
        )
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: i64,
    requests: u64,
    tokens: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    length: i64,
    bucket: i64,
}

const MINUTE: Window = Window {
    length: MINUTE_WINDOW_MS,
    bucket: MINUTE_BUCKET_MS,
};
const DAY: Window = Window {
    length: DAY_WINDOW_MS,
    bucket: DAY_BUCKET_MS,
};

impl Window {
    fn expiry(self, at: i64) -> i64 {
        (at.div_euclid(self.bucket) + 1) * self.bucket + self.length
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Requests,
    Tokens,
}

fn amount(event: &Event, metric: Metric) -> u64 {
    match metric {
        Metric::Requests => event.requests,
        Metric::Tokens => event.tokens,
    }
}

struct Model {
    limits: RateLimits,
    default_budget: u64,
    events: Vec<Event>,
    lifetime: u64,
    /// Reserved tokens of each live reservation, in the order of the limiter's list.
    reservations: Vec<u64>,
}

struct ModelRefusal {
    limit: LimitKind,
    value: u64,
    retry_after_ms: Option<u64>,
}

impl Model {
    fn used(&self, window: Window, metric: Metric, now: i64) -> u64 {
        self.events
            .iter()
            .filter(|event| now < window.expiry(event.at))
            .map(|event| amount(event, metric))
            .sum()
    }

    fn reserved(&self) -> u64 {
        self.reservations.iter().sum()
    }

    /// The first moment from `now` on at which `used + extra < limit`, by brute force over
    /// every moment an event leaves the window.
    fn wait_until_below(
        &self,
        window: Window,
        metric: Metric,
        limit: u64,
        extra: u64,
        now: i64,
    ) -> Option<u64> {
        let mut moments: Vec<i64> = std::iter::once(now)
            .chain(self.events.iter().map(|event| window.expiry(event.at)))
            .filter(|&moment| moment >= now)
            .collect();
        moments.sort_unstable();
        moments
            .into_iter()
            .find(|&moment| self.used(window, metric, moment) + extra < limit)
            .map(|moment| u64::try_from(moment - now).unwrap())
    }

    fn reset_ms(&self, metric: Metric, now: i64) -> u64 {
        self.events
            .iter()
            .filter(|event| amount(event, metric) > 0)
            .map(|event| MINUTE.expiry(event.at))
            .filter(|&expiry| expiry > now)
            .max()
            .map_or(0, |expiry| u64::try_from(expiry - now).unwrap())
    }

    fn status(&self, now: i64) -> LimitStatus {
        LimitStatus {
            requests: self.limits.requests_per_minute.map(|limit| WindowStatus {
                limit,
                remaining: limit.saturating_sub(self.used(MINUTE, Metric::Requests, now)),
                reset_ms: self.reset_ms(Metric::Requests, now),
            }),
            tokens: self.limits.tokens_per_minute.map(|limit| WindowStatus {
                limit,
                remaining: limit
                    .saturating_sub(self.used(MINUTE, Metric::Tokens, now) + self.reserved()),
                reset_ms: self.reset_ms(Metric::Tokens, now),
            }),
        }
    }

    /// Every limit that refuses at `now`, in no particular order; empty when admitted.
    fn refusals(&self, now: i64) -> Vec<ModelRefusal> {
        let limits = &self.limits;
        let reserved = self.reserved();
        let mut out = Vec::new();
        for (limit, value, window) in [
            (
                LimitKind::RequestsPerMinute,
                limits.requests_per_minute,
                MINUTE,
            ),
            (LimitKind::RequestsPerDay, limits.requests_per_day, DAY),
        ] {
            if let Some(value) = value
                && self.used(window, Metric::Requests, now) >= value
            {
                out.push(ModelRefusal {
                    limit,
                    value,
                    retry_after_ms: self.wait_until_below(window, Metric::Requests, value, 0, now),
                });
            }
        }
        for (limit, value, window) in [
            (LimitKind::TokensPerMinute, limits.tokens_per_minute, MINUTE),
            (LimitKind::TokensPerDay, limits.tokens_per_day, DAY),
        ] {
            if let Some(value) = value
                && self.used(window, Metric::Tokens, now) + reserved >= value
            {
                let retry_after_ms = if reserved >= value {
                    Some(RETRY_HINT_MS)
                } else {
                    self.wait_until_below(window, Metric::Tokens, value, reserved, now)
                };
                out.push(ModelRefusal {
                    limit,
                    value,
                    retry_after_ms,
                });
            }
        }
        if let Some(value) = limits.total_token_limit
            && self.lifetime + reserved >= value
        {
            out.push(ModelRefusal {
                limit: LimitKind::TotalTokens,
                value,
                retry_after_ms: (self.lifetime < value).then_some(RETRY_HINT_MS),
            });
        }
        if let Some(value) = limits.max_concurrent_requests
            && self.reservations.len() as u64 >= value
        {
            out.push(ModelRefusal {
                limit: LimitKind::ConcurrentRequests,
                value,
                retry_after_ms: Some(RETRY_HINT_MS),
            });
        }
        out
    }

    /// The budget an admission at `now` gets: never 0 (a request asking for 0 gets 1).
    fn budget(&self, requested: Option<u64>, now: i64) -> Option<u64> {
        let requested = requested.map(|n| n.max(1));
        if self.limits.tokens_unlimited() {
            return requested;
        }
        let reserved = self.reserved();
        let lifetime = self
            .limits
            .total_token_limit
            .map(|l| l - self.lifetime - reserved);
        let minute = self
            .limits
            .tokens_per_minute
            .map(|l| l - self.used(MINUTE, Metric::Tokens, now) - reserved);
        let day = self
            .limits
            .tokens_per_day
            .map(|l| l - self.used(DAY, Metric::Tokens, now) - reserved);
        [lifetime, minute, day]
            .into_iter()
            .flatten()
            .chain(std::iter::once(requested.unwrap_or(self.default_budget)))
            .min()
    }
}

/// Runs `ops` against the limiter and the model side by side, asserting they agree on every
/// answer. With `settle_within_budget`, no request uses more than its budget, and then no
/// exact sliding window (no buckets, no lateness) may ever hold more than its limit.
fn check(
    limits: RateLimits,
    default_budget: u64,
    ops: &[Op],
    settle_within_budget: bool,
) -> Result<(), TestCaseError> {
    let limiter = RateLimiter::new(LimiterConfig {
        default_completion_budget: default_budget,
    });
    let alice = UserId::parse("alice").unwrap();
    let mut model = Model {
        limits,
        default_budget,
        events: Vec::new(),
        lifetime: 0,
        reservations: Vec::new(),
    };
    let mut held: Vec<Reservation> = Vec::new();
    let mut now = START;

    for op in ops {
        match *op {
            Op::Wait(millis) => now += millis,
            Op::Admit { requested } => {
                let expected_refusals = model.refusals(now);
                match limiter.admit(&alice, &limits, requested, UnixMillis(now)) {
                    Ok(reservation) => {
                        prop_assert!(
                            expected_refusals.is_empty(),
                            "admitted at {now} though {:?} refuses",
                            expected_refusals.first().map(|r| r.limit)
                        );
                        let budget = model.budget(requested, now);
                        prop_assert_eq!(reservation.completion_budget(), budget);
                        let reserved = if limits.tokens_unlimited() {
                            0
                        } else {
                            budget.unwrap_or(0)
                        };
                        model.events.push(Event {
                            at: now,
                            requests: 1,
                            tokens: 0,
                        });
                        model.reservations.push(reserved);
                        prop_assert_eq!(*reservation.status(), model.status(now));
                        held.push(reservation);
                    }
                    Err(rejection) => {
                        prop_assert!(
                            !expected_refusals.is_empty(),
                            "refused at {now}: {rejection}"
                        );
                        let worst = if expected_refusals.iter().any(|r| r.retry_after_ms.is_none())
                        {
                            None
                        } else {
                            expected_refusals
                                .iter()
                                .filter_map(|r| r.retry_after_ms)
                                .max()
                        };
                        prop_assert_eq!(rejection.retry_after_ms, worst);
                        prop_assert!(
                            expected_refusals.iter().any(|r| r.limit == rejection.limit
                                && r.value == rejection.value
                                && r.retry_after_ms == rejection.retry_after_ms),
                            "reported {} is not a refusing limit with that wait",
                            rejection
                        );
                        prop_assert_eq!(rejection.status, model.status(now));
                        if let Some(wait) = rejection.retry_after_ms
                            && wait != RETRY_HINT_MS
                        {
                            // Exact, not only an upper bound: admitted then, not a moment before.
                            let wait = i64::try_from(wait).unwrap();
                            prop_assert!(wait >= 1);
                            prop_assert!(!model.refusals(now + wait - 1).is_empty());
                        }
                    }
                }
            }
            Op::Settle { pick, total_tokens } => {
                if held.is_empty() {
                    continue;
                }
                let index = pick % held.len();
                let reservation = held.swap_remove(index);
                model.reservations.swap_remove(index);
                let total_tokens = match reservation.completion_budget() {
                    Some(budget) if settle_within_budget => total_tokens.min(budget),
                    _ => total_tokens,
                };
                let status = reservation.settle(total_tokens, UnixMillis(now));
                model.events.push(Event {
                    at: now,
                    requests: 0,
                    tokens: total_tokens,
                });
                model.lifetime += total_tokens;
                prop_assert_eq!(status, model.status(now));
            }
            Op::Drop { pick } => {
                if held.is_empty() {
                    continue;
                }
                let index = pick % held.len();
                drop(held.swap_remove(index));
                model.reservations.swap_remove(index);
            }
        }
        prop_assert_eq!(
            limiter.status(&alice, &limits, UnixMillis(now)),
            model.status(now)
        );
        if settle_within_budget {
            check_exact_windows(&model, &limits)?;
        }
    }
    Ok(())
}

/// No exact sliding window `(t - W, t]` holds more than its limit, at any event time `t`.
fn check_exact_windows(model: &Model, limits: &RateLimits) -> Result<(), TestCaseError> {
    for (value, length, metric) in [
        (
            limits.requests_per_minute,
            MINUTE_WINDOW_MS,
            Metric::Requests,
        ),
        (limits.requests_per_day, DAY_WINDOW_MS, Metric::Requests),
        (limits.tokens_per_minute, MINUTE_WINDOW_MS, Metric::Tokens),
        (limits.tokens_per_day, DAY_WINDOW_MS, Metric::Tokens),
    ] {
        let Some(value) = value else { continue };
        for end in model.events.iter().map(|event| event.at) {
            let in_window: u64 = model
                .events
                .iter()
                .filter(|event| event.at > end - length && event.at <= end)
                .map(|event| amount(event, metric))
                .sum();
            prop_assert!(
                in_window <= value,
                "{in_window} {metric:?} in the exact window ending at {end}, limit {value}"
            );
        }
    }
    if let Some(value) = limits.total_token_limit {
        prop_assert!(model.lifetime <= value);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Within budget, no window is ever passed, and every answer matches the model.
    #[test]
    fn never_more_than_the_limit_in_any_window(
        limits in limits(),
        default_budget in 1u64..5_000,
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        check(limits, default_budget, &ops, true)?;
    }

    /// With prompts that overrun the budget, every answer still matches the model.
    #[test]
    fn answers_match_the_model_when_prompts_overrun(
        limits in limits(),
        default_budget in 1u64..5_000,
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        check(limits, default_budget, &ops, false)?;
    }

    /// Any clock, any limits (even the invalid 0), any amounts: no panic, and a refusal always
    /// names a limit that is set.
    #[test]
    fn never_panics(
        steps in proptest::collection::vec(
            (any::<i64>(), proptest::option::of(any::<u64>()), any::<u64>(), any::<bool>()),
            1..60,
        ),
        raw_limits in proptest::collection::vec(proptest::option::of(0u64..3), 6),
    ) {
        let limits = RateLimits {
            requests_per_minute: raw_limits[0],
            requests_per_day: raw_limits[1],
            tokens_per_minute: raw_limits[2],
            tokens_per_day: raw_limits[3],
            total_token_limit: raw_limits[4],
            max_concurrent_requests: raw_limits[5],
            ..RateLimits::unlimited()
        };
        let limiter = RateLimiter::default();
        let alice = UserId::parse("alice").unwrap();
        let mut held = Vec::new();
        for (at, requested, total_tokens, settle) in steps {
            match limiter.admit(&alice, &limits, requested, UnixMillis(at)) {
                Ok(reservation) => held.push(reservation),
                Err(rejection) => {
                    let set = match rejection.limit {
                        LimitKind::RequestsPerMinute => limits.requests_per_minute,
                        LimitKind::RequestsPerDay => limits.requests_per_day,
                        LimitKind::TokensPerMinute => limits.tokens_per_minute,
                        LimitKind::TokensPerDay => limits.tokens_per_day,
                        LimitKind::TotalTokens => limits.total_token_limit,
                        LimitKind::ConcurrentRequests => limits.max_concurrent_requests,
                    };
                    prop_assert_eq!(set, Some(rejection.value));
                }
            }
            if settle && let Some(reservation) = held.pop() {
                reservation.settle(total_tokens, UnixMillis(at));
            }
            limiter.status(&alice, &limits, UnixMillis(at));
        }
    }
}
