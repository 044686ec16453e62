//! Per-request outcomes, their tally, and the report: percentiles, rates, the table and JSON.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde_json::{Value, json};

use crate::Config;

/// Why one request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The server answered with a non-2xx status.
    Status(u16),
    /// Connecting, sending, or reading the body failed at the transport level.
    Connection,
    /// The request did not finish (head and body) within the timeout.
    Timeout,
    /// A stream ended with an `{"error": …}` event; holds the error's code or type.
    StreamError(String),
    /// A stream ended without `data: [DONE]` and without an error event.
    IncompleteStream,
    /// A 2xx answer that is not the JSON it should be.
    InvalidResponse,
}

impl fmt::Display for ErrorKind {
    /// The stable names reports and scripts use: `http_401`, `connection`, `timeout`,
    /// `sse_error:<code>`, `incomplete_stream`, `invalid_response`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "http_{status}"),
            Self::Connection => f.write_str("connection"),
            Self::Timeout => f.write_str("timeout"),
            Self::StreamError(code) => write!(f, "sse_error:{code}"),
            Self::IncompleteStream => f.write_str("incomplete_stream"),
            Self::InvalidResponse => f.write_str("invalid_response"),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A complete answer.
    Success {
        /// From sending to the end of the body, in microseconds.
        latency_us: u64,
        /// From sending to the first event with content, in microseconds (streams only).
        first_token_us: Option<u64>,
        /// `usage.completion_tokens`, when the server reported it.
        completion_tokens: Option<u64>,
    },
    /// A failure of this kind.
    Failure(ErrorKind),
}

/// Whole microseconds, saturating (a request does not last 584 000 years).
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The raw numbers of one or more workers, merged before the report is computed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    latencies_us: Vec<u64>,
    first_tokens_us: Vec<u64>,
    completion_tokens: u64,
    successes_without_usage: u64,
    errors: BTreeMap<ErrorKind, u64>,
}

impl Tally {
    /// Adds one request's outcome.
    pub(crate) fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Success {
                latency_us,
                first_token_us,
                completion_tokens,
            } => {
                self.latencies_us.push(latency_us);
                self.first_tokens_us.extend(first_token_us);
                match completion_tokens {
                    Some(tokens) => self.completion_tokens += tokens,
                    None => self.successes_without_usage += 1,
                }
            }
            Outcome::Failure(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// Adds another worker's numbers to these.
    pub(crate) fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.first_tokens_us.extend(other.first_tokens_us);
        self.completion_tokens += other.completion_tokens;
        self.successes_without_usage += other.successes_without_usage;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
    }

    /// The report for a run of `config` that took `elapsed`.
    pub(crate) fn into_report(mut self, config: &Config, elapsed: Duration) -> Report {
        self.latencies_us.sort_unstable();
        self.first_tokens_us.sort_unstable();
        let successes = self.latencies_us.len() as u64;
        let failures: u64 = self.errors.values().sum();
        let seconds = elapsed.as_secs_f64();
        let per_second = |count: u64| {
            if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            }
        };
        Report {
            target: config.target(),
            model: config.model.clone(),
            stream: config.stream,
            concurrency: config.concurrency,
            threads: config.threads,
            requests: successes + failures,
            successes,
            failures,
            elapsed,
            requests_per_sec: per_second(successes + failures),
            latency: Percentiles::of_sorted(&self.latencies_us),
            first_token: Percentiles::of_sorted(&self.first_tokens_us),
            completion_tokens: self.completion_tokens,
            tokens_per_sec: per_second(self.completion_tokens),
            successes_without_usage: self.successes_without_usage,
            errors: self
                .errors
                .into_iter()
                .map(|(kind, count)| (kind.to_string(), count))
                .collect(),
        }
    }
}

/// The nearest-rank percentile of ascending `sorted` values: the smallest value with at least
/// `percent`% of the values at or below it. `None` when there are no values.
pub fn percentile(sorted: &[u64], percent: u64) -> Option<u64> {
    let n = sorted.len() as u64;
    let rank = (percent.min(100) * n).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).ok()?;
    sorted.get(index).copied()
}

/// Nearest-rank percentiles of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest value.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of ascending `sorted` values, or `None` when there are none.
    /// Guarantees `p50 <= p90 <= p99 <= max`.
    pub fn of_sorted(sorted: &[u64]) -> Option<Self> {
        Some(Self {
            p50_us: percentile(sorted, 50)?,
            p90_us: percentile(sorted, 90)?,
            p99_us: percentile(sorted, 99)?,
            max_us: *sorted.last()?,
        })
    }

    fn to_json_millis(self) -> Value {
        json!({
            "p50": millis(self.p50_us),
            "p90": millis(self.p90_us),
            "p99": millis(self.p99_us),
            "max": millis(self.max_us),
        })
    }
}

