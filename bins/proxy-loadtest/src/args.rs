//! The command line: flags, environment fallbacks, defaults and validation.

use std::fmt;
use std::time::Duration;

use crate::LoadTestError;

/// Where the proxy listens when `--url` is not given.
pub const DEFAULT_URL: &str = "http://localhost:8000";
/// The model asked for when neither `--model` nor `TEST_MODEL` is set.
pub const DEFAULT_MODEL: &str = "llama3.2";
/// The endpoint measured when `--path` is not given.
pub const DEFAULT_PATH: &str = "/v1/chat/completions";
/// The user message sent when `--prompt` is not given.
pub const DEFAULT_PROMPT: &str = "Explain in two sentences why the sky is blue.";
/// Requests sent when neither `--requests` nor `--duration` is given.
pub const DEFAULT_REQUESTS: u64 = 50;
/// Requests in flight at once when `--concurrency` is not given.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// How long one request may take, head and body together, when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable `--key` falls back to.
pub const ENV_KEY: &str = "TEST_API_KEY";
/// The environment variable `--model` falls back to.
pub const ENV_MODEL: &str = "TEST_MODEL";

/// The text `--help` prints.
pub const HELP: &str = "\
proxy-loadtest: load-test aiproxy's OpenAI-compatible chat endpoint

USAGE:
    proxy-loadtest --key KEY [OPTIONS]

OPTIONS:
    --url URL            proxy base URL (default http://localhost:8000)
    --key KEY            user API key (default: $TEST_API_KEY)
    --model NAME         model to ask (default: $TEST_MODEL, else llama3.2)
    --path PATH          endpoint path (default /v1/chat/completions)
    --prompt TEXT        user message to send
    --max-tokens N       send max_tokens N
    --stream             stream the answers (SSE) and measure time to first token
    --requests N         send N requests in total (default 50)
    --duration TIME      instead, keep sending for TIME (30s, 500ms, 2m, 1h; a bare number is seconds)
    --concurrency N      requests in flight at once (default 10)
    --threads N          OS threads generating load, each with concurrency/N requests (default 1)
    --timeout TIME       limit for one request, head and body (default 60s)
    --json               print one JSON object instead of the table
    -h, --help           print this help

OUTPUT:
    requests/s, latency p50/p90/p99/max, time to first token p50/p90/p99 (with --stream),
    tokens/s from the usage the server reports, and errors by kind: http_<status>,
    connection, timeout, sse_error:<code>, incomplete_stream, invalid_response.
    A progress line is drawn on stderr when it is a terminal.

EXIT STATUS:
    0 when the test ran (even if requests failed), 1 when it could not run, 2 for bad arguments.

EXAMPLE:
    proxy-loadtest --url http://localhost:8000 --key $TEST_API_KEY --model llama3.2 \\
                   --requests 50 --concurrency 10 --stream
";

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After exactly this many requests have been sent and answered (or failed).
    Requests(u64),
    /// No new request starts once this much time has passed; those in flight still finish.
    Duration(Duration),
}

/// Everything one run needs. [`Config::new`] fills in the same defaults as the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The proxy's base URL, `http://` or `https://`, without a trailing slash.
    pub url: String,
    /// The user's API key, sent as `Authorization: Bearer <key>`.
    pub key: String,
    /// The `model` of every request.
    pub model: String,
    /// The endpoint path, starting with `/`.
    pub path: String,
    /// The one user message of every request.
    pub prompt: String,
    /// `max_tokens` to send, if any.
    pub max_tokens: Option<u64>,
    /// Ask for Server-Sent Events (with `stream_options.include_usage`).
    pub stream: bool,
    /// When to stop.
    pub stop: Stop,
    /// Requests in flight at once, over all threads.
    pub concurrency: usize,
    /// OS threads generating load, each with its own actix system; at most `concurrency`.
    pub threads: usize,
    /// Limit for one request from sending to the end of its body.
    pub timeout: Duration,
    /// Print JSON instead of the table (read by the binary, not by [`crate::run`]).
    pub json: bool,
    /// Draw a progress line on stderr while running.
    pub progress: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a credential; it must not end up in logs or panic messages.
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("key", &"[redacted]")
            .field("model", &self.model)
            .field("path", &self.path)
            .field("prompt", &self.prompt)
            .field("max_tokens", &self.max_tokens)
            .field("stream", &self.stream)
            .field("stop", &self.stop)
            .field("concurrency", &self.concurrency)
            .field("threads", &self.threads)
            .field("timeout", &self.timeout)
            .field("json", &self.json)
            .field("progress", &self.progress)
            .finish()
    }
}

