//! The `proxy-loadtest` binary's command line: help, exit statuses, and the environment
//! variables `--key` and `--model` fall back to.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure here is a failed test"
)]

use std::process::{Command, Output};

use serde_json::Value;

/// The binary with a clean environment plus `env`.
fn loadtest(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_proxy-loadtest"));
    command.env_clear().args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// A one-request run against a port where nothing listens: it fails to connect, which is a
/// finished run (status 0) whose report says what was asked.
fn run_report(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec![
        "--url",
        "http://127.0.0.1:9",
        "--requests",
        "1",
        "--concurrency",
        "1",
        "--timeout",
        "5s",
        "--json",
    ];
    all.extend_from_slice(args);
    let output = loadtest(&all, env);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["requests"], 1, "{report}");
    report
}

#[test]
fn help_and_version_print_to_stdout_and_succeed() {
    let help = loadtest(&["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "Usage: proxy-loadtest [OPTIONS]",
        "--duration <TIME>",
        "[env: TEST_API_KEY]",
        "[env: TEST_MODEL",
        "Exit status:",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let version = loadtest(&["--version"], &[]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("proxy-loadtest "));
}

#[test]
fn help_never_shows_the_key_from_the_environment() {
    let help = loadtest(&["--help"], &[("TEST_API_KEY", "sk-secret-from-env")]);
    assert!(!String::from_utf8_lossy(&help.stdout).contains("sk-secret-from-env"));
}

#[test]
fn without_a_key_anywhere_it_is_a_usage_error() {
    let output = loadtest(&["--requests", "1"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("API key"));
    let unknown = loadtest(&["--bogus"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--bogus"));
}

#[test]
fn key_and_model_come_from_the_environment_unless_given() {
    let env = [("TEST_API_KEY", "sk-env"), ("TEST_MODEL", "qwen3")];
    assert_eq!(run_report(&[], &env)["model"], "qwen3");
    assert_eq!(run_report(&["--model", "m"], &env)["model"], "m");
    // An empty TEST_MODEL counts as unset.
    let empty_model = [("TEST_API_KEY", "sk-env"), ("TEST_MODEL", "")];
    assert_eq!(run_report(&[], &empty_model)["model"], "llama3.2");
    // A key given as a flag needs no environment.
    assert_eq!(run_report(&["--key", "sk-flag"], &[])["model"], "llama3.2");
}
