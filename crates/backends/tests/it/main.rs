//! The router against several real simulators with different model sets.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod discovery;
mod failover;
mod harness;
mod routing;
