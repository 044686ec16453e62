//! The vocabulary of the proxy — users, API keys, rate limits and usage records — and the
//! traits that storage and admission engines implement; no I/O.
//!
//! Nothing here knows about HTTP, SQL or an async runtime: the traits return boxed futures,
//! and each engine decides what drives them. The wire formats live elsewhere: OpenAI's in
//! `aiproxy-openai`, Ollama's in `aiproxy-ollama`. A storage engine (SQLite in
//! `aiproxy-storage`, PostgreSQL in `aiproxy-storage-postgres`, or your own) implements
//! [`Store`]; an admission engine (in-process in `aiproxy-ratelimit`, shared by replicas in
//! `aiproxy-storage-postgres`) implements [`Admission`]. The HTTP layer sees only these traits.
//!
//! ```
//! use aiproxy_domain::{ApiKey, RateLimits, UserId};
//!
//! let user = UserId::parse("alice").unwrap();
//! let key = ApiKey::generate();
//! assert!(key.expose().starts_with("sk-"));
//! assert_eq!(key.hash(), ApiKey::parse(key.expose()).unwrap().hash());
//! assert_eq!(RateLimits::default().requests_per_minute, Some(60));
//! # let _ = user;
//! ```
#![warn(missing_docs)]

mod admission;
mod keys;
mod limits;
mod poison;
mod store;
mod timestamp;
mod usage;
mod user;

pub use admission::{
    Admission, AdmissionError, AdmissionFuture, AdmissionRequest, Admitted, LimitStatus,
    RETRY_HINT_MS, Rejection, StatusFuture, Ticket, WindowStatus,
};
pub use keys::{ApiKey, ApiKeyHash, KEY_PREFIX_LEN, secrets_equal};
pub use limits::{LimitKind, LimitsPatch, MAX_LIMIT_VALUE, RateLimits};
pub use poison::unpoison;
pub use store::{
    Deleted, Page, Store, StoreError, StoreFuture, UsageCommit, UsageStore, UserQuery, UserSort,
    UserStore,
};
pub use timestamp::UnixMillis;
pub use usage::{
    Endpoint, Period, RefusalCount, RefusalGrouping, RefusalSummaryRow, UsageCursor, UsageEvent,
    UsageFilter, UsageGrouping, UsagePage, UsageQuery, UsageRecord, UsageStatus, UsageSummaryRow,
    UsageTotals, UserSummary, civil_from_days, days_from_civil,
};
pub use user::{NewUser, User, UserId, UserPatch};

/// A value that failed validation, with a message written for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field that was wrong, as the client named it (`user_id`, `api_key`, …).
    pub field: &'static str,
    /// What was wrong and what is allowed instead.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
