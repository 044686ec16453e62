//! An admitted request's hold on its user's limits, until it settles or is dropped.

use std::fmt;
use std::sync::{Arc, Mutex};

use aiproxy_domain::{RateLimits, UnixMillis, unpoison};

use crate::LimitStatus;
use crate::windows::UserWindows;

/// An admitted request: it holds one concurrency slot and its completion budget against
/// every token limit until it is settled or dropped.
///
/// The request itself was counted in the request windows at admission, and stays counted
/// whatever happens next.
///
/// Dropping a reservation without [`settle`](Reservation::settle) (the client went away
/// before usage was known) frees the slot and the reserved tokens and counts no tokens at
/// all. A caller that knows some tokens were used should settle with them instead.
///
/// A reservation of a user removed with [`RateLimiter::forget`](crate::RateLimiter::forget)
/// settles into the removed state, so it affects nothing any more.
pub struct Reservation {
    /// `None` once settled, so `Drop` releases only what is still held.
    windows: Option<Arc<Mutex<UserWindows>>>,
    /// The limits of the admission, used for the header values after settling.
    limits: RateLimits,
    completion_budget: Option<u64>,
    reserved_tokens: u64,
    status: LimitStatus,
}

impl Reservation {
    pub(crate) fn new(
        windows: Arc<Mutex<UserWindows>>,
        limits: RateLimits,
        completion_budget: Option<u64>,
        reserved_tokens: u64,
        status: LimitStatus,
    ) -> Self {
        Self {
            windows: Some(windows),
            limits,
            completion_budget,
            reserved_tokens,
            status,
        }
    }

    /// The most completion tokens this request may produce; pass it to Ollama as
    /// `num_predict`, which makes it a hard bound. `None` only when the user has no token
    /// limit at all and the request named no maximum: then nothing needs clamping.
    ///
    /// Otherwise it is the smallest of what the request asked for (or the configured
    /// default), and what each token limit and the lifetime cap leave after the other
    /// requests in flight. Never 0: a request that asked for 0 gets 1, and a limit with nothing
    /// left refuses instead.
    pub fn completion_budget(&self) -> Option<u64> {
        self.completion_budget
    }

    /// The header values right after admission, this request and its reservation included.
    pub fn status(&self) -> &LimitStatus {
        &self.status
    }

    /// Replaces the reservation with the tokens really used (prompt plus completion), counted
    /// at `now` in the token windows and in the lifetime total, and frees the concurrency
    /// slot. Returns the header values after that.
    ///
    /// The prompt tokens are only known here, so a request admitted while under a token
    /// limit can take the window or the quota past it by its prompt; the next request is then
    /// refused until the window frees again.
    pub fn settle(mut self, total_tokens: u64, now: UnixMillis) -> LimitStatus {
        let Some(windows) = self.windows.take() else {
            return self.status;
        };
        let mut user = unpoison(windows.lock());
        user.release(self.reserved_tokens);
        user.record_tokens(total_tokens, now);
        user.status(&self.limits, now)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(windows) = self.windows.take() {
            unpoison(windows.lock()).release(self.reserved_tokens);
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("completion_budget", &self.completion_budget)
            .field("reserved_tokens", &self.reserved_tokens)
            .field("settled", &self.windows.is_none())
            .field("status", &self.status)
            .finish()
    }
}
