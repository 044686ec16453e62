//! Exact, in-memory, per-user admission against sliding request and token windows, the
//! lifetime token quota and a concurrency cap, with the completion budget each request may use.
//!
//! This crate does no I/O and keeps no clock: every call takes the current time as
//! [`UnixMillis`], so tests move time by hand. It stores no limits either: callers pass the
//! user's current [`RateLimits`] on every call, so a changed limit applies to the next request.
//! Reading usage back from the database at start-up (see [`RateLimiter::restore`]), answering
//! HTTP 429 and writing `x-ratelimit-*` headers belong to the storage and API crates.
//!
//! ```
//! use aiproxy_domain::{RateLimits, UnixMillis, UserId};
//! use aiproxy_ratelimit::{LimitKind, LimiterConfig, RateLimiter};
//!
//! let limiter = RateLimiter::new(LimiterConfig::default());
//! let alice = UserId::parse("alice").unwrap();
//! let limits = RateLimits {
//!     requests_per_minute: Some(1),
//!     tokens_per_minute: Some(1_000),
//!     ..RateLimits::unlimited()
//! };
//! let t0 = UnixMillis(1_700_000_000_000);
//!
//! // The request asks for up to 4000 completion tokens; only 1000 are left this minute.
//! let reservation = limiter.admit(&alice, &limits, Some(4_000), t0).unwrap();
//! assert_eq!(reservation.completion_budget(), Some(1_000));
//!
//! // A second request within the minute is refused and told when to come back: t0 starts a
//! // one-second bucket, so its slot frees one whole bucket after the exact minute.
//! let refused = limiter.admit(&alice, &limits, None, t0.plus_millis(10)).unwrap_err();
//! assert_eq!(refused.limit, LimitKind::RequestsPerMinute);
//! assert_eq!(refused.retry_after_ms, Some(60_990));
//!
//! // Ollama reported 20 prompt and 300 completion tokens.
//! let status = reservation.settle(320, t0.plus_millis(900));
//! assert_eq!(status.tokens.unwrap().remaining, 680);
//! ```
//!
//! # Windows
//!
//! Each user has a one-minute window in 1-second buckets and a one-day window in 1-minute
//! buckets, each a ring of counters. An event at time `t` counts until
//! `(floor(t / bucket) + 1) * bucket + window`: after the exact expiry `t + window` by at
//! least 1 ms and at most one bucket, **never before it**. So a limit of L admits at most L in
//! any exact sliding window, and a slot frees at most 1 s (minute window) or 1 min (day
//! window) after its request left the exact window.
//!
//! # Tokens
//!
//! A request is refused while a token window or the lifetime quota is used up, counting the
//! reservations of the requests in flight (`used + reserved >= limit`). An admitted request
//! reserves its [`completion_budget`](Reservation::completion_budget), at most what every
//! token limit has left, and [`settle`](Reservation::settle) replaces the reservation with the
//! real prompt-plus-completion count, counted in the token windows at settle time and added
//! to the lifetime total. A reservation dropped unsettled (the client went away before usage
//! was known) releases its tokens and counts none; its request stays counted.
//!
//! Since the budget bounds only the completion, **a
//! request's prompt tokens can take a window or the quota past its limit**: they are only
//! known once Ollama has counted them. The overshoot is at most the prompts of the requests
//! in flight, and the user is refused until the window frees again.
//!
//! # Cost
//!
//! Users are spread over [`SHARDS`] independently locked maps, and each user's state has its
//! own lock: unrelated users share at most a shard lock, held for one map lookup. Admission
//! touches only counters and allocates only for a user's first request. An admission and its
//! settlement together took 120–180 ns on a busy 2-core machine (`benches/admission.rs`).
//! Memory per user seen since start-up (or restored) is about 18 KiB (61 + 1441 slots of
//! 12 bytes, plus the id and map entry), whatever the limits; [`RateLimiter::forget`] frees it.
#![warn(missing_docs)]

mod local;
mod reservation;
mod ring;
mod windows;

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use aiproxy_domain::{RateLimits, UnixMillis, UsageEvent, UserId, unpoison};

pub use aiproxy_domain::{LimitKind, LimitStatus, RETRY_HINT_MS, Rejection, WindowStatus};
pub use local::LocalAdmission;
pub use reservation::Reservation;

use windows::UserWindows;

/// Length of the per-minute windows, in milliseconds.
pub const MINUTE_WINDOW_MS: i64 = 60_000;
/// Bucket of the per-minute windows: how late, at most, a minute window frees.
pub const MINUTE_BUCKET_MS: i64 = 1_000;
/// Length of the per-day windows, in milliseconds.
pub const DAY_WINDOW_MS: i64 = 86_400_000;
/// Bucket of the per-day windows: how late, at most, a day window frees.
pub const DAY_BUCKET_MS: i64 = 60_000;
/// How many independently locked maps hold the users.
pub const SHARDS: usize = 32;

/// Settings of a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// The completion budget reserved for a request that names no maximum, when the user has
    /// a token limit. Default 4096.
    pub default_completion_budget: u64,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            default_completion_budget: 4096,
        }
    }
}

/// The per-user windows of every user, shared by all request handlers (`Send + Sync`; wrap it
/// in an `Arc`).
pub struct RateLimiter {
    config: LimiterConfig,
    shard_hasher: RandomState,
    shards: Box<[Shard]>,
}

/// One lock's worth of users, on its own cache line so that neighbouring shards locked by
/// different cores do not slow each other down.
#[repr(align(64))]
#[derive(Default)]
struct Shard {
    users: Mutex<HashMap<UserId, Arc<Mutex<UserWindows>>>>,
}

