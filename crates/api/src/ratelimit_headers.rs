//! OpenAI's `x-ratelimit-*` response headers.

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
        write_go_duration(&mut text, window.reset_ms);
        if let Ok(value) = HeaderValue::from_bytes(text.as_bytes()) {
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

    fn push(&mut self, byte: u8) {
        // 32 bytes hold the longest duration; a longer text would be cut, never overflow.
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `value` in decimal, at least `width` digits (zero-padded). By hand, not through
    /// `core::fmt`: two of these texts are written for every answer.
    fn push_number(&mut self, mut value: u64, width: usize) {
        let mut digits = [0u8; 20];
        let mut count = 0;
        while count < digits.len() && (value > 0 || count < width.max(1)) {
            digits[count] = b'0' + (value % 10) as u8;
            value /= 10;
            count += 1;
        }
        for &digit in digits[..count].iter().rev() {
            self.push(digit);
        }
    }

    fn push_str(&mut self, text: &str) {
        for &byte in text.as_bytes() {
            self.push(byte);
        }
    }
}

/// Formats milliseconds the way Go's `time.Duration` prints, as OpenAI's reset headers do:
/// `0s`, `12ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
#[cfg(test)]
pub(crate) fn go_duration(ms: u64) -> String {
    let mut text = StackText::default();
    write_go_duration(&mut text, ms);
    String::from_utf8_lossy(text.as_bytes()).into_owned()
}

fn write_go_duration(out: &mut StackText, ms: u64) {
    if ms < 1000 {
        out.push_number(ms, 1);
        out.push_str(if ms == 0 { "s" } else { "ms" });
        return;
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let millis_in_minute = ms % 60_000;
    let secs = millis_in_minute / 1000;
    let frac = millis_in_minute % 1000;
    if hours > 0 {
        out.push_number(hours, 1);
        out.push(b'h');
    }
    if hours > 0 || minutes > 0 {
        out.push_number(minutes, 1);
        out.push(b'm');
    }
    out.push_number(secs, 1);
    if frac != 0 {
        // Milliseconds as Go prints a fraction: no trailing zeros (1.5s, 1.25s, 1.125s).
        let (digits, width) = match frac {
            f if f % 100 == 0 => (f / 100, 1),
            f if f % 10 == 0 => (f / 10, 2),
            f => (f, 3),
        };
        out.push(b'.');
        out.push_number(digits, width);
    }
    out.push(b's');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_headers_carry_each_window_and_an_unlimited_window_sends_none() {
        let window = |limit, remaining, reset_ms| WindowStatus {
            limit,
            remaining,
            reset_ms,
        };
        let status = LimitStatus {
            requests: Some(window(60, 59, 1_000)),
            tokens: Some(window(u64::MAX, u64::MAX - 1, u64::MAX)),
        };
        let text = |headers: Vec<(HeaderName, HeaderValue)>| -> Vec<(String, String)> {
            headers
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect()
        };
        let pair = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        assert_eq!(
            text(rate_limit_headers(&status)),
            [
                pair("x-ratelimit-limit-requests", "60"),
                pair("x-ratelimit-remaining-requests", "59"),
                pair("x-ratelimit-reset-requests", "1s"),
                pair("x-ratelimit-limit-tokens", "18446744073709551615"),
                pair("x-ratelimit-remaining-tokens", "18446744073709551614"),
                pair("x-ratelimit-reset-tokens", "5124095576030h25m51.615s"),
            ]
        );
        let requests_only = LimitStatus {
            requests: Some(window(1, 0, 0)),
            tokens: None,
        };
        assert_eq!(
            text(rate_limit_headers(&requests_only)),
            [
                pair("x-ratelimit-limit-requests", "1"),
                pair("x-ratelimit-remaining-requests", "0"),
                pair("x-ratelimit-reset-requests", "0s"),
            ]
        );
    }

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
