//! Integration tests of `aiproxy-ratelimit` through its public API only.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail the test by panicking"
)]

mod model;
mod threads;
