//! Puts a measured load on aiproxy's OpenAI-compatible chat endpoint and reports requests/s,
//! latency and time-to-first-token percentiles, tokens/s and errors by kind.
//!
//! It measures from the client's side only: it does not start or configure the proxy, create
//! users, read the proxy's metrics or database, or check answers for correctness beyond their
//! shape (a complete JSON answer, or an SSE stream ending in `data: [DONE]`). Failed requests
//! are data for the report, not errors of the run. Usage of the binary is in `--help`
//! ([`help`]).
//!
//! ```no_run
//! use proxy_loadtest::{Config, Stop, run};
//!
//! let mut config = Config::new("http://localhost:8000", "sk-...");
//! config.stream = true;
//! config.stop = Stop::Requests(40);
//! config.concurrency = 8;
//! let report = run(&config)?;
//! println!("{}", report.to_table());
//! assert!(report.latency.is_none_or(|l| l.p50_us <= l.p99_us));
//! # Ok::<(), proxy_loadtest::LoadTestError>(())
//! ```
#![warn(missing_docs)]

mod args;
mod report;
mod run;
mod sse;

pub use args::{
    Command, Config, DEFAULT_CONCURRENCY, DEFAULT_MODEL, DEFAULT_PATH, DEFAULT_PROMPT,
    DEFAULT_REQUESTS, DEFAULT_TIMEOUT, DEFAULT_URL, ENV_KEY, ENV_MODEL, Stop, help, parse_args,
    parse_duration,
};
pub use report::{ErrorKind, Percentiles, Report, percentile};
pub use run::run;

/// Why a load test could not be set up or run. Failed requests are not errors: they are
/// counted in [`Report::errors`].
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    /// The command line does not parse; the text is clap's, with the usage line.
    #[error("{0}")]
    Arguments(String),
    /// A flag value that does not parse or is out of range.
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidValue {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is expected.
        reason: &'static str,
    },
    /// No API key from `--key` or `TEST_API_KEY`.
    #[error("an API key is required: pass --key or set TEST_API_KEY")]
    MissingKey,
    /// The TLS client configuration could not be built.
    #[error("could not set up TLS: {0}")]
    Tls(String),
    /// A load thread could not be started.
    #[error("could not start a load thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A load thread or task panicked, so its measurements are lost.
    #[error("a load thread panicked; its results are lost")]
    WorkerPanicked,
}

impl LoadTestError {
    /// Whether this is a mistake in the arguments (the binary exits with status 2) rather
    /// than a failure to run (status 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Tls(_) | Self::Thread(_) | Self::WorkerPanicked)
    }
}
