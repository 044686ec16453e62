//! Helpers shared by the integration tests: a temporary database, users, records, and a
//! minimal executor for the `record_usage` futures.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread::Thread;

use aiproxy_domain::{
    ApiKey, Endpoint, NewUser, RateLimits, StoreError, UnixMillis, UsageRecord, UsageStatus,
    UsageStore, UserId,
};
use aiproxy_storage::{SqliteStore, StorageError, StoreOptions};

/// 2023-11-14T22:13:20Z: a fixed clock for records.
pub const T0: UnixMillis = UnixMillis(1_700_000_000_000);
pub const DAY_MS: i64 = 86_400_000;

/// A database file in its own temporary folder, removed when dropped.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestDb {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aiproxy.db");
        Self { dir, path }
    }

    pub fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path, StoreOptions::default()).unwrap()
    }

    pub fn open_with(&self, options: StoreOptions) -> Result<SqliteStore, StorageError> {
        SqliteStore::open(&self.path, options)
    }

    /// A plain connection to the same file, to look under the store's feet.
    pub fn raw(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }
}

pub fn uid(raw: &str) -> UserId {
    UserId::parse(raw).unwrap()
}

/// A new user with a freshly generated key (returned, since only its hash is stored).
pub fn new_user(id: &str) -> (NewUser, ApiKey) {
    let key = ApiKey::generate();
    let user = NewUser {
        id: uid(id),
        display_name: Some(format!("{id} display")),
        note: None,
        key_hash: key.hash(),
        key_prefix: key.prefix(),
        key_expires_at: None,
        allowed_models: None,
        limits: RateLimits::default(),
        created_at: T0,
    };
    (user, key)
}

pub fn record(
    user: &str,
    model: &str,
    created_at: UnixMillis,
    prompt: u64,
    completion: u64,
) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{user}-{}-{prompt}-{completion}", created_at.0),
        user_id: uid(user),
        model: model.to_owned(),
        endpoint: Endpoint::ChatCompletions,
        backend: None,
        client_request_id: None,
        prompt_tokens: prompt,
        completion_tokens: completion,
        status: UsageStatus::Ok,
        duration_ms: 12,
        created_at,
    }
}

/// Queues every record first (so they can share batches), then waits for each commit.
pub fn record_all(store: &SqliteStore, records: impl IntoIterator<Item = UsageRecord>) {
    let pending: Vec<_> = records.into_iter().map(|r| store.record_usage(r)).collect();
    for commit in pending {
        block_on(commit).unwrap();
    }
}

/// The `StorageError` behind an `Unavailable`, or a panic naming what came instead.
pub fn unavailable_cause(result: Result<impl std::fmt::Debug, StoreError>) -> StorageError {
    match result {
        Err(StoreError::Unavailable(source)) => match source.downcast::<StorageError>() {
            Ok(cause) => *cause,
            Err(other) => panic!("Unavailable with a foreign source: {other:?}"),
        },
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread, parking between polls.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Arc::new(ThreadWaker(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