impl Config {
    /// A configuration for `url` and `key` with every other setting at its default
    /// (non-streaming, 50 requests, concurrency 10, one thread, 60 s timeout, no progress).
    pub fn new(url: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            key: key.into(),
            model: DEFAULT_MODEL.to_owned(),
            path: DEFAULT_PATH.to_owned(),
            prompt: DEFAULT_PROMPT.to_owned(),
            max_tokens: None,
            stream: false,
            stop: Stop::Requests(DEFAULT_REQUESTS),
            concurrency: DEFAULT_CONCURRENCY,
            threads: 1,
            timeout: DEFAULT_TIMEOUT,
            json: false,
            progress: false,
        }
    }

    /// The full URL requests go to.
    pub fn target(&self) -> String {
        format!("{}{}", self.url, self.path)
    }

    /// Checks the settings that the type system cannot: an http(s) URL, a path starting
    /// with `/`, a non-empty key, non-zero counts, at most one thread per in-flight request.
    pub fn validate(&self) -> Result<(), LoadTestError> {
        let invalid = |flag: &'static str, value: String, reason: &'static str| {
            Err(LoadTestError::InvalidValue {
                flag,
                value,
                reason,
            })
        };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return invalid(
                "--url",
                self.url.clone(),
                "must start with http:// or https://",
            );
        }
        if !self.path.starts_with('/') {
            return invalid("--path", self.path.clone(), "must start with /");
        }
        if self.key.is_empty() {
            return Err(LoadTestError::MissingKey);
        }
        if self.concurrency == 0 {
            return invalid("--concurrency", "0".into(), "must be at least 1");
        }
        if self.threads == 0 {
            return invalid("--threads", "0".into(), "must be at least 1");
        }
        if self.threads > self.concurrency {
            return invalid(
                "--threads",
                self.threads.to_string(),
                "must not exceed --concurrency (a thread without a request in flight adds nothing)",
            );
        }
        match self.stop {
            Stop::Requests(0) => return invalid("--requests", "0".into(), "must be at least 1"),
            Stop::Duration(d) if d.is_zero() => {
                return invalid("--duration", "0".into(), "must be longer than zero");
            }
            _ => {}
        }
        if self.timeout.is_zero() {
            return invalid("--timeout", "0".into(), "must be longer than zero");
        }
        Ok(())
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print [`HELP`] and exit successfully.
    Help,
    /// Run a load test.
    Run(Config),
}

/// Parses the arguments (without the program name). `env` looks up environment variables,
/// so tests need not touch the process environment; flags win over the environment.
///
/// Accepts `--flag value` and `--flag=value`. The result is validated with
/// [`Config::validate`]; every error is a usage error ([`LoadTestError::is_usage`]).
pub fn parse_args(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, LoadTestError> {
    let mut config = Config::new(DEFAULT_URL, env(ENV_KEY).unwrap_or_default());
    if let Some(model) = env(ENV_MODEL).filter(|m| !m.is_empty()) {
        config.model = model;
    }
    let mut requests = None;
    let mut duration = None;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let takes_value = match flag.as_str() {
            "--stream" | "--json" | "--help" | "-h" => false,
            "--url" | "--key" | "--model" | "--path" | "--prompt" | "--max-tokens"
            | "--requests" | "--duration" | "--concurrency" | "--threads" | "--timeout" => true,
            _ => return Err(LoadTestError::UnknownFlag(flag)),
        };
        let value = if takes_value {
            match inline_value {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| LoadTestError::MissingValue(flag.clone()))?,
            }
        } else {
            if inline_value.is_some() {
                return Err(LoadTestError::UnexpectedValue(flag));
            }
            String::new()
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--stream" => config.stream = true,
            "--json" => config.json = true,
            "--url" => config.url = value.trim_end_matches('/').to_owned(),
            "--key" => config.key = value,
            "--model" => config.model = value,
            "--path" => config.path = value,
            "--prompt" => config.prompt = value,
            "--max-tokens" => config.max_tokens = Some(parse_count("--max-tokens", &value)?),
            "--requests" => requests = Some(parse_count("--requests", &value)?),
            "--duration" => duration = Some(parse_duration("--duration", &value)?),
            "--concurrency" => config.concurrency = parse_count("--concurrency", &value)?,
            "--threads" => config.threads = parse_count("--threads", &value)?,
            "--timeout" => config.timeout = parse_duration("--timeout", &value)?,
            // Every other name was refused above.
            _ => return Err(LoadTestError::UnknownFlag(flag)),
        }
    }

    config.stop = match (requests, duration) {
        (Some(_), Some(_)) => return Err(LoadTestError::Conflict("--requests", "--duration")),
        (Some(n), None) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Requests(DEFAULT_REQUESTS),
    };
    config.validate()?;
    Ok(Command::Run(config))
}

