//! What admission answers: which limit refused, and the header values of the minute windows.

use std::fmt;

/// One of a user's limits, as named in [`aiproxy_domain::RateLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// [`RateLimits::requests_per_minute`](aiproxy_domain::RateLimits::requests_per_minute).
    RequestsPerMinute,
    /// [`RateLimits::requests_per_day`](aiproxy_domain::RateLimits::requests_per_day).
    RequestsPerDay,
    /// [`RateLimits::tokens_per_minute`](aiproxy_domain::RateLimits::tokens_per_minute).
    TokensPerMinute,
    /// [`RateLimits::tokens_per_day`](aiproxy_domain::RateLimits::tokens_per_day).
    TokensPerDay,
    /// [`RateLimits::total_token_limit`](aiproxy_domain::RateLimits::total_token_limit).
    TotalTokens,
    /// [`RateLimits::max_concurrent_requests`](aiproxy_domain::RateLimits::max_concurrent_requests).
    ConcurrentRequests,
}

impl LimitKind {
    /// The field name of this limit in [`aiproxy_domain::RateLimits`] and in the admin API,
    /// e.g. `"requests_per_minute"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "requests_per_minute",
            Self::RequestsPerDay => "requests_per_day",
            Self::TokensPerMinute => "tokens_per_minute",
            Self::TokensPerDay => "tokens_per_day",
            Self::TotalTokens => "total_token_limit",
            Self::ConcurrentRequests => "max_concurrent_requests",
        }
    }

    /// True for the lifetime cap, which no amount of waiting frees (OpenAI calls this
    /// `insufficient_quota` rather than a rate limit).
    pub fn is_quota(self) -> bool {
        matches!(self, Self::TotalTokens)
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Header values for one per-minute window, as OpenAI's `x-ratelimit-*` headers carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    /// The limit in force.
    pub limit: u64,
    /// What is left in the window now. For tokens, the reservations of requests in flight
    /// are subtracted too, since they are not available to a new request.
    pub remaining: u64,
    /// Milliseconds until everything now in the window has left it (0 when it is empty).
    /// Like the window itself this is late by at most one bucket (1 s), never early.
    /// Reservations in flight are not in the window yet and do not move it.
    pub reset_ms: u64,
}

/// Header values for the per-minute request and token windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStatus {
    /// The `requests_per_minute` window; `None` when that limit is unlimited.
    pub requests: Option<WindowStatus>,
    /// The `tokens_per_minute` window; `None` when that limit is unlimited.
    pub tokens: Option<WindowStatus>,
}

/// Why a request was refused, and when it may succeed. A refused request was recorded
/// nowhere: it counts against no window, no quota and no concurrency slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The limit that refused. When several refuse at once, the one that frees last (the one
    /// `retry_after_ms` waits for); a refusal that waiting cannot end wins over all.
    pub limit: LimitKind,
    /// That limit's value.
    pub value: u64,
    /// Milliseconds after which the same request would be admitted, given what the windows
    /// hold now (always at least 1). It is exact with respect to the buckets, so never too
    /// early unless other requests settle or are admitted in between.
    ///
    /// `None` when waiting alone cannot help: the lifetime quota is used up by settled
    /// tokens. When only requests in flight block (the concurrency cap, or token reservations
    /// that fill a limit by themselves) their end cannot be known, and this is the constant
    /// hint [`RETRY_HINT_MS`](crate::RETRY_HINT_MS).
    pub retry_after_ms: Option<u64>,
    /// The header values at the moment of refusal.
    pub status: LimitStatus,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} limit of {} reached", self.limit, self.value)?;
        match self.retry_after_ms {
            Some(ms) => write!(f, "; retry in {ms} ms"),
            None => f.write_str("; waiting will not free it"),
        }
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_limit_fields() {
        assert_eq!(LimitKind::RequestsPerMinute.name(), "requests_per_minute");
        assert_eq!(LimitKind::TotalTokens.name(), "total_token_limit");
        assert_eq!(
            LimitKind::ConcurrentRequests.to_string(),
            "max_concurrent_requests"
        );
        assert!(LimitKind::TotalTokens.is_quota());
        assert!(!LimitKind::TokensPerDay.is_quota());
    }

    #[test]
    fn a_rejection_reads_as_a_sentence() {
        let rejection = Rejection {
            limit: LimitKind::TokensPerMinute,
            value: 1000,
            retry_after_ms: Some(1500),
            status: LimitStatus::default(),
        };
        assert_eq!(
            rejection.to_string(),
            "tokens_per_minute limit of 1000 reached; retry in 1500 ms"
        );
    }
}
