//! End-to-end tests: the real server on an ephemeral port, the Ollama simulator behind it,
//! a real SQLite file, and a real HTTP client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is a failed test"
)]
mod admin;
mod bad_input;
mod basics;
mod chat;
mod faults;
mod layering;
mod ratelimit;
mod revocation;
mod streaming;
mod surface;
mod usage;