/// Microseconds as milliseconds; three decimals keep every microsecond.
fn millis(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The URL that was measured.
    pub target: String,
    /// The model asked for.
    pub model: String,
    /// Whether answers were streamed.
    pub stream: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// OS threads that generated the load.
    pub threads: usize,
    /// Requests that finished, successfully or not (`successes + failures`).
    pub requests: u64,
    /// Requests with a complete answer.
    pub successes: u64,
    /// Requests that failed; [`Report::errors`] says how.
    pub failures: u64,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub requests_per_sec: f64,
    /// Latency (send to end of body) of the successful requests; `None` without any.
    pub latency: Option<Percentiles>,
    /// Time to the first event with content, for successful streams; `None` when not
    /// streaming or no stream carried content.
    pub first_token: Option<Percentiles>,
    /// Sum of `usage.completion_tokens` over the successful requests.
    pub completion_tokens: u64,
    /// `completion_tokens / elapsed`.
    pub tokens_per_sec: f64,
    /// Successful requests whose answer carried no usage (they add nothing to tokens/s).
    pub successes_without_usage: u64,
    /// Failures by kind (see [`ErrorKind`]'s names), sorted by name.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// The human-readable table the binary prints.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let mode = if self.stream {
            "streaming"
        } else {
            "non-streaming"
        };
        let threads = if self.threads == 1 {
            "thread"
        } else {
            "threads"
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{} ({}, {mode}, concurrency {}, {} {threads})",
            self.target, self.model, self.concurrency, self.threads
        );
        let _ = writeln!(
            out,
            "{:<22}{} ({} ok, {} failed) in {:.3} s",
            "requests",
            self.requests,
            self.successes,
            self.failures,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(out, "{:<22}{:.2}", "requests/s", self.requests_per_sec);
        let _ = writeln!(
            out,
            "{:<22}{}",
            "latency",
            table_percentiles(self.latency, true)
        );
        if self.stream {
            let _ = writeln!(
                out,
                "{:<22}{}",
                "time to first token",
                table_percentiles(self.first_token, false)
            );
        }
        let _ = write!(
            out,
            "{:<22}{:.1} ({} completion tokens",
            "tokens/s", self.tokens_per_sec, self.completion_tokens
        );
        if self.successes_without_usage > 0 {
            let _ = write!(
                out,
                "; {} answers without usage",
                self.successes_without_usage
            );
        }
        let _ = writeln!(out, ")");
        if self.errors.is_empty() {
            let _ = writeln!(out, "{:<22}none", "errors");
        } else {
            let _ = writeln!(out, "errors");
            for (kind, count) in &self.errors {
                let _ = writeln!(out, "  {kind:<20}{count}");
            }
        }
        out
    }

    /// One JSON object for scripts: durations in milliseconds, percentiles `null` when there
    /// was nothing to measure.
    pub fn to_json(&self) -> Value {
        json!({
            "target": self.target,
            "model": self.model,
            "stream": self.stream,
            "concurrency": self.concurrency,
            "threads": self.threads,
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failures,
            "elapsed_ms": millis(micros(self.elapsed)),
            "requests_per_sec": self.requests_per_sec,
            "latency_ms": self.latency.map(Percentiles::to_json_millis),
            "time_to_first_token_ms": self.first_token.map(Percentiles::to_json_millis),
            "completion_tokens": self.completion_tokens,
            "tokens_per_sec": self.tokens_per_sec,
            "successes_without_usage": self.successes_without_usage,
            "errors": self.errors,
        })
    }
}

