//! The schema, as an append-only list of migration steps.
//!
//! `PRAGMA user_version` holds how many steps a database has had. A step is never edited once
//! released: a change is a new step at the end, so every database walks the same path.

use rusqlite::{Connection, TransactionBehavior};

use crate::StorageError;

/// Step `n` (1-based) brings a database from version `n - 1` to version `n`.
const MIGRATIONS: &[&str] = &[
    // Version 1: users, their key and limits, usage rows and per-user running totals.
    //
    // Every child table cascades on user deletion, so no row can outlive its user even if a
    // delete path forgets a table; the store still deletes children explicitly, first.
    r#"
    CREATE TABLE users (
        id             TEXT    NOT NULL PRIMARY KEY,
        display_name   TEXT,
        note           TEXT,
        -- A JSON array of model names, or NULL when every model is allowed.
        allowed_models TEXT,
        disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
        created_at     INTEGER NOT NULL
    );

    -- One current key per user (user_id is the key), looked up by hash on every request.
    CREATE TABLE api_keys (
        user_id    TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        key_hash   BLOB    NOT NULL UNIQUE CHECK (length(key_hash) = 32),
        key_prefix TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER
    );

    -- A NULL limit is unlimited; a user without a row has the product defaults.
    CREATE TABLE rate_limits (
        user_id                 TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        requests_per_minute     INTEGER,
        requests_per_day        INTEGER,
        tokens_per_minute       INTEGER,
        tokens_per_day          INTEGER,
        total_token_limit       INTEGER,
        max_concurrent_requests INTEGER
    );

    CREATE TABLE usage (
        id                INTEGER PRIMARY KEY,
        request_id        TEXT    NOT NULL,
        user_id           TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        model             TEXT    NOT NULL,
        endpoint          TEXT    NOT NULL,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        total_tokens      INTEGER NOT NULL,
        status            TEXT    NOT NULL,
        duration_ms       INTEGER NOT NULL,
        created_at        INTEGER NOT NULL
    );
    -- A user's page, newest first (the rowid breaks ties, and is part of every index).
    CREATE INDEX usage_by_user_time ON usage (user_id, created_at);
    -- Everyone's page, retention deletes, and rebuilding the rate limiter's windows.
    CREATE INDEX usage_by_time ON usage (created_at);
    -- A user's usage of one model.
    CREATE INDEX usage_by_user_model_time ON usage (user_id, model, created_at);

    -- Lifetime sums, kept apart from the rows so that deleting old rows keeps them.
    CREATE TABLE user_totals (
        user_id           TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        requests          INTEGER NOT NULL,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        total_tokens      INTEGER NOT NULL
    );
    "#,
    // 2: the usage journal's position, moved with every batch of records it hands over.
    r#"
    CREATE TABLE usage_journal (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        generation     INTEGER NOT NULL,
        ingested_bytes INTEGER NOT NULL
    );
    INSERT INTO usage_journal (id, generation, ingested_bytes) VALUES (1, 0, 0);
    "#,
    // 3: every usage row paid for this index on the way in (with it, ingestion ran at less
    // than half the rate), while only a user's one-model report reads it; that report now
    // walks the user's rows in its time range through `usage_by_user_time`.
    r#"
    DROP INDEX IF EXISTS usage_by_user_model_time;
    "#,
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database to [`SCHEMA_VERSION`], one transaction per step. A database already
/// there is left untouched; one from a newer build is refused.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let target = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let migration_error = |source| StorageError::Migration {
            version: target,
            source,
        };
        // IMMEDIATE takes the write lock before reading the version, so two processes opening
        // the same new file cannot both run a step.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migration_error)?;
        let found = user_version(&tx).map_err(migration_error)?;
        if found > SCHEMA_VERSION {
            return Err(StorageError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found >= target {
            continue;
        }
        tx.execute_batch(step).map_err(migration_error)?;
        tx.pragma_update(None, "user_version", target)
            .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
        tracing::info!(version = target, "migrated the database schema");
    }
    // The loop above never sees a newer version when there are no steps to run.
    check_current(conn)
}

/// Refuses a database whose version is not exactly [`SCHEMA_VERSION`] (used read-only, where
/// migrating is not possible).
pub(crate) fn check_current(conn: &Connection) -> Result<(), StorageError> {
    let found = user_version(conn).map_err(|source| StorageError::Migration {
        version: SCHEMA_VERSION,
        source,
    })?;
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(StorageError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => Err(StorageError::SchemaTooOld {
            found,
            required: SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn migrating_a_new_database_reaches_the_current_version_with_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            table_names(&conn),
            [
                "api_keys",
                "rate_limits",
                "usage",
                "usage_journal",
                "user_totals",
                "users"
            ]
        );
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        migrate(&mut conn).unwrap();
        let before: i64 = conn
            .pragma_query_value(None, "schema_version", |r| r.get(0))
            .unwrap();
        migrate(&mut conn).unwrap();
        let after: i64 = conn
            .pragma_query_value(None, "schema_version", |r| r.get(0))
            .unwrap();
        // schema_version counts every schema change, so it proves no DDL ran the second time.
        assert_eq!(before, after);
    }

    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StorageError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(table_names(&conn).is_empty());
        assert!(matches!(
            check_current(&conn),
            Err(StorageError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn check_current_refuses_an_old_database() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        assert!(matches!(
            check_current(&conn),
            Err(StorageError::SchemaTooOld { found: 0, .. })
        ));
    }
}
