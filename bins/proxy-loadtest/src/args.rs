//! The command line: flags, environment fallbacks, defaults and validation.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};

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

/// What `--help` adds below the flags.
const AFTER_HELP: &str = "\
Output:
  requests/s, latency p50/p90/p99/max, time to first token p50/p90/p99 (with --stream),
  tokens/s from the usage the server reports, and errors by kind: http_<status>,
  connection, timeout, sse_error:<code>, incomplete_stream, invalid_response.
  A progress line is drawn on stderr when it is a terminal.

Exit status:
  0 when the test ran (even if requests failed), 1 when it could not run, 2 for bad arguments.

Example:
  proxy-loadtest --url http://localhost:8000 --key $TEST_API_KEY --model llama3.2 \\
                 --requests 50 --concurrency 10 --stream";

/// The flags as clap reads them; [`parse_args`] turns them into a [`Config`].
#[derive(Debug, Parser)]
#[command(
    name = "proxy-loadtest",
    version,
    about = "Load-test aiproxy's OpenAI-compatible chat endpoint.",
    after_long_help = AFTER_HELP,
    args_override_self = true
)]
struct Cli {
    /// Proxy base URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL)]
    url: String,
    /// User API key.
    #[arg(long, value_name = "KEY", env = ENV_KEY, hide_env_values = true)]
    key: Option<String>,
    /// Model to ask.
    #[arg(long, value_name = "NAME", env = ENV_MODEL, default_value = DEFAULT_MODEL)]
    model: String,
    /// Endpoint path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH)]
    path: String,
    /// User message to send.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_PROMPT)]
    prompt: String,
    /// Send `max_tokens` N.
    #[arg(long, value_name = "N", value_parser = count::<u64>, allow_hyphen_values = true)]
    max_tokens: Option<u64>,
    /// Stream the answers (SSE) and measure time to first token.
    #[arg(long)]
    stream: bool,
    /// Send N requests in total [default: 50].
    #[arg(long, value_name = "N", value_parser = count::<u64>, allow_hyphen_values = true)]
    requests: Option<u64>,
    /// Instead, keep sending for TIME (30s, 500ms, 2m, 1h; a bare number is seconds).
    #[arg(
        long,
        value_name = "TIME",
        value_parser = duration,
        conflicts_with = "requests"
    )]
    duration: Option<Duration>,
    /// Requests in flight at once.
    #[arg(
        long,
        value_name = "N",
        value_parser = count::<usize>,
        allow_hyphen_values = true,
        default_value_t = DEFAULT_CONCURRENCY
    )]
    concurrency: usize,
    /// OS threads generating load, each with concurrency/N requests.
    #[arg(
        long,
        value_name = "N",
        value_parser = count::<usize>,
        allow_hyphen_values = true,
        default_value_t = 1
    )]
    threads: usize,
    /// Limit for one request, head and body.
    #[arg(long, value_name = "TIME", value_parser = duration, default_value = "60s")]
    timeout: Duration,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The text `--help` prints.
pub fn help() -> String {
    Cli::command().render_long_help().to_string()
}

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
    /// Print this text (`--help` or `--version`) and exit successfully.
    Help(String),
    /// Run a load test.
    Run(Config),
}

/// Parses the arguments (without the program name); `--key` and `--model` fall back to the
/// environment variables [`ENV_KEY`] and [`ENV_MODEL`], and flags win over them.
///
/// Accepts `--flag value` and `--flag=value`. The result is validated with
/// [`Config::validate`]; every error is a usage error ([`LoadTestError::is_usage`]).
pub fn parse_args<I, T>(args: I) -> Result<Command, LoadTestError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_with(Cli::command(), args)
}