fn table_percentiles(percentiles: Option<Percentiles>, with_max: bool) -> String {
    let Some(p) = percentiles else {
        return "n/a".to_owned();
    };
    let ms = |us: u64| format!("{:.1} ms", millis(us));
    let mut line = format!(
        "p50 {:<11}p90 {:<11}p99 {:<11}",
        ms(p.p50_us),
        ms(p.p90_us),
        ms(p.p99_us)
    );
    if with_max {
        line.push_str(&format!("max {}", ms(p.max_us)));
    }
    line.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(latency_us: u64, first_token_us: Option<u64>, tokens: Option<u64>) -> Outcome {
        Outcome::Success {
            latency_us,
            first_token_us,
            completion_tokens: tokens,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 90), Some(90));
        assert_eq!(percentile(&hundred, 99), Some(99));
        assert_eq!(percentile(&hundred, 100), Some(100));
        let ten: Vec<u64> = (1..=10).map(|v| v * 10).collect();
        // ceil(0.5 × 10) = 5th, ceil(0.9 × 10) = 9th, ceil(0.99 × 10) = 10th.
        assert_eq!(percentile(&ten, 50), Some(50));
        assert_eq!(percentile(&ten, 90), Some(90));
        assert_eq!(percentile(&ten, 99), Some(100));
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 0), Some(7));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(
            Percentiles::of_sorted(&[1, 2, 3]),
            Some(Percentiles {
                p50_us: 2,
                p90_us: 3,
                p99_us: 3,
                max_us: 3
            })
        );
        assert_eq!(Percentiles::of_sorted(&[]), None);
    }

    #[test]
    fn merged_tallies_report_rates_percentiles_and_errors() {
        let config = Config::new("http://proxy", "k");
        let mut first = Tally::default();
        first.record(success(3_000, Some(1_000), Some(10)));
        first.record(Outcome::Failure(ErrorKind::Status(429)));
        let mut second = Tally::default();
        second.record(success(1_000, None, Some(30)));
        second.record(success(2_000, Some(500), None));
        second.record(Outcome::Failure(ErrorKind::Status(429)));
        second.record(Outcome::Failure(ErrorKind::StreamError(
            "upstream_timeout".into(),
        )));
        first.merge(second);

        let report = first.into_report(&config, Duration::from_secs(2));
        assert_eq!(
            (report.requests, report.successes, report.failures),
            (6, 3, 3)
        );
        assert_eq!(report.requests_per_sec, 3.0);
        assert_eq!(report.completion_tokens, 40);
        assert_eq!(report.tokens_per_sec, 20.0);
        assert_eq!(report.successes_without_usage, 1);
        assert_eq!(
            report.latency,
            Some(Percentiles {
                p50_us: 2_000,
                p90_us: 3_000,
                p99_us: 3_000,
                max_us: 3_000
            })
        );
        assert_eq!(report.first_token.map(|p| p.p50_us), Some(500));
        assert_eq!(
            report.errors,
            BTreeMap::from([
                ("http_429".to_owned(), 2),
                ("sse_error:upstream_timeout".to_owned(), 1)
            ])
        );
    }

    #[test]
    fn an_empty_run_reports_zero_rates_and_no_percentiles() {
        let report = Tally::default().into_report(&Config::new("http://p", "k"), Duration::ZERO);
        assert_eq!(report.requests, 0);
        assert_eq!(report.requests_per_sec, 0.0);
        assert_eq!(report.latency, None);
        assert!(report.to_table().contains("n/a"));
        assert_eq!(report.to_json()["latency_ms"], Value::Null);
    }

    #[test]
    fn error_kinds_have_stable_names() {
        let names: Vec<String> = [
            ErrorKind::Status(503),
            ErrorKind::Connection,
            ErrorKind::Timeout,
            ErrorKind::StreamError("server_error".into()),
            ErrorKind::IncompleteStream,
            ErrorKind::InvalidResponse,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            [
                "http_503",
                "connection",
                "timeout",
                "sse_error:server_error",
                "incomplete_stream",
                "invalid_response"
            ]
        );
    }

    #[test]
    fn table_and_json_show_every_figure() {
        let mut config = Config::new("http://proxy:8000", "k");
        config.stream = true;
        config.concurrency = 4;
        let mut tally = Tally::default();
        tally.record(success(12_345, Some(2_500), Some(7)));
        tally.record(Outcome::Failure(ErrorKind::Timeout));
        let report = tally.into_report(&config, Duration::from_millis(500));

        let table = report.to_table();
        for needle in [
            "http://proxy:8000/v1/chat/completions (llama3.2, streaming, concurrency 4, 1 thread)",
            "2 (1 ok, 1 failed) in 0.500 s",
            "requests/s            4.00",
            "max 12.3 ms",
            "time to first token   p50 2.5 ms",
            "tokens/s              14.0 (7 completion tokens)",
            "  timeout             1",
        ] {
            assert!(table.contains(needle), "missing {needle:?} in\n{table}");
        }

        let json = report.to_json();
        assert_eq!(json["requests"], 2);
        assert_eq!(json["stream"], true);
        assert_eq!(json["elapsed_ms"], 500.0);
        assert_eq!(json["latency_ms"]["p99"], 12.345);
        assert_eq!(json["time_to_first_token_ms"]["p50"], 2.5);
        assert_eq!(json["tokens_per_sec"], 14.0);
        assert_eq!(json["errors"]["timeout"], 1);
    }
}
