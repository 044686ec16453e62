use std::future::Future;
use std::pin::Pin;

use crate::{
    ApiKeyHash, NewUser, RateLimits, RefusalCount, RefusalGrouping, RefusalSummaryRow, UnixMillis,
    UsageCursor, UsageEvent, UsageFilter, UsageGrouping, UsagePage, UsageQuery, UsageRecord,
    UsageSummaryRow, User, UserId, UserPatch, UserSummary,
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
    /// The store cannot serve requests now (database unreachable or locked, disk full,
    /// read-only file, pool exhausted). Nothing was written.
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What every store method returns: a future that resolves with the answer, so the HTTP
/// layer awaits a store the same way whether it blocks on a file (SQLite, on the store's own
/// threads) or talks to a server (PostgreSQL).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

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

/// The order of a user listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserSort {
    /// By id (the default).
    #[default]
    Id,
    /// By creation time.
    CreatedAt,
    /// By lifetime tokens.
    TotalTokens,
    /// By lifetime requests.
    Requests,
}

/// Which users a listing shows, in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// Which page.
    pub page: Page,
    /// Only users whose id or display name contains this text (case-insensitive).
    pub search: Option<String>,
    /// The order; ties are broken by id.
    pub sort: UserSort,
    /// Largest first.
    pub descending: bool,
}

impl UserQuery {
    /// Every user in id order, one page at a time.
    pub fn page(limit: u32, offset: u64) -> Self {
        Self {
            page: Page { limit, offset },
            search: None,
            sort: UserSort::Id,
            descending: false,
        }
    }
}

/// What a delete removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Users removed (with their keys and limits).
    pub users: u64,
    /// Usage records removed with them.
    pub usage_records: u64,
}

/// Users, their keys and their limits.
///
/// Every change to users, keys or limits, by this process or any other writer of the same
/// database (the admin command line, another replica, a restore), moves
/// [`UserStore::change_marker`], which servers poll to drop what they cached.
pub trait UserStore: Send + Sync {
    /// Creates a user with its first key. `Conflict` when the id or the key hash is taken.
    fn create_user(&self, new: NewUser) -> StoreFuture<'_, User>;
    /// One user. `NotFound` when unknown.
    fn get_user<'a>(&'a self, id: &'a UserId) -> StoreFuture<'a, User>;
    /// Users matching the query, with their lifetime totals, and how many match in all.
    fn list_users<'a>(&'a self, query: &'a UserQuery) -> StoreFuture<'a, (Vec<UserSummary>, u64)>;
    /// Changes a user's settings. `NotFound` when unknown.
    fn update_user<'a>(&'a self, id: &'a UserId, patch: &'a UserPatch) -> StoreFuture<'a, User>;
    /// Deletes a user with its key, limits and the usage records stored so far, in one
    /// transaction. `NotFound` when unknown. Usage of the user's requests still in flight is
    /// recorded when they end, even though the user is gone: an answered request never loses
    /// its row.
    fn delete_user<'a>(&'a self, id: &'a UserId) -> StoreFuture<'a, Deleted>;
    /// Deletes every user, key, limit and usage record.
    fn delete_all_users(&self) -> StoreFuture<'_, Deleted>;
    /// Replaces a user's key; the old one stops matching at once.
    fn replace_key<'a>(
        &'a self,
        id: &'a UserId,
        key_hash: ApiKeyHash,
        key_prefix: &'a str,
        key_expires_at: Option<UnixMillis>,
    ) -> StoreFuture<'a, User>;
    /// The user whose current key has this hash, if any.
    fn find_user_by_key<'a>(&'a self, key_hash: &'a ApiKeyHash) -> StoreFuture<'a, Option<User>>;
    /// Stores a user's limits. `NotFound` when unknown.
    fn set_limits<'a>(&'a self, id: &'a UserId, limits: &'a RateLimits) -> StoreFuture<'a, ()>;
    /// A value that changes whenever users, keys or limits change, whoever changed them.
    /// Compare for inequality only (a restored backup may move it backwards).
    fn change_marker(&self) -> StoreFuture<'_, u64>;
}

/// Usage records: written once per request, read by the usage API, the dashboard and the
/// in-process rate limiter at start-up.
pub trait UsageStore: Send + Sync {
    /// Stores a record; the returned future resolves once it is durable. Engines may journal
    /// records and batch them into their tables later, as long as every read below sees
    /// every record whose future has resolved.
    fn record_usage(&self, record: UsageRecord) -> UsageCommit;
    /// A page of records, newest first, with totals over the whole filter.
    fn usage_page<'a>(&'a self, query: &'a UsageQuery) -> StoreFuture<'a, UsagePage>;
    /// Totals grouped as asked, ordered by the grouping keys.
    fn usage_summary<'a>(
        &'a self,
        filter: &'a UsageFilter,
        grouping: UsageGrouping,
    ) -> StoreFuture<'a, Vec<UsageSummaryRow>>;
    /// Up to `limit` records the filter covers, oldest first (by creation time, then request
    /// id), after `after`: an export reads batch after batch and never holds them all.
    fn usage_batch<'a>(
        &'a self,
        filter: &'a UsageFilter,
        after: Option<&'a UsageCursor>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<UsageRecord>>;
    /// What the in-process rate limiter needs to rebuild its windows: the records since
    /// `since`, merged per user and second (see [`UsageEvent`]), in the order of their seconds.
    fn usage_events_since(&self, since: UnixMillis) -> StoreFuture<'_, Vec<UsageEvent>>;
    /// Each user's lifetime token total, kept even when old records are deleted.
    fn lifetime_tokens(&self) -> StoreFuture<'_, Vec<(UserId, u64)>>;
    /// Deletes records created before `before`, keeping lifetime totals. Returns how many.
    fn delete_usage_before(&self, before: UnixMillis) -> StoreFuture<'_, u64>;
    /// Adds refusal counts (several counts of one user, limit and minute add up).
    fn record_refusals(&self, counts: Vec<RefusalCount>) -> StoreFuture<'_, ()>;
    /// Refusals grouped as asked, ordered by the grouping keys. The filter's `user_id`,
    /// `start` and `end` apply; its model, endpoint and backend do not (a refusal has none).
    fn refusal_summary<'a>(
        &'a self,
        filter: &'a UsageFilter,
        grouping: RefusalGrouping,
    ) -> StoreFuture<'a, Vec<RefusalSummaryRow>>;
}

/// Everything the proxy keeps. Object-safe, so the server can hand `Arc<dyn Store>` to the
/// HTTP layer without it knowing which engine is behind.
pub trait Store: UserStore + UsageStore {
    /// Checks the store can serve a read and a write now; used by `/health`.
    fn ping(&self) -> StoreFuture<'_, ()>;
}
