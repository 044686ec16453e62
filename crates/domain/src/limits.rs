use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The largest value any limit may take. Anything larger is certainly a mistake (a typo, or a
/// negative number cast to unsigned somewhere) and is refused rather than stored.
pub const MAX_LIMIT_VALUE: u64 = 1_000_000_000_000;

/// A user's limits. `None` means unlimited, except for the two caps on Ollama options
/// (`max_num_ctx`, `max_keep_alive_secs`), where `None` means "the server's policy".
///
/// Windows slide: a request counts against `requests_per_minute` for the sixty seconds after
/// it was admitted, not until the next minute boundary. See `aiproxy-ratelimit` for how
/// exactly windows free up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RateLimits {
    /// Requests admitted in any sliding 60 seconds.
    #[schema(example = 60)]
    pub requests_per_minute: Option<u64>,
    /// Requests admitted in any sliding 24 hours.
    #[schema(example = 1000)]
    pub requests_per_day: Option<u64>,
    /// Prompt plus completion tokens in any sliding 60 seconds.
    #[schema(example = 100000)]
    pub tokens_per_minute: Option<u64>,
    /// Prompt plus completion tokens in any sliding 24 hours.
    #[schema(example = 1000000)]
    pub tokens_per_day: Option<u64>,
    /// Prompt plus completion tokens over the user's whole life.
    #[schema(example = json!(null))]
    pub total_token_limit: Option<u64>,
    /// Requests of this user in flight at once.
    #[schema(example = json!(null))]
    pub max_concurrent_requests: Option<u64>,
    /// The largest context (Ollama's `num_ctx`) this user may ask for; `None` for the
    /// server's cap.
    #[serde(default)]
    #[schema(example = json!(null))]
    pub max_num_ctx: Option<u64>,
    /// The longest this user may ask Ollama to keep a model loaded (`keep_alive`), in
    /// seconds; `None` for the server's cap. 0 allows no keeping at all.
    #[serde(default)]
    #[schema(example = json!(null))]
    pub max_keep_alive_secs: Option<u64>,
}

impl Default for RateLimits {
    /// The defaults the product promises: 60 requests a minute, 1000 a day, 100 000 tokens a
    /// minute, 1 000 000 a day, no lifetime cap and no concurrency cap.
    fn default() -> Self {
        Self {
            requests_per_minute: Some(60),
            requests_per_day: Some(1000),
            tokens_per_minute: Some(100_000),
            tokens_per_day: Some(1_000_000),
            total_token_limit: None,
            max_concurrent_requests: None,
            max_num_ctx: None,
            max_keep_alive_secs: None,
        }
    }
}

impl RateLimits {
    /// Limits with every field unlimited.
    pub fn unlimited() -> Self {
        Self {
            requests_per_minute: None,
            requests_per_day: None,
            tokens_per_minute: None,
            tokens_per_day: None,
            total_token_limit: None,
            max_concurrent_requests: None,
            max_num_ctx: None,
            max_keep_alive_secs: None,
        }
    }

    /// Checks every field is within `1..=MAX_LIMIT_VALUE` (0 would lock the user out for
    /// good; disabling a user is the honest way to do that), except `max_keep_alive_secs`,
    /// which may be 0.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let fields = [
            ("requests_per_minute", self.requests_per_minute),
            ("requests_per_day", self.requests_per_day),
            ("tokens_per_minute", self.tokens_per_minute),
            ("tokens_per_day", self.tokens_per_day),
            ("total_token_limit", self.total_token_limit),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_num_ctx", self.max_num_ctx),
        ];
        for (field, value) in fields {
            if let Some(v) = value
                && (v == 0 || v > MAX_LIMIT_VALUE)
            {
                return Err(ValidationError::new(
                    field,
                    format!("must be between 1 and {MAX_LIMIT_VALUE}, or null for unlimited"),
                ));
            }
        }
        if self
            .max_keep_alive_secs
            .is_some_and(|v| v > MAX_LIMIT_VALUE)
        {
            return Err(ValidationError::new(
                "max_keep_alive_secs",
                format!("must be between 0 and {MAX_LIMIT_VALUE}, or null for the server's cap"),
            ));
        }
        Ok(())
    }

    /// True when no token limit applies, so the proxy need not reserve or clamp anything.
    pub fn tokens_unlimited(&self) -> bool {
        self.tokens_per_minute.is_none()
            && self.tokens_per_day.is_none()
            && self.total_token_limit.is_none()
    }
}

/// One of a user's limits, as named in [`RateLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    /// [`RateLimits::requests_per_minute`].
    RequestsPerMinute,
    /// [`RateLimits::requests_per_day`].
    RequestsPerDay,
    /// [`RateLimits::tokens_per_minute`].
    TokensPerMinute,
    /// [`RateLimits::tokens_per_day`].
    TokensPerDay,
    /// [`RateLimits::total_token_limit`].
    TotalTokens,
    /// [`RateLimits::max_concurrent_requests`].
    ConcurrentRequests,
}