impl RateLimiter {
    /// An empty limiter: nobody has used anything yet.
    pub fn new(config: LimiterConfig) -> Self {
        Self {
            config,
            shard_hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    /// The settings this limiter was built with.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Decides whether `user` may make a request now under `limits`, and if so records it.
    ///
    /// Checking every limit and recording happen under the user's lock as one step, so N
    /// simultaneous requests against a limit of L admit exactly L (when fewer than L were in
    /// the window before). A refused request is recorded nowhere.
    ///
    /// On admission the request counts at once in both request windows and holds one
    /// concurrency slot and its completion budget (see [`Reservation::completion_budget`])
    /// until it is settled or dropped. `requested_completion_tokens` is the request's
    /// `max_tokens`, if it named one.
    pub fn admit(
        &self,
        user: &UserId,
        limits: &RateLimits,
        requested_completion_tokens: Option<u64>,
        now: UnixMillis,
    ) -> Result<Reservation, Rejection> {
        let windows = self.windows_of(user, now);
        let grant = unpoison(windows.lock()).admit(
            limits,
            requested_completion_tokens,
            self.config.default_completion_budget,
            now,
        )?;
        Ok(Reservation::new(
            windows,
            *limits,
            grant.completion_budget,
            grant.reserved_tokens,
            grant.status,
        ))
    }

    /// The refusal `user` would get at `now` under `limits`, without recording anything: for a
    /// look at a request before its body is read. A user the limiter holds nothing about is
    /// never refused.
    pub fn precheck(
        &self,
        user: &UserId,
        limits: &RateLimits,
        now: UnixMillis,
    ) -> Result<(), Rejection> {
        match self.existing_windows_of(user) {
            Some(windows) => unpoison(windows.lock()).check(limits, now).map(drop),
            None => Ok(()),
        }
    }

    /// The header values for `user` at `now`, without recording anything.
    pub fn status(&self, user: &UserId, limits: &RateLimits, now: UnixMillis) -> LimitStatus {
        match self.existing_windows_of(user) {
            Some(windows) => unpoison(windows.lock()).status(limits, now),
            None => windows::fresh_status(limits),
        }
    }

    /// Rebuilds windows and lifetime totals from the usage records, at start-up.
    ///
    /// Each event counts its requests and tokens at `event.at` (where live, a settled
    /// request counted its tokens at settle time, a little later; after a restart they free
    /// that much earlier). Events older than a day are ignored; events stamped after `now` (a
    /// clock that stepped back) count as if at `now`. Pass at least the events of the last
    /// [`DAY_WINDOW_MS`] (plus one [`DAY_BUCKET_MS`] to be exact). `lifetime` gives each
    /// user's lifetime token total; event tokens are *not* added to it, so nothing is counted
    /// twice.
    ///
    /// Every user named in `events` or `lifetime` gets exactly that history, replacing what
    /// the limiter held; restoring the same records twice therefore counts them once.
    /// Requests in flight keep their slots and reservations. Users not named are left alone.
    pub fn restore(
        &self,
        events: impl IntoIterator<Item = UsageEvent>,
        lifetime: impl IntoIterator<Item = (UserId, u64)>,
        now: UnixMillis,
    ) {
        let mut rebuilt: HashMap<UserId, UserWindows> = HashMap::new();
        for event in events {
            rebuilt
                .entry(event.user_id)
                .or_insert_with(|| UserWindows::new(now))
                .record_past_requests(event.at, event.requests, event.total_tokens);
        }
        for (user, total_tokens) in lifetime {
            rebuilt
                .entry(user)
                .or_insert_with(|| UserWindows::new(now))
                .set_lifetime_tokens(total_tokens);
        }
        for (user, history) in rebuilt {
            let mut users = unpoison(self.shard_of(&user).users.lock());
            match users.entry(user) {
                Entry::Occupied(entry) => unpoison(entry.get().lock()).replace_history(history),
                Entry::Vacant(entry) => {
                    entry.insert(Arc::new(Mutex::new(history)));
                }
            }
        }
    }

    /// Drops everything held about `user` (a deleted user). Requests of that user still in
    /// flight settle into the dropped state and affect nothing; a new user of the same id
    /// starts empty.
    pub fn forget(&self, user: &UserId) {
        unpoison(self.shard_of(user).users.lock()).remove(user);
    }

    /// Drops everything held about every user (all users deleted), as [`RateLimiter::forget`]
    /// does for one. Shards are emptied one at a time, so a request admitted meanwhile may
    /// keep the state it was admitted into.
    pub fn forget_all(&self) {
        for shard in &self.shards {
            unpoison(shard.users.lock()).clear();
        }
    }

    fn shard_of(&self, user: &UserId) -> &Shard {
        // The low bits of SipHash are as good as the high ones; the cast keeps enough of them.
        let index = self.shard_hasher.hash_one(user) as usize % self.shards.len();
        &self.shards[index]
    }

    fn existing_windows_of(&self, user: &UserId) -> Option<Arc<Mutex<UserWindows>>> {
        unpoison(self.shard_of(user).users.lock())
            .get(user)
            .cloned()
    }

    fn windows_of(&self, user: &UserId, now: UnixMillis) -> Arc<Mutex<UserWindows>> {
        let mut users = unpoison(self.shard_of(user).users.lock());
        // `get` first so the common case does not clone the id.
        if let Some(windows) = users.get(user) {
            return Arc::clone(windows);
        }
        let windows = Arc::new(Mutex::new(UserWindows::new(now)));
        users.insert(user.clone(), Arc::clone(&windows));
        windows
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(LimiterConfig::default())
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
