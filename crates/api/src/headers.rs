//! OpenAI's `x-ratelimit-*` response headers.

use actix_web::http::header::{HeaderName, HeaderValue};
use aiproxy_ratelimit::{LimitStatus, WindowStatus};

/// The six `x-ratelimit-*` headers OpenAI sends, for the per-minute windows that are limited.
pub(crate) fn rate_limit_headers(status: &LimitStatus) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    let mut push = |window: &WindowStatus, limit, remaining, reset| {
        out.push((
            HeaderName::from_static(limit),
            HeaderValue::from(window.limit),
        ));
        out.push((
            HeaderName::from_static(remaining),
            HeaderValue::from(window.remaining),
        ));
        if let Ok(value) = HeaderValue::from_str(&go_duration(window.reset_ms)) {
            out.push((HeaderName::from_static(reset), value));
        }
    };
    if let Some(requests) = &status.requests {
        push(
            requests,
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        );
    }
    if let Some(tokens) = &status.tokens {
        push(
            tokens,
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        );
    }
    out
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
pub(crate) fn go_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let millis_in_minute = ms % 60_000;
    let secs = millis_in_minute / 1000;
    let frac = millis_in_minute % 1000;
    let seconds = if frac == 0 {
        format!("{secs}s")
    } else {
        let text = format!("{secs}.{frac:03}");
        format!("{}s", text.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
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
    }
}
