//! Small reproductions of Go standard-library behaviour that shows on Ollama's wire:
//! `encoding/json` output escaping and error texts, `time.Time` JSON, `encoding/base64` errors
//! and `time.ParseDuration`.

use serde::Serialize;
use time::OffsetDateTime;

/// Serializes like Go's `json.Marshal`: compact, with `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub(crate) fn to_go_json<T: Serialize>(value: &T) -> String {
    // Our response types are plain structs and JSON values; they always serialize.
    let plain = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    if !plain.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return plain;
    }
    // Outside strings compact JSON has none of these characters, so replacing them everywhere
    // only ever rewrites string contents, into escapes that decode to the same text.
    let mut escaped = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Formats like Go's `time.Time` JSON for a UTC time: RFC 3339 with nanoseconds, trailing zeros
/// of the fraction trimmed (`2025-06-06T08:47:46.02758Z`).
pub(crate) fn go_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let nanos = at.nanosecond();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// The current time as Ollama's `created_at`.
pub(crate) fn now_timestamp() -> String {
    go_timestamp(OffsetDateTime::now_utc())
}

/// Checks `input` the way Go's `base64.StdEncoding.Decode` does (padding required, `\r`/`\n`
/// skipped, trailing bits tolerated); on failure returns the offset Go reports in
/// `illegal base64 data at input byte N`.
pub(crate) fn check_go_base64(input: &str) -> Result<(), usize> {
    let src = input.as_bytes();
    let is_alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let skip_newlines = |mut at: usize| {
        while at < src.len() && (src[at] == b'\n' || src[at] == b'\r') {
            at += 1;
        }
        at
    };
    let mut si = 0;
    loop {
        let mut quantum = 0;
        while quantum < 4 {
            let Some(&c) = src.get(si) else {
                return if quantum == 0 {
                    Ok(())
                } else {
                    Err(si - quantum)
                };
            };
            si += 1;
            if is_alphabet(c) {
                quantum += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            match quantum {
                0 | 1 => return Err(si - 1),
                2 => {
                    si = skip_newlines(si);
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            si = skip_newlines(si);
            return if si < src.len() { Err(si) } else { Ok(()) };
        }
    }
}

/// Parses a Go duration string (`"5m"`, `"1h30m"`, `"0"`) into seconds, with Go's error texts.
pub(crate) fn parse_go_duration(original: &str) -> Result<f64, String> {
    let invalid = || format!("time: invalid duration \"{original}\"");
    let mut rest = original;
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        let digits = number.chars().filter(char::is_ascii_digit).count();
        if digits == 0 || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{original}\""));
        }
        let unit = &rest[..unit_len];
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{original}\""
                ));
            }
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Ok(if negative { -total } else { total })
}

/// Rewrites a serde_json syntax error into the text Go's `encoding/json` gives for it.
pub(crate) fn go_syntax_error(body: &[u8], error: &serde_json::Error) -> String {
    if error.is_eof() {
        return "unexpected EOF".to_owned();
    }
    let offending = byte_at(body, error.line(), error.column());
    let character = match offending {
        Some(b'\'') => "'\\''".to_owned(),
        Some(b'"') => "'\"'".to_owned(),
        Some(b'\n') => "'\\n'".to_owned(),
        Some(b'\r') => "'\\r'".to_owned(),
        Some(b'\t') => "'\\t'".to_owned(),
        Some(byte) if byte.is_ascii_graphic() || byte == b' ' => format!("'{}'", byte as char),
        Some(byte) => format!("'\\x{byte:02x}'"),
        None => return "unexpected EOF".to_owned(),
    };
    let message = error.to_string();
    let context = if message.starts_with("expected `:`") {
        "after object key"
    } else if message.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if message.starts_with("expected `,` or `]`") {
        "after array element"
    } else if message.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if message.starts_with("trailing characters") {
        "after top-level value"
    } else if message.starts_with("control character") {
        "in string literal"
    } else {
        "looking for beginning of value"
    };
    format!("invalid character {character} {context}")
}

