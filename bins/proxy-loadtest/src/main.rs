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

use proxy_loadtest::{Command, HELP, parse_args, run};

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let Ok(args) = args else {
        eprintln!("proxy-loadtest: arguments must be valid UTF-8");
        return ExitCode::from(2);
    };
    let mut config = match parse_args(args, |name| std::env::var(name).ok()) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(config)) => config,
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
