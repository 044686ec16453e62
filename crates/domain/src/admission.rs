//! Admission: whether a request may run now under its user's limits, and the hold it keeps on
//! them until its usage row is recorded.
//!
//! [`Admission`] is implemented by an engine that decides atomically: in one process by
//! `aiproxy-ratelimit` (counters in memory, usage rows through any [`UsageStore`]), across
//! several replicas by `aiproxy-storage-postgres` (counters in the database). The HTTP layer sees
//! only this trait, so it does not know how many replicas there are.
//!
//! [`UsageStore`]: crate::UsageStore

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::{LimitKind, RateLimits, StoreError, UnixMillis, UsageCommit, UsageRecord, UserId};

/// Header values for one per-minute window, as OpenAI's `x-ratelimit-*` headers carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    /// The limit in force.
    pub limit: u64,
    /// What is left in the window now. For tokens, the reservations of requests in flight
    /// are subtracted too, since they are not available to a new request.
    pub remaining: u64,
    /// Milliseconds until everything now in the window has left it (0 when it is empty).
    /// Late by at most the engine's bucket, never early. Reservations in flight are not in
    /// the window yet and do not move it.
    pub reset_ms: u64,
}

/// Header values for the per-minute request and token windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStatus {
    /// The `requests_per_minute` window; `None` when that limit is unlimited.
    pub requests: Option<WindowStatus>,
    /// The `tokens_per_minute` window; `None` when that limit is unlimited.
    pub tokens: Option<WindowStatus>,
}

/// The retry hint when only the end of requests in flight can lift a refusal (the
/// concurrency cap, or reservations that fill a token limit or the quota by themselves): when
/// they end is not known, so this is a guess, not a promise.
pub const RETRY_HINT_MS: u64 = 1_000;

/// Why a request was refused, and when it may succeed. A refused request was recorded
/// nowhere: it counts against no window, no quota and no concurrency slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The limit that refused. When several refuse at once, the one that frees last (the one
    /// `retry_after_ms` waits for); a refusal that waiting cannot end wins over all.
    pub limit: LimitKind,
    /// That limit's value.
    pub value: u64,
    /// Milliseconds after which the same request would be admitted, given what the windows
    /// hold now (always at least 1), never too early unless other requests settle or are
    /// admitted in between.
    ///
    /// `None` when waiting alone cannot help: the lifetime quota is used up by settled
    /// tokens. When only requests in flight block (the concurrency cap, or token reservations
    /// that fill a limit by themselves) their end cannot be known, and this is the constant
    /// hint [`RETRY_HINT_MS`].
    pub retry_after_ms: Option<u64>,
    /// The header values at the moment of refusal.
    pub status: LimitStatus,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} limit of {} reached", self.limit, self.value)?;
        match self.retry_after_ms {
            Some(ms) => write!(f, "; retry in {ms} ms"),
            None => f.write_str("; waiting will not free it"),
        }
    }
}

impl std::error::Error for Rejection {}

/// What a request asks of its user's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRequest {
    /// Whose limits.
    pub user: UserId,
    /// The user's limits as they are now (callers read them from the user record, so a
    /// changed limit applies to the next request).
    pub limits: RateLimits,
    /// The completion the request asked for (`max_tokens` and its equivalents), if it named
    /// one. Callers refuse 0 before admission; engines take 0 as 1.
    pub requested_completion_tokens: Option<u64>,
    /// The moment of admission.
    pub now: UnixMillis,
}

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// A limit refused it.
    #[error("refused by a limit")]
    Refused(#[source] Rejection),
    /// The engine could not decide (its database is unreachable). Nothing was admitted: the
    /// proxy fails closed rather than admit a request it could not account for.
    #[error("admission could not be decided")]
    Unavailable(#[source] StoreError),
}

/// A request that passed admission.
pub struct Admitted {
    /// The most completion tokens the request may produce; pass it upstream as Ollama's
    /// `num_predict`, which makes it a hard bound. `None` only when the user has no token
    /// limit at all and the request named no maximum: then nothing needs clamping.
    ///
    /// Otherwise the smallest of what the request asked for (or the engine's default
    /// budget), and what each token limit and the lifetime cap leave after the requests in
    /// flight. Never 0: a request with no budget left is refused instead.
    pub completion_budget: Option<u64>,
    /// The header values right after admission, this request and its reservation included.
    pub status: LimitStatus,
    /// The request's hold on the limits (a concurrency slot and its completion budget).
    pub ticket: Box<dyn Ticket>,
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("completion_budget", &self.completion_budget)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// An admitted request's hold on its user's limits. It ends in exactly one of three ways:
///
/// - [`Ticket::finish`]: the request reached the model; its tokens replace the reservation
///   and its usage row is recorded. The returned future resolves once the row is durable.
/// - [`Ticket::cancel`]: the request never reached the model; the slot and the reserved
///   tokens are released and no row is written. The request itself stays counted in the
///   request windows.
/// - Dropped without either: as `cancel`. Callers that know tokens were used finish instead.
pub trait Ticket: Send {
    /// Settles the reservation with `record`'s prompt plus completion tokens and records the
    /// row, as one step where the engine can (PostgreSQL does both in one transaction).
    fn finish(self: Box<Self>, record: UsageRecord) -> UsageCommit;

    /// Releases the reservation without a usage row.
    fn cancel(self: Box<Self>);
}

/// What [`Admission::admit`] returns.
pub type AdmissionFuture = Pin<Box<dyn Future<Output = Result<Admitted, AdmissionError>> + Send>>;

/// What [`Admission::status`] returns.
pub type StatusFuture = Pin<Box<dyn Future<Output = Result<LimitStatus, StoreError>> + Send>>;

/// Decides, atomically, whether a request may run now under its user's limits.
///
/// Every request window, token window, the lifetime cap and the concurrency cap are checked
/// and the request recorded as one step, so N simultaneous requests against a limit of L admit
/// exactly L, in one process or across replicas, depending on the engine.
pub trait Admission: Send + Sync {
    /// Admits the request (recording it in the request windows, holding a concurrency slot and
    /// reserving its completion budget) or refuses it.
    fn admit(&self, request: AdmissionRequest) -> AdmissionFuture;

    /// The header values for `user` now, without recording anything; for responses that do
    /// not go through admission (model lists, usage reports).
    fn status(&self, user: &UserId, limits: &RateLimits, now: UnixMillis) -> StatusFuture;

    /// A quick look before a request's body is read: `Err` when the user is certainly over a
    /// limit now (a full request window, the concurrency cap, used-up tokens), so a client
    /// over its limits cannot make the proxy read and hold large bodies. Local and cheap: no
    /// I/O. It may let through a request that [`Admission::admit`] then refuses (the
    /// decision is `admit`'s), but never refuses one `admit` would surely admit now.
    fn precheck(
        &self,
        user: &UserId,
        limits: &RateLimits,
        now: UnixMillis,
    ) -> Result<(), Rejection>;

    /// Drops whatever the engine holds in memory about `user` (a deleted user).
    fn forget(&self, user: &UserId);

    /// Drops whatever the engine holds in memory about every user (all users deleted).
    fn forget_all(&self);
}
