use aiproxy_domain::{LimitsPatch, RateLimits, UsageFilter, UsageQuery};
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
        store.blocking().create_user(alice).unwrap();
        store.blocking().set_limits(&uid("alice"), &limits).unwrap();
        record_all(
            &store,
            (0..10).map(|i| record("alice", "llama3.2", T0.plus_millis(i), 5, 7)),
        );
    }

    let store = db.open();
    let user = store
        .blocking()
        .find_user_by_key(&alice_key.hash())
        .unwrap()
        .unwrap();
    assert_eq!(user.id, uid("alice"));
    assert_eq!(user.limits, limits);
    let page = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter::default(),
            limit: 100,
            offset: 0,
        })
        .unwrap();
    assert_eq!(page.records.len(), 10);
    assert_eq!(page.totals.total_tokens, 120);
    let (users, count) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(10, 0))
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

/// The schema as version 3 left it (migrations 1 to 3 of an earlier build, copied here as
/// they were released), with rows an earlier build could write: ids the stricter rule now
/// refuses, old endpoint names, a client's request id used twice.
fn version_3_database(db: &TestDb) {
    let conn = db.raw();
    conn.execute_batch(
        r#"
        PRAGMA journal_mode = WAL;
        CREATE TABLE users (
            id TEXT NOT NULL PRIMARY KEY, display_name TEXT, note TEXT, allowed_models TEXT,
            disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            created_at INTEGER NOT NULL);
        CREATE TABLE api_keys (
            user_id TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            key_hash BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),
            key_prefix TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER);
        CREATE TABLE rate_limits (
            user_id TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            requests_per_minute INTEGER, requests_per_day INTEGER, tokens_per_minute INTEGER,
            tokens_per_day INTEGER, total_token_limit INTEGER, max_concurrent_requests INTEGER);
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY, request_id TEXT NOT NULL,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            model TEXT NOT NULL, endpoint TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
            status TEXT NOT NULL, duration_ms INTEGER NOT NULL, created_at INTEGER NOT NULL);
        CREATE INDEX usage_by_user_time ON usage (user_id, created_at);
        CREATE INDEX usage_by_time ON usage (created_at);
        CREATE TABLE user_totals (
            user_id TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL);
        CREATE TABLE usage_journal (
            id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL,
            ingested_bytes INTEGER NOT NULL);
        INSERT INTO usage_journal (id, generation, ingested_bytes) VALUES (1, 0, 0);
        PRAGMA user_version = 3;

        INSERT INTO users (id, display_name, created_at) VALUES
            ('-x', 'Dash', 1), ('.', 'Dot', 2), ('u.', 'Taken', 3), ('alice', 'Alice', 4);
        INSERT INTO rate_limits (user_id, requests_per_minute) VALUES ('-x', 7);
        INSERT INTO user_totals VALUES ('-x', 2, 10, 2, 12), ('alice', 1, 1, 1, 2);
        INSERT INTO usage (request_id, user_id, model, endpoint, prompt_tokens,
                           completion_tokens, total_tokens, status, duration_ms, created_at)
        VALUES ('dup', '-x', 'm', 'chat.completions', 5, 1, 6, 'ok', 1, 1000),
               ('dup', '-x', 'm', 'embeddings', 5, 1, 6, 'ok', 1, 2000),
               ('own', 'alice', 'm', 'completions', 1, 1, 2, 'ok', 1, 3000);
        "#,
    )
    .unwrap();
    for (user, key) in [("-x", &DASH_KEY), (".", &DOT_KEY)] {
        conn.execute(
            "INSERT INTO api_keys (user_id, key_hash, key_prefix, created_at)
             VALUES (?1, ?2, 'sk-old', 0)",
            rusqlite::params![
                user,
                &aiproxy_domain::ApiKey::parse(key).unwrap().hash().0[..]
            ],
        )
        .unwrap();
    }
    // A record journaled by the earlier build under `-x` and not yet in the database.
    let mut journal = db.path.as_os_str().to_owned();
    journal.push("-usage");
    std::fs::write(
        journal,
        concat!(
            r#"{"journal":"aiproxy-usage","version":1,"generation":1}"#,
            "\n",
            r#"{"id":"late","user":"-x","model":"m","endpoint":"chat.completions","prompt":3,"completion":4,"status":"ok","ms":5,"at":4000}"#,
            "\n"
        ),
    )
    .unwrap();
}

const DASH_KEY: &str = "sk-dash-0123456789abcdefghijklmnopqrstuvwxyz";
const DOT_KEY: &str = "sk-dot-0123456789abcdefghijklmnopqrstuvwxyz";

#[test]
fn a_version_3_database_migrates_its_rows_and_renames_ids_the_stricter_rule_refuses() {
    let db = TestDb::new();
    version_3_database(&db);
    let store = db.open();
    let blocking = store.blocking();

    // Listing and reading work, and the renamed users keep their keys, limits and totals.
    let (users, total) = blocking
        .list_users(&aiproxy_domain::UserQuery::page(10, 0))
        .unwrap();
    let ids: Vec<_> = users.iter().map(|s| s.user.id.to_string()).collect();
    assert_eq!(ids, ["alice", "u-x", "u.", "u.-2"]);
    assert_eq!(total, 4);
    let dash = blocking
        .find_user_by_key(&aiproxy_domain::ApiKey::parse(DASH_KEY).unwrap().hash())
        .unwrap()
        .unwrap();
    assert_eq!(dash.id, uid("u-x"));
    assert_eq!(dash.display_name.as_deref(), Some("Dash"));
    assert_eq!(dash.limits.requests_per_minute, Some(7));
    assert_eq!(
        blocking
            .find_user_by_key(&aiproxy_domain::ApiKey::parse(DOT_KEY).unwrap().hash())
            .unwrap()
            .unwrap()
            .id,
        uid("u.-2"),
        "`u.` was taken"
    );
    // The journaled record written under the old id counted for the new one.
    let dash_totals = users.iter().find(|s| s.user.id == uid("u-x")).unwrap();
    assert_eq!(dash_totals.totals.requests, 3);
    assert_eq!(dash_totals.totals.total_tokens, 19);

    // Rows: routes as endpoint names, unique request ids, the client's kept.
    let records = blocking
        .usage_batch(&UsageFilter::default(), None, 10)
        .unwrap();
    let rows: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.request_id.as_str(),
                r.user_id.as_str(),
                r.endpoint.as_str(),
                r.client_request_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("dup", "u-x", "/v1/chat/completions", None),
            ("dup#2", "u-x", "/v1/embeddings", Some("dup")),
            ("own", "alice", "/v1/completions", None),
            ("late", "u-x", "/v1/chat/completions", None),
        ]
    );

    // The renames are on record for the operator.
    let renames: Vec<(String, String)> = {
        let conn = db.raw();
        let mut stmt = conn
            .prepare("SELECT old_id, new_id FROM user_id_renames ORDER BY old_id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        renames,
        [
            ("-x".to_owned(), "u-x".to_owned()),
            (".".to_owned(), "u.-2".to_owned())
        ]
    );
    assert_eq!(versions(&db).0, SCHEMA_VERSION);
}
