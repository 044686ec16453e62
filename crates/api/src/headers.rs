//! OpenAI's `x-ratelimit-*` response headers.

use std::fmt;

use actix_web::http::header::{HeaderName, HeaderValue};
use aiproxy_ratelimit::{LimitStatus, WindowStatus};

// `const` so that the names are checked at compile time, not on every response.
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// The six `x-ratelimit-*` headers OpenAI sends, for the per-minute windows that are limited.
pub(crate) fn rate_limit_headers(status: &LimitStatus) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    let mut push = |window: &WindowStatus, [limit, remaining, reset]: [HeaderName; 3]| {
        out.push((limit, HeaderValue::from(window.limit)));
        out.push((remaining, HeaderValue::from(window.remaining)));
        let mut text = StackText::default();
        if write_go_duration(&mut text, window.reset_ms).is_ok()
            && let Ok(value) = HeaderValue::from_bytes(text.as_bytes())
        {
            out.push((reset, value));
        }
    };
    if let Some(requests) = &status.requests {
        push(
            requests,
            [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
        );
    }
    if let Some(tokens) = &status.tokens {
        push(tokens, [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS]);
    }
    out
}

/// A short text on the stack: the longest duration `u64` milliseconds can print is
/// `5124095576030h25m51.615s`, 24 bytes.
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The current `x-ratelimit-*` headers of a user, for responses that do not go through
/// admission (model lists, usage reports): OpenAI sends them on every response.
pub(crate) fn current_limit_headers(
    state: &crate::state::AppState,
    user: &aiproxy_domain::User,
) -> Vec<(HeaderName, HeaderValue)> {
    let status = state
        .limiter
        .status(&user.id, &user.limits, aiproxy_domain::UnixMillis::now());
    rate_limit_headers(&status)
}

/// Formats milliseconds the way Go's `time.Duration` prints, as OpenAI's reset headers do:
/// `0s`, `12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
#[cfg(test)]
pub(crate) fn go_duration(ms: u64) -> String {
    let mut text = String::new();
    let _ = write_go_duration(&mut text, ms);
    text
}

fn write_go_duration(out: &mut impl fmt::Write, ms: u64) -> fmt::Result {
    if ms == 0 {
        return out.write_str("0s");
    }
    if ms < 1000 {
        return write!(out, "{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let millis_in_minute = ms % 60_000;
    let secs = millis_in_minute / 1000;
    let frac = millis_in_minute % 1000;
    if hours > 0 {
        write!(out, "{hours}h")?;
    }
    if hours > 0 || minutes > 0 {
        write!(out, "{minutes}m")?;
    }
    write!(out, "{secs}")?;
    if frac != 0 {
        // Milliseconds as Go prints a fraction: no trailing zeros (1.5s, 1.25s, 1.125s).
        let (digits, width) = match frac {
            f if f % 100 == 0 => (f / 100, 1),
            f if f % 10 == 0 => (f / 10, 2),
            f => (f, 3),
        };
        write!(out, ".{digits:0width$}")?;
    }
    out.write_str("s")
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(12), "12ms");
        assert_eq!(go_duration(1000), "1s");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(360_000), "6m0s");
        assert_eq!(go_duration(3_723_000), "1h2m3s");
        assert_eq!(go_duration(1_050), "1.05s");
        assert_eq!(go_duration(61_001), "1m1.001s");
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(u64::MAX), "5124095576030h25m51.615s");
    }
}