/// [`parse_args`] with the parser given, so tests can take the environment out of it.
fn parse_with<I, T>(command: clap::Command, args: I) -> Result<Command, LoadTestError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args =
        std::iter::once(OsString::from("proxy-loadtest")).chain(args.into_iter().map(Into::into));
    let parsed = command.try_get_matches_from(args).and_then(|mut matches| {
        // An empty TEST_MODEL counts as unset, as an empty variable usually does in a shell.
        let empty_env_model = matches.value_source("model") == Some(ValueSource::EnvVariable)
            && matches
                .get_one::<String>("model")
                .is_some_and(String::is_empty);
        Cli::from_arg_matches_mut(&mut matches).map(|cli| (cli, empty_env_model))
    });
    let (mut cli, empty_env_model) = match parsed {
        Ok(parsed) => parsed,
        Err(err) if !err.use_stderr() => return Ok(Command::Help(err.render().to_string())),
        Err(err) => {
            return Err(LoadTestError::Arguments(
                err.render().to_string().trim_end().to_owned(),
            ));
        }
    };
    if empty_env_model {
        DEFAULT_MODEL.clone_into(&mut cli.model);
    }
    let mut config = Config::new(cli.url, cli.key.unwrap_or_default());
    config.model = cli.model;
    config.path = cli.path;
    config.prompt = cli.prompt;
    config.max_tokens = cli.max_tokens;
    config.stream = cli.stream;
    config.stop = match (cli.requests, cli.duration) {
        (_, Some(d)) => Stop::Duration(d),
        (n, None) => Stop::Requests(n.unwrap_or(DEFAULT_REQUESTS)),
    };
    config.concurrency = cli.concurrency;
    config.threads = cli.threads;
    config.timeout = cli.timeout;
    config.json = cli.json;
    config.validate()?;
    Ok(Command::Run(config))
}

/// A non-negative integer flag value.
fn count<T: std::str::FromStr>(value: &str) -> Result<T, &'static str> {
    value.parse().map_err(|_| "expected a whole number")
}

/// A duration flag value, for clap.
fn duration(value: &str) -> Result<Duration, &'static str> {
    parse_duration("", value).map_err(|_| DURATION_EXPECTED)
}

const DURATION_EXPECTED: &str = "expected a duration such as 500ms, 30s, 2m or 1h";

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, LoadTestError> {
    let invalid = || LoadTestError::InvalidValue {
        flag,
        value: value.to_owned(),
        reason: DURATION_EXPECTED,
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

    /// Parses as the binary does, but without the process environment: a developer's
    /// `TEST_API_KEY` must not change what these tests see. The environment fallbacks are
    /// tested against the binary (`tests/command_line.rs`).
    fn parse(args: &[&str]) -> Result<Command, LoadTestError> {
        let without_env = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        parse_with(without_env, args)
    }

    fn config(args: &[&str]) -> Config {
        match parse(args).unwrap() {
            Command::Run(config) => config,
            Command::Help(_) => panic!("expected a run"),
        }
    }

    #[test]
    fn the_parser_is_well_formed() {
        Cli::command().debug_assert();
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
    fn a_flag_given_twice_takes_the_last_value() {
        let config = config(&["--key", "sk-1", "--requests", "3", "--requests", "4"]);
        assert_eq!(config.stop, Stop::Requests(4));
    }

    #[test]
    fn help_wins_even_without_a_key() {
        for args in [&["--help"][..], &["--requests", "3", "-h"]] {
            let Command::Help(text) = parse(args).unwrap() else {
                panic!("{args:?}: expected help")
            };
            assert!(text.contains("--concurrency <N>"), "{text}");
        }
        assert!(help().contains("[env: TEST_API_KEY]"), "{}", help());
        assert!(help().contains("Exit status:"));
        let Command::Help(version) = parse(&["--version"]).unwrap() else {
            panic!("expected the version")
        };
        assert!(version.starts_with("proxy-loadtest "), "{version}");
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "API key"),
            (&["--key", ""], "API key"),
            (&["--key", "k", "--bogus"], "unexpected argument '--bogus'"),
            (&["--key", "k", "extra"], "unexpected argument 'extra'"),
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
