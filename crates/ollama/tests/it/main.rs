//! Integration tests of the Ollama client over real HTTP on 127.0.0.1.
//!
//! One test binary (modules below) so the crate links once. Tests that need an Ollama
//! server use the simulator from `aiproxy-ollama-sim`, started in-process on port 0; the
//! transport failures use bare sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions may panic: a panic is a failed test"
)]

mod connections;
mod endpoints;
mod faults;
mod sim;
mod transport;
