use aiproxy_domain::{
    LimitsPatch, Page, RateLimits, UsageFilter, UsageQuery, UsageStore, UserStore,
};
use aiproxy_storage::{SCHEMA_VERSION, SqliteStore, StorageError, StoreOptions};

use crate::support::{T0, TestDb, new_user, record, record_all, uid};

fn versions(db: &TestDb) -> (u32, i64) {
    let conn = db.raw();
    let user_version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    // Bumped by SQLite on every schema change: equal values prove no DDL ran in between.
    let schema_version: i64 = conn
        .pragma_query_value(None, "schema_version", |r| r.get(0))
        .unwrap();
    (user_version, schema_version)
}

#[test]
fn opening_creates_missing_folders_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("aiproxy.db");
    let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
}

#[test]
fn the_database_uses_write_ahead_logging() {
    let db = TestDb::new();
    let _store = db.open();
    let mode: String = db
        .raw()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn migrating_again_on_reopen_is_a_no_op() {
    let db = TestDb::new();
    drop(db.open());
    let first = versions(&db);
    assert_eq!(first.0, SCHEMA_VERSION);
    drop(db.open());
    drop(db.open());
    assert_eq!(versions(&db), first);
}

#[test]
fn reopening_keeps_users_keys_limits_and_usage() {
    let db = TestDb::new();
    let (alice, alice_key) = new_user("alice");
    let limits = LimitsPatch {
        tokens_per_day: Some(None),
        max_concurrent_requests: Some(Some(3)),
        ..LimitsPatch::default()
    }
    .apply(RateLimits::default())
    .unwrap();
    {
        let store = db.open();
        store.create_user(alice).unwrap();
        store.set_limits(&uid("alice"), &limits).unwrap();
        record_all(
            &store,
            (0..10).map(|i| record("alice", "llama3.2", T0.plus_millis(i), 5, 7)),
        );
    }

    let store = db.open();
    let user = store.find_user_by_key(&alice_key.hash()).unwrap().unwrap();
    assert_eq!(user.id, uid("alice"));
    assert_eq!(user.limits, limits);
    let page = store
        .usage_page(&UsageQuery {
            filter: UsageFilter::default(),
            limit: 100,
            offset: 0,
        })
        .unwrap();
    assert_eq!(page.records.len(), 10);
    assert_eq!(page.totals.total_tokens, 120);
    let (users, count) = store
        .list_users(Page {
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(users[0].totals.requests, 10);
}

#[test]
fn a_database_from_a_newer_build_is_refused_and_left_alone() {
    let db = TestDb::new();
    drop(db.open());
    db.raw()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let before = versions(&db);

    let err = db.open_with(StoreOptions::default()).unwrap_err();
    assert!(
        matches!(err, StorageError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(versions(&db), before);

    let read_only = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    assert!(matches!(
        db.open_with(read_only),
        Err(StorageError::SchemaTooNew { .. })
    ));
}

#[test]
fn a_read_only_open_refuses_a_database_that_needs_migrating() {
    let db = TestDb::new();
    // An empty SQLite file: version 0.
    drop(db.raw());
    let read_only = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let err = db.open_with(read_only).unwrap_err();
    assert!(
        matches!(err, StorageError::SchemaTooOld { found: 0, required } if required == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
fn a_read_only_open_of_a_missing_file_fails_without_creating_it() {
    let db = TestDb::new();
    let read_only = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let err = db.open_with(read_only).unwrap_err();
    assert!(matches!(err, StorageError::Open { .. }), "{err:?}");
    assert!(!db.path.exists());
}
