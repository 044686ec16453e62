//! One user's windows, quota and requests in flight, and the admission decision over them.

use aiproxy_domain::{RateLimits, UnixMillis};

use crate::ring::{Metric, Ring};
use crate::{
    DAY_BUCKET_MS, DAY_WINDOW_MS, LimitKind, LimitStatus, MINUTE_BUCKET_MS, MINUTE_WINDOW_MS,
    RETRY_HINT_MS, Rejection, WindowStatus,
};

/// Everything the limiter knows about one user. Guarded by one mutex, so a decision and its
/// recording happen as one step.
#[derive(Debug)]
pub(crate) struct UserWindows {
    minute: Ring,
    day: Ring,
    /// Settled tokens over the user's whole life (restored from the store at start-up).
    lifetime_tokens: u64,
    /// Completion budgets of the requests in flight, counted against every token limit
    /// until they settle.
    reserved_tokens: u64,
    /// Requests admitted and neither settled nor dropped.
    in_flight: u64,
}

/// What an admission grants.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) completion_budget: Option<u64>,
    pub(crate) reserved_tokens: u64,
    pub(crate) status: LimitStatus,
}

/// The limit that refuses, while the checks run.
struct Refusal {
    limit: LimitKind,
    value: u64,
    retry_after_ms: Option<u64>,
}

impl Refusal {
    /// Whether `self` should be reported rather than `other`: a refusal that waiting cannot
    /// end first, else the one that frees last. On a tie the earlier check stays.
    fn outranks(&self, other: &Refusal) -> bool {
        match (self.retry_after_ms, other.retry_after_ms) {
            (None, Some(_)) => true,
            (Some(mine), Some(theirs)) => mine > theirs,
            (_, None) => false,
        }
    }
}

impl UserWindows {
    pub(crate) fn new(now: UnixMillis) -> Self {
        Self {
            minute: Ring::new(MINUTE_WINDOW_MS, MINUTE_BUCKET_MS, now),
            day: Ring::new(DAY_WINDOW_MS, DAY_BUCKET_MS, now),
            lifetime_tokens: 0,
            reserved_tokens: 0,
            in_flight: 0,
        }
    }

    fn advance(&mut self, now: UnixMillis) {
        self.minute.advance(now);
        self.day.advance(now);
    }

    /// Checks every limit and, only if all pass, records the request and reserves its budget.
    pub(crate) fn admit(
        &mut self,
        limits: &RateLimits,
        requested_completion_tokens: Option<u64>,
        default_completion_budget: u64,
        now: UnixMillis,
    ) -> Result<Grant, Rejection> {
        let token_headroom = self.check(limits, now)?;
        self.minute.add(now, 1, 0);
        self.day.add(now, 1, 0);
        self.in_flight += 1;
        let (completion_budget, reserved_tokens) = if limits.tokens_unlimited() {
            (requested_completion_tokens.map(|n| n.max(1)), 0)
        } else {
            // Headroom is at least 1 here: a limit with nothing left refused above.
            let budget = requested_completion_tokens
                .unwrap_or(default_completion_budget)
                .min(token_headroom)
                .max(1);
            (Some(budget), budget)
        };
        self.reserved_tokens = self.reserved_tokens.saturating_add(reserved_tokens);
        Ok(Grant {
            completion_budget,
            reserved_tokens,
            status: self.status(limits, now),
        })
    }

