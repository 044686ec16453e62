//! `proxy-loadtest`: load-test aiproxy's `POST /v1/chat/completions`.
//!
//! ```text
//! proxy-loadtest --url http://localhost:8000 --key $TEST_API_KEY --model llama3.2 \
//!                --requests 50 --concurrency 10 [--stream] [--json]
//! proxy-loadtest --key $TEST_API_KEY --duration 30s --concurrency 32 --threads 2 --stream
//! ```
//!
//! `--key` falls back to `TEST_API_KEY`, `--model` to `TEST_MODEL` (else `llama3.2`). Other
//! flags: `--path` (default `/v1/chat/completions`), `--prompt TEXT`, `--max-tokens N`,
//! `--timeout TIME` (default 60s, per request, head and body), `--threads N` (default 1).
//! It prints requests/s, latency p50/p90/p99/max, time to first token p50/p90/p99 (streams),
//! tokens/s from the server's `usage`, and errors by kind; `--json` prints one JSON object
//! instead. A progress line is drawn on stderr when stderr is a terminal.
//!
//! Exit status: 0 when the test ran (even if requests failed), 1 when it could not run,
//! 2 for bad arguments.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use proxy_loadtest::{Command, LoadTestError, parse_args, run};

fn main() -> ExitCode {
    let mut config = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(config)) => config,
        // clap's text names the program already.
        Err(err @ LoadTestError::Arguments(_)) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("proxy-loadtest: {err}");
            return ExitCode::from(if err.is_usage() { 2 } else { 1 });
        }
    };
    config.progress = std::io::stderr().is_terminal();
    match run(&config) {
        Ok(report) if config.json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_table());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("proxy-loadtest: {err}");
            ExitCode::from(if err.is_usage() { 2 } else { 1 })
        }
    }
}