impl LimitKind {
    /// Every kind, in a fixed order (for counters indexed by kind).
    pub const ALL: [LimitKind; 6] = [
        Self::RequestsPerMinute,
        Self::RequestsPerDay,
        Self::TokensPerMinute,
        Self::TokensPerDay,
        Self::TotalTokens,
        Self::ConcurrentRequests,
    ];

    /// The field name of this limit in [`RateLimits`] and in the admin API, e.g.
    /// `"requests_per_minute"`. Also how a stored refusal names its limit.
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

    /// The inverse of [`LimitKind::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
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

/// A partial update of [`RateLimits`]: `None` leaves a field as it is, `Some(None)` makes it
/// unlimited, `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsPatch {
    /// See [`RateLimits::requests_per_minute`].
    pub requests_per_minute: Option<Option<u64>>,
    /// See [`RateLimits::requests_per_day`].
    pub requests_per_day: Option<Option<u64>>,
    /// See [`RateLimits::tokens_per_minute`].
    pub tokens_per_minute: Option<Option<u64>>,
    /// See [`RateLimits::tokens_per_day`].
    pub tokens_per_day: Option<Option<u64>>,
    /// See [`RateLimits::total_token_limit`].
    pub total_token_limit: Option<Option<u64>>,
    /// See [`RateLimits::max_concurrent_requests`].
    pub max_concurrent_requests: Option<Option<u64>>,
    /// See [`RateLimits::max_num_ctx`].
    pub max_num_ctx: Option<Option<u64>>,
    /// See [`RateLimits::max_keep_alive_secs`].
    pub max_keep_alive_secs: Option<Option<u64>>,
}

impl LimitsPatch {
    /// The limits after this patch, validated.
    pub fn apply(&self, base: RateLimits) -> Result<RateLimits, ValidationError> {
        let pick = |patch: Option<Option<u64>>, old: Option<u64>| patch.unwrap_or(old);
        let next = RateLimits {
            requests_per_minute: pick(self.requests_per_minute, base.requests_per_minute),
            requests_per_day: pick(self.requests_per_day, base.requests_per_day),
            tokens_per_minute: pick(self.tokens_per_minute, base.tokens_per_minute),
            tokens_per_day: pick(self.tokens_per_day, base.tokens_per_day),
            total_token_limit: pick(self.total_token_limit, base.total_token_limit),
            max_concurrent_requests: pick(
                self.max_concurrent_requests,
                base.max_concurrent_requests,
            ),
            max_num_ctx: pick(self.max_num_ctx, base.max_num_ctx),
            max_keep_alive_secs: pick(self.max_keep_alive_secs, base.max_keep_alive_secs),
        };
        next.validate()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_promise() {
        let d = RateLimits::default();
        assert_eq!(d.requests_per_minute, Some(60));
        assert_eq!(d.requests_per_day, Some(1000));
        assert_eq!(d.tokens_per_minute, Some(100_000));
        assert_eq!(d.tokens_per_day, Some(1_000_000));
        assert_eq!(d.total_token_limit, None);
        assert!(d.validate().is_ok());
    }

    #[test]
    fn patch_changes_only_what_was_sent() {
        let patch = LimitsPatch {
            requests_per_minute: Some(Some(5)),
            tokens_per_day: Some(None),
            ..LimitsPatch::default()
        };
        let next = patch.apply(RateLimits::default()).unwrap();
        assert_eq!(next.requests_per_minute, Some(5));
        assert_eq!(next.tokens_per_day, None);
        assert_eq!(next.requests_per_day, Some(1000));
    }

    #[test]
    fn zero_and_absurd_values_are_refused() {
        let zero = LimitsPatch {
            requests_per_minute: Some(Some(0)),
            ..LimitsPatch::default()
        };
        assert_eq!(
            zero.apply(RateLimits::default()).unwrap_err().field,
            "requests_per_minute"
        );
        let huge = LimitsPatch {
            tokens_per_day: Some(Some(u64::MAX)),
            ..LimitsPatch::default()
        };
        assert!(huge.apply(RateLimits::default()).is_err());
    }

    #[test]
    fn a_keep_alive_cap_of_zero_is_allowed_and_a_context_cap_of_zero_is_not() {
        let patch = LimitsPatch {
            max_keep_alive_secs: Some(Some(0)),
            ..LimitsPatch::default()
        };
        assert_eq!(
            patch
                .apply(RateLimits::default())
                .unwrap()
                .max_keep_alive_secs,
            Some(0)
        );
        let patch = LimitsPatch {
            max_num_ctx: Some(Some(0)),
            ..LimitsPatch::default()
        };
        assert_eq!(
            patch.apply(RateLimits::default()).unwrap_err().field,
            "max_num_ctx"
        );
    }
}