fn byte_at(body: &[u8], line: usize, column: usize) -> Option<u8> {
    let mut line_start = 0;
    for _ in 1..line {
        let newline = body[line_start..].iter().position(|&b| b == b'\n')?;
        line_start += newline + 1;
    }
    body.get(line_start + column.checked_sub(1)?).copied()
}

/// Go's `%q` for the plain strings model names are.
pub(crate) fn go_quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_characters_are_escaped_like_go() {
        assert_eq!(
            to_go_json(&json!({"content": "<b>a & b</b>"})),
            r#"{"content":"\u003cb\u003ea \u0026 b\u003c/b\u003e"}"#
        );
        let round_trip: serde_json::Value =
            serde_json::from_str(&to_go_json(&json!({"c": "x<\\>y"}))).unwrap();
        assert_eq!(round_trip["c"], "x<\\>y");
    }

    #[test]
    fn timestamps_trim_trailing_zeros_like_go() {
        let at = time::macros::datetime!(2025-06-06 08:47:46.027580 UTC);
        assert_eq!(go_timestamp(at), "2025-06-06T08:47:46.02758Z");
        let whole = time::macros::datetime!(2025-06-06 08:47:46 UTC);
        assert_eq!(go_timestamp(whole), "2025-06-06T08:47:46Z");
        let offset = time::macros::datetime!(2025-06-06 10:47:46.5 +02:00);
        assert_eq!(go_timestamp(offset), "2025-06-06T08:47:46.5Z");
    }

    #[test]
    fn base64_errors_report_go_offsets() {
        assert_eq!(check_go_base64("aGVsbG8="), Ok(()));
        assert_eq!(check_go_base64("aGVs\nbG8="), Ok(()));
        assert_eq!(check_go_base64(""), Ok(()));
        assert_eq!(check_go_base64("data:image/png;base64,AAAA"), Err(4));
        assert_eq!(check_go_base64("aGVsbG8"), Err(4));
        assert_eq!(check_go_base64("abc"), Err(0));
        assert_eq!(check_go_base64("a==="), Err(1));
        assert_eq!(check_go_base64("aa=b"), Err(2));
        assert_eq!(check_go_base64("aa="), Err(3));
        assert_eq!(check_go_base64("aGk=aGk="), Err(4));
        assert_eq!(check_go_base64("aGVsbG8-"), Err(7));
    }

    #[test]
    fn go_durations_parse_and_fail_with_go_texts() {
        assert_eq!(parse_go_duration("0"), Ok(0.0));
        assert_eq!(parse_go_duration("0s"), Ok(0.0));
        assert_eq!(parse_go_duration("1h30m"), Ok(5400.0));
        assert_eq!(parse_go_duration("1.5s"), Ok(1.5));
        assert_eq!(parse_go_duration("-5m"), Ok(-300.0));
        assert_eq!(
            parse_go_duration("5"),
            Err("time: missing unit in duration \"5\"".into())
        );
        assert_eq!(
            parse_go_duration("5d"),
            Err("time: unknown unit \"d\" in duration \"5d\"".into())
        );
        assert_eq!(
            parse_go_duration("abc"),
            Err("time: invalid duration \"abc\"".into())
        );
    }

    #[test]
    fn syntax_errors_read_like_go() {
        let message = |body: &str| {
            let err = serde_json::from_str::<serde_json::Value>(body).unwrap_err();
            go_syntax_error(body.as_bytes(), &err)
        };
        assert_eq!(
            message("{\"a\": x}"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            message("{\"a\" 1}"),
            "invalid character '1' after object key"
        );
        assert_eq!(
            message("{\"a\": 1 \"b\"}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(message("{\"a\": 1"), "unexpected EOF");
        assert_eq!(
            message("{\n 'a': 1}"),
            "invalid character '\\'' looking for beginning of object key string"
        );
    }
}
