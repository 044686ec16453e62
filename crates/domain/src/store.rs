use std::future::Future;
use std::pin::Pin;

use crate::{
    ApiKeyHash, NewUser, RateLimits, UnixMillis, UsageEvent, UsageFilter, UsageGrouping, UsagePage,
    UsageQuery, UsageRecord, UsageSummaryRow, User, UserId, UserPatch, UserSummary,
};

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{entity} '{id}' not found")]
    NotFound {
        /// What kind of thing (`user`).
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// The thing to create exists already.
    #[error("{entity} '{id}' already exists")]
    Conflict {
        /// What kind of thing (`user`, `api key`).
        entity: &'static str,
        /// Its id (for keys: the prefix only).
        id: String,
    },
    /// The store cannot serve requests now (database locked, disk full, read-only file, pool
    /// exhausted). Nothing was written.
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A pending usage write. It resolves once the record is durable (it survives the process
/// being killed), or with the reason it could not be made so.
pub type UsageCommit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// A page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many items.
    pub limit: u32,
    /// Skip this many first.
    pub offset: u64,
}

/// Users, their keys and their limits.
///
/// Methods block (SQLite is a blocking library); call them from a blocking thread pool, never
/// from an async executor's own threads.
pub trait UserStore: Send + Sync {
    /// Creates a user with its first key. `Conflict` when the id or the key hash is taken.
    fn create_user(&self, new: NewUser) -> Result<User, StoreError>;
    /// One user. `NotFound` when unknown.
    fn get_user(&self, id: &UserId) -> Result<User, StoreError>;
    /// Users in id order, with their lifetime totals, and how many users there are in all.
    fn list_users(&self, page: Page) -> Result<(Vec<UserSummary>, u64), StoreError>;
    /// Changes a user's settings. `NotFound` when unknown.
    fn update_user(&self, id: &UserId, patch: &UserPatch) -> Result<User, StoreError>;
    /// Deletes a user with its key, limits and usage records, in one transaction.
    fn delete_user(&self, id: &UserId) -> Result<(), StoreError>;
    /// Deletes every user, key, limit and usage record. Returns how many users there were.
    fn delete_all_users(&self) -> Result<u64, StoreError>;
    /// Replaces a user's key; the old one stops matching at once.
    fn replace_key(
        &self,
        id: &UserId,
        key_hash: ApiKeyHash,
        key_prefix: &str,
        key_expires_at: Option<UnixMillis>,
    ) -> Result<User, StoreError>;
    /// The user whose current key has this hash, if any.
    fn find_user_by_key(&self, key_hash: &ApiKeyHash) -> Result<Option<User>, StoreError>;
    /// Stores a user's limits. `NotFound` when unknown.
    fn set_limits(&self, id: &UserId, limits: &RateLimits) -> Result<(), StoreError>;
}

/// Usage records: written once per request, read by the usage API and the rate limiter.
pub trait UsageStore: Send + Sync {
    /// Stores a record; the returned future resolves once it is durable. Engines may journal
    /// records and batch them into their tables later, as long as every read below sees
    /// every record whose future has resolved.
    fn record_usage(&self, record: UsageRecord) -> UsageCommit;
    /// A page of records, newest first, with totals over the whole filter.
    fn usage_page(&self, query: &UsageQuery) -> Result<UsagePage, StoreError>;
    /// Totals grouped as asked, ordered by the grouping keys.
    fn usage_summary(
        &self,
        filter: &UsageFilter,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageSummaryRow>, StoreError>;
    /// Every record the filter covers, oldest first, handed to `sink` one at a time so that
    /// an export never holds them all in memory. `sink` returns `false` to stop early.
    fn for_each_usage(
        &self,
        filter: &UsageFilter,
        sink: &mut dyn FnMut(UsageRecord) -> bool,
    ) -> Result<(), StoreError>;
    /// What the rate limiter needs to rebuild its windows: the records since `since`, merged
    /// per user and second (see [`UsageEvent`]), in the order of their seconds.
    fn usage_events_since(&self, since: UnixMillis) -> Result<Vec<UsageEvent>, StoreError>;
    /// Each user's lifetime token total, kept even when old records are deleted.
    fn lifetime_tokens(&self) -> Result<Vec<(UserId, u64)>, StoreError>;
    /// Deletes records created before `before`, keeping lifetime totals. Returns how many.
    fn delete_usage_before(&self, before: UnixMillis) -> Result<u64, StoreError>;
}

/// Everything the proxy keeps. Object-safe, so the server can hand `Arc<dyn Store>` to the
/// HTTP layer without it knowing which engine is behind.
pub trait Store: UserStore + UsageStore {
    /// Checks the store can serve a read and a write now; used by `/health`.
    fn ping(&self) -> Result<(), StoreError>;
}