/// A non-negative integer flag value.
fn parse_count<T: std::str::FromStr>(flag: &'static str, value: &str) -> Result<T, LoadTestError> {
    value.parse().map_err(|_| LoadTestError::InvalidValue {
        flag,
        value: value.to_owned(),
        reason: "expected a whole number",
    })
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, LoadTestError> {
    let invalid = || LoadTestError::InvalidValue {
        flag,
        value: value.to_owned(),
        reason: "expected a duration such as 500ms, 30s, 2m or 1h",
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, LoadTestError> {
        parse_with_env(args, &[])
    }

    fn parse_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Command, LoadTestError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_args(args.iter().map(|a| (*a).to_owned()), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn config(args: &[&str]) -> Config {
        match parse(args).unwrap() {
            Command::Run(config) => config,
            Command::Help => panic!("expected a run"),
        }
    }

    #[test]
    fn defaults_fill_everything_but_the_key() {
        let config = config(&["--key", "sk-1"]);
        assert_eq!(config, Config::new(DEFAULT_URL, "sk-1"));
        assert_eq!(config.stop, Stop::Requests(50));
        assert_eq!(config.target(), "http://localhost:8000/v1/chat/completions");
        assert_eq!(config.timeout, Duration::from_secs(60));
        assert!(!config.stream && !config.json && !config.progress);
    }

    #[test]
    fn the_issue_example_parses() {
        let config = config(&[
            "--url",
            "http://localhost:8000/",
            "--key",
            "sk-x",
            "--model",
            "llama3.2",
            "--requests",
            "50",
            "--concurrency",
            "10",
        ]);
        assert_eq!(config.url, "http://localhost:8000");
        assert_eq!(config.stop, Stop::Requests(50));
        assert_eq!(config.concurrency, 10);
    }

    #[test]
    fn every_flag_is_read_in_both_spellings() {
        let config = config(&[
            "--key=sk-2",
            "--model=m",
            "--path",
            "/v2/chat",
            "--prompt=hello there",
            "--max-tokens",
            "16",
            "--stream",
            "--duration=2m",
            "--concurrency=8",
            "--threads",
            "2",
            "--timeout",
            "1500ms",
            "--json",
            "--url=https://proxy.example",
        ]);
        assert_eq!(config.key, "sk-2");
        assert_eq!(config.model, "m");
        assert_eq!(config.path, "/v2/chat");
        assert_eq!(config.prompt, "hello there");
        assert_eq!(config.max_tokens, Some(16));
        assert!(config.stream && config.json);
        assert_eq!(config.stop, Stop::Duration(Duration::from_secs(120)));
        assert_eq!((config.concurrency, config.threads), (8, 2));
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.url, "https://proxy.example");
    }

    #[test]
    fn key_and_model_come_from_the_environment_unless_given() {
        let env = [(ENV_KEY, "sk-env"), (ENV_MODEL, "qwen3")];
        let Command::Run(from_env) = parse_with_env(&[], &env).unwrap() else {
            panic!("expected a run")
        };
        assert_eq!(
            (from_env.key.as_str(), from_env.model.as_str()),
            ("sk-env", "qwen3")
        );
        let Command::Run(from_flags) =
            parse_with_env(&["--key", "sk-flag", "--model", "m"], &env).unwrap()
        else {
            panic!("expected a run")
        };
        assert_eq!(
            (from_flags.key.as_str(), from_flags.model.as_str()),
            ("sk-flag", "m")
        );
    }

    #[test]
    fn help_wins_even_without_a_key() {
        assert_eq!(parse(&["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--requests", "3", "-h"]).unwrap(), Command::Help);
        assert!(HELP.contains("--concurrency"));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "API key"),
            (&["--key", ""], "API key"),
            (&["--key", "k", "--bogus"], "unknown argument --bogus"),
            (&["--key", "k", "extra"], "unknown argument extra"),
            (&["--key", "k", "--requests"], "--requests"),
            (&["--key", "k", "--requests", "ten"], "whole number"),
            (&["--key", "k", "--requests", "-1"], "whole number"),
            (&["--key", "k", "--requests", "0"], "at least 1"),
            (&["--key", "k", "--concurrency", "0"], "at least 1"),
            (&["--key", "k", "--duration", "5 s"], "duration"),
            (&["--key", "k", "--duration", "0s"], "longer than zero"),
            (
                &["--key", "k", "--requests", "5", "--duration", "5s"],
                "--duration",
            ),
            (
                &["--key", "k", "--concurrency", "2", "--threads", "3"],
                "--concurrency",
            ),
            (&["--key", "k", "--url", "localhost:8000"], "http://"),
            (&["--key", "k", "--path", "v1/chat"], "start with /"),
            (&["--key", "k", "--stream=yes"], "--stream"),
        ];
        for (args, needle) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.is_usage(), "{args:?}: {err}");
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn durations_take_the_common_units() {
        let d = |v: &str| parse_duration("--duration", v);
        assert_eq!(d("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(d("30").unwrap(), Duration::from_secs(30));
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(d("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(d("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "1.5s", "3d", "-1s", "99999999999999999999h"] {
            assert!(d(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = Config::new(DEFAULT_URL, "sk-secret-value");
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret-value"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