    /// Checks every limit without recording anything: the refusal a request would get now,
    /// or what every token limit leaves for one more request after the reservations of the
    /// requests already in flight (`u64::MAX` when no token limit applies).
    pub(crate) fn check(&mut self, limits: &RateLimits, now: UnixMillis) -> Result<u64, Rejection> {
        self.advance(now);
        let mut refusal: Option<Refusal> = None;
        let mut refuse = |candidate: Refusal| {
            if refusal.as_ref().is_none_or(|held| candidate.outranks(held)) {
                refusal = Some(candidate);
            }
        };

        for (limit, value, ring) in [
            (
                LimitKind::RequestsPerMinute,
                limits.requests_per_minute,
                &self.minute,
            ),
            (
                LimitKind::RequestsPerDay,
                limits.requests_per_day,
                &self.day,
            ),
        ] {
            if let Some(value) = value
                && ring.sum(Metric::Requests) >= value
            {
                refuse(Refusal {
                    limit,
                    value,
                    retry_after_ms: ring.millis_until_below(Metric::Requests, value, 0, now),
                });
            }
        }

        // What every token limit leaves for one more request, after the reservations of
        // the requests already in flight.
        let reserved = self.reserved_tokens;
        let mut token_headroom = u64::MAX;
        for (limit, value, ring) in [
            (
                LimitKind::TokensPerMinute,
                limits.tokens_per_minute,
                &self.minute,
            ),
            (LimitKind::TokensPerDay, limits.tokens_per_day, &self.day),
        ] {
            let Some(value) = value else { continue };
            let used = ring.sum(Metric::Tokens).saturating_add(reserved);
            if used >= value {
                let retry_after_ms = ring
                    .millis_until_below(Metric::Tokens, value, reserved, now)
                    .or_else(|| hint_unless_zero(value));
                refuse(Refusal {
                    limit,
                    value,
                    retry_after_ms,
                });
            } else {
                token_headroom = token_headroom.min(value - used);
            }
        }
        if let Some(value) = limits.total_token_limit {
            let used = self.lifetime_tokens.saturating_add(reserved);
            if used >= value {
                // Settled tokens never leave the lifetime total; reservations may still
                // settle for less than they hold.
                let retry_after_ms = if self.lifetime_tokens >= value {
                    None
                } else {
                    Some(RETRY_HINT_MS)
                };
                refuse(Refusal {
                    limit: LimitKind::TotalTokens,
                    value,
                    retry_after_ms,
                });
            } else {
                token_headroom = token_headroom.min(value - used);
            }
        }

        if let Some(value) = limits.max_concurrent_requests
            && self.in_flight >= value
        {
            refuse(Refusal {
                limit: LimitKind::ConcurrentRequests,
                value,
                retry_after_ms: hint_unless_zero(value),
            });
        }

        if let Some(refusal) = refusal {
            return Err(Rejection {
                limit: refusal.limit,
                value: refusal.value,
                retry_after_ms: refusal.retry_after_ms,
                status: self.status(limits, now),
            });
        }
        Ok(token_headroom)
    }

    /// Ends a request in flight: frees its concurrency slot and its reservation.
    pub(crate) fn release(&mut self, reserved_tokens: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.reserved_tokens = self.reserved_tokens.saturating_sub(reserved_tokens);
    }

    /// Counts tokens used at `now` in every token window and in the lifetime total.
    pub(crate) fn record_tokens(&mut self, total_tokens: u64, now: UnixMillis) {
        self.advance(now);
        self.minute.add(now, 0, total_tokens);
        self.day.add(now, 0, total_tokens);
        self.lifetime_tokens = self.lifetime_tokens.saturating_add(total_tokens);
    }

    /// Counts past requests from the usage records: `requests` requests and their tokens at
    /// `at`.
    pub(crate) fn record_past_requests(
        &mut self,
        at: UnixMillis,
        requests: u32,
        total_tokens: u64,
    ) {
        self.minute.add(at, requests, total_tokens);
        self.day.add(at, requests, total_tokens);
    }

    pub(crate) fn set_lifetime_tokens(&mut self, total_tokens: u64) {
        self.lifetime_tokens = total_tokens;
    }

    /// Takes the windows and lifetime total of `rebuilt`, keeping the requests in flight.
    pub(crate) fn replace_history(&mut self, rebuilt: UserWindows) {
        self.minute = rebuilt.minute;
        self.day = rebuilt.day;
        self.lifetime_tokens = rebuilt.lifetime_tokens;
    }

    /// The header values at `now`.
    pub(crate) fn status(&mut self, limits: &RateLimits, now: UnixMillis) -> LimitStatus {
        self.advance(now);
        let minute = &self.minute;
        LimitStatus {
            requests: limits.requests_per_minute.map(|limit| WindowStatus {
                limit,
                remaining: limit.saturating_sub(minute.sum(Metric::Requests)),
                reset_ms: minute.millis_until_empty(Metric::Requests, now),
            }),
            tokens: limits.tokens_per_minute.map(|limit| WindowStatus {
                limit,
                remaining: limit.saturating_sub(
                    minute
                        .sum(Metric::Tokens)
                        .saturating_add(self.reserved_tokens),
                ),
                reset_ms: minute.millis_until_empty(Metric::Tokens, now),
            }),
        }
    }
}

/// The retry hint for a refusal that only the end of requests in flight can lift; a limit of
/// 0 (which validation forbids) is never lifted.
fn hint_unless_zero(value: u64) -> Option<u64> {
    (value > 0).then_some(RETRY_HINT_MS)
}

/// The header values for a user the limiter holds nothing about.
pub(crate) fn fresh_status(limits: &RateLimits) -> LimitStatus {
    let full = |limit| WindowStatus {
        limit,
        remaining: limit,
        reset_ms: 0,
    };
    LimitStatus {
        requests: limits.requests_per_minute.map(full),
        tokens: limits.tokens_per_minute.map(full),
    }
}
