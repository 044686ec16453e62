use std::time::Duration;

use aiproxy_domain::{RateLimits, UnixMillis, UsageFilter, UsageQuery, UsageStore, UserPatch};
use aiproxy_storage::{StorageError, StoreOptions};

use crate::support::{T0, TestDb, block_on, new_user, record, record_all, uid, unavailable_cause};

fn sqlite_code(cause: &StorageError) -> Option<rusqlite::ErrorCode> {
    match cause {
        StorageError::Database(e) => e.sqlite_error_code(),
        StorageError::UsageBacklog {
            last_failure: Some(source),
            ..
        } => source.sqlite_error_code(),
        _ => None,
    }
}

#[test]
fn a_read_only_database_serves_reads_and_answers_every_write_with_unavailable() {
    let db = TestDb::new();
    {
        let store = db.open();
        store.blocking().create_user(new_user("alice").0).unwrap();
        record_all(&store, [record("alice", "m", T0, 1, 1)]);
    }
    let store = db
        .open_with(StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        })
        .unwrap();

    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().id,
        uid("alice")
    );
    let page = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter::default(),
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(page.records.len(), 1);

    let read_only = Some(rusqlite::ErrorCode::ReadOnly);
    let cause = unavailable_cause(store.blocking().create_user(new_user("bob").0));
    assert_eq!(sqlite_code(&cause), read_only, "{cause:?}");
    let cause = unavailable_cause(
        store
            .blocking()
            .set_limits(&uid("alice"), &RateLimits::unlimited()),
    );
    assert_eq!(sqlite_code(&cause), read_only, "{cause:?}");
    let cause = unavailable_cause(
        store
            .blocking()
            .update_user(&uid("alice"), &UserPatch::default()),
    );
    assert_eq!(sqlite_code(&cause), read_only, "{cause:?}");
    let cause = unavailable_cause(store.blocking().delete_usage_before(UnixMillis(i64::MAX)));
    assert_eq!(sqlite_code(&cause), read_only, "{cause:?}");
    let cause = unavailable_cause(block_on(store.record_usage(record("alice", "m", T0, 1, 1))));
    assert!(matches!(cause, StorageError::ReadOnly), "{cause:?}");
    let cause = unavailable_cause(store.blocking().ping());
    assert_eq!(sqlite_code(&cause), read_only, "{cause:?}");

    // Nothing changed underneath.
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 2)]
    );
}

#[test]
fn a_locked_database_makes_writes_unavailable_until_the_lock_is_released() {
    let db = TestDb::new();
    let store = db
        .open_with(StoreOptions {
            busy_timeout: Duration::from_millis(50),
            ..StoreOptions::default()
        })
        .unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();

    let locker = db.raw();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let busy = Some(rusqlite::ErrorCode::DatabaseBusy);
    let cause = unavailable_cause(store.blocking().create_user(new_user("bob").0));
    assert_eq!(sqlite_code(&cause), busy, "{cause:?}");
    // A record is journaled whatever the database's state: the request that made it is not
    // failed for a lock someone else holds.
    block_on(store.record_usage(record("alice", "m", T0, 1, 1))).unwrap();
    let cause = unavailable_cause(store.blocking().ping());
    assert_eq!(sqlite_code(&cause), busy, "{cause:?}");
    // A read that needs the journaled record cannot have it yet, and says so...
    let cause = unavailable_cause(store.blocking().lifetime_tokens());
    assert_eq!(sqlite_code(&cause), busy, "{cause:?}");
    assert!(store.writer_stats().batches_failed >= 1);
    assert_eq!(store.writer_stats().queued, 1);
    // ...while WAL readers of other tables are not blocked by a writer.
    assert_eq!(
        db.open_with(StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        })
        .unwrap()
        .blocking()
        .get_user(&uid("alice"))
        .unwrap()
        .id,
        uid("alice")
    );

    locker.execute_batch("COMMIT").unwrap();
    store.blocking().ping().unwrap();
    store.blocking().create_user(new_user("bob").0).unwrap();
    block_on(store.record_usage(record("alice", "m", T0, 1, 1))).unwrap();
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 4), (uid("bob"), 0)]
    );
}

#[test]
fn an_exhausted_pool_is_an_unavailable_error_not_a_hang() {
    let db = TestDb::new();
    let store = db
        .open_with(StoreOptions {
            pool_size: 1,
            connection_timeout: Duration::from_millis(100),
            busy_timeout: Duration::from_secs(60),
            ..StoreOptions::default()
        })
        .unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();

    // Another process holds the write lock, so a ping waits for it, holding the only pooled
    // connection meanwhile.
    let locker = db.raw();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let pinging = {
        let store = store.clone();
        std::thread::spawn(move || store.blocking().ping())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let cause = loop {
        match store.blocking().get_user(&uid("alice")) {
            // The ping has not checked its connection out yet.
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the pool never ran out"
            ),
            Err(error) => break unavailable_cause(Err::<(), _>(error)),
        }
    };
    assert!(matches!(cause, StorageError::Pool(_)), "{cause:?}");
    locker.execute_batch("COMMIT").unwrap();
    pinging.join().unwrap().unwrap();
    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().id,
        uid("alice")
    );
}
