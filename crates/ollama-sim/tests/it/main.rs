//! Integration tests: the simulator started in-process and spoken to over real sockets.
// Helpers outside #[test] functions unwrap too: a failed expectation in a test is a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod client;
mod endpoints;
mod faults;
mod fidelity;
mod inference;
mod instances;
mod management;
mod openai;
mod responses;
mod thinking;
