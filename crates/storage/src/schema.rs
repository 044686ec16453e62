//! The schema, as an append-only list of migration steps.
//!
//! `PRAGMA user_version` holds how many steps a database has had. A step is never edited once
//! released: a change is a new step at the end, so every database walks the same path.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use aiproxy_domain::{UnixMillis, UserId};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::StorageError;
use crate::error::OpenCause;

/// Step `n` (1-based) brings a database from version `n - 1` to version `n`.
const MIGRATIONS: &[Step] = &[
    // Version 1: users, their key and limits, usage rows and per-user running totals.
    //
    // Every child table cascades on user deletion, so no row can outlive its user even if a
    // delete path forgets a table; the store still deletes children explicitly, first.
    Step::sql(
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
    ),
    // 2: the usage journal's position, moved with every batch of records it hands over.
    Step::sql(
        r#"
    CREATE TABLE usage_journal (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        generation     INTEGER NOT NULL,
        ingested_bytes INTEGER NOT NULL
    );
    INSERT INTO usage_journal (id, generation, ingested_bytes) VALUES (1, 0, 0);
    "#,
    ),
    // 3: every usage row paid for this index on the way in (with it, ingestion ran at less
    // than half the rate), while only a user's one-model report reads it; that report now
    // walks the user's rows in its time range through `usage_by_user_time`.
    Step::sql(
        r#"
    DROP INDEX IF EXISTS usage_by_user_model_time;
    "#,
    ),
    // 4: usage rows outlive their user, name their route, backend and the client's request id;
    // per-user caps on Ollama options; refusal counts; a marker that every change to users,
    // keys or limits moves, whoever makes it; and ids the stricter user id rule refuses are
    // renamed (recorded in `user_id_renames`).
    Step {
        sql: r#"
    CREATE TABLE usage_v4 (
        id                INTEGER PRIMARY KEY,
        -- Unique (the proxy's own id); exports page by (created_at, request_id).
        request_id        TEXT    NOT NULL,
        -- No foreign key: a request that ends after its user was deleted still leaves its row.
        user_id           TEXT    NOT NULL,
        model             TEXT    NOT NULL,
        -- The route: /v1/chat/completions, /api/chat, ...
        endpoint          TEXT    NOT NULL,
        -- The Ollama server that answered, when known.
        backend           TEXT,
        -- The client's own x-request-id, kept for correlation.
        client_request_id TEXT,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        total_tokens      INTEGER NOT NULL,
        status            TEXT    NOT NULL,
        duration_ms       INTEGER NOT NULL,
        created_at        INTEGER NOT NULL
    );
    INSERT INTO usage_v4 (id, request_id, user_id, model, endpoint, prompt_tokens,
                          completion_tokens, total_tokens, status, duration_ms, created_at)
    SELECT id, request_id, user_id, model,
           CASE endpoint WHEN 'chat.completions' THEN '/v1/chat/completions'
                         WHEN 'completions' THEN '/v1/completions'
                         WHEN 'embeddings' THEN '/v1/embeddings'
                         ELSE endpoint END,
           prompt_tokens, completion_tokens, total_tokens, status, duration_ms, created_at
    FROM usage;
    -- Earlier builds stored a client's x-request-id as the request id, so a client could
    -- reuse one. The first row keeps it; later ones keep it as the client's id and get a
    -- unique one (`#` never appears in a client's or the proxy's ids).
    UPDATE usage_v4 SET client_request_id = request_id, request_id = request_id || '#' || id
    WHERE id NOT IN (SELECT min(id) FROM usage_v4 GROUP BY request_id);
    DROP TABLE usage;
    ALTER TABLE usage_v4 RENAME TO usage;
    CREATE INDEX usage_by_user_time ON usage (user_id, created_at);
    CREATE INDEX usage_by_time ON usage (created_at);

    ALTER TABLE rate_limits ADD COLUMN max_num_ctx INTEGER;
    ALTER TABLE rate_limits ADD COLUMN max_keep_alive_secs INTEGER;

    -- Requests refused by a limit, per user, limit and minute. No foreign key, as for usage.
    CREATE TABLE refusals (
        user_id    TEXT    NOT NULL,
        limit_kind TEXT    NOT NULL,
        minute     INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        PRIMARY KEY (user_id, limit_kind, minute)
    ) WITHOUT ROWID;
    CREATE INDEX refusals_by_minute ON refusals (minute);

    -- Moved by triggers, so every writer moves it: this process, the admin command line,
    -- a hand-written SQL statement.
    CREATE TABLE change_marker (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO change_marker (id, value) VALUES (1, 0);
    CREATE TRIGGER users_inserted AFTER INSERT ON users
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER users_updated AFTER UPDATE ON users
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER users_deleted AFTER DELETE ON users
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER api_keys_updated AFTER UPDATE ON api_keys
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER rate_limits_inserted AFTER INSERT ON rate_limits
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER rate_limits_updated AFTER UPDATE ON rate_limits
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;
    CREATE TRIGGER rate_limits_deleted AFTER DELETE ON rate_limits
        BEGIN UPDATE change_marker SET value = value + 1 WHERE id = 1; END;

    CREATE TABLE user_id_renames (
        old_id     TEXT    NOT NULL PRIMARY KEY,
        new_id     TEXT    NOT NULL,
        renamed_at INTEGER NOT NULL
    );
    "#,
        then: Some(rename_unsafe_user_ids),
    },
];

/// One migration step: SQL, then (rarely) work SQL alone cannot express, in the same
/// transaction.
struct Step {
    sql: &'static str,
    then: Option<fn(&Transaction<'_>) -> rusqlite::Result<()>>,
}

impl Step {
    const fn sql(sql: &'static str) -> Self {
        Self { sql, then: None }
    }
}

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database to [`SCHEMA_VERSION`], one transaction per step. A database already
/// there is left untouched (and no write lock is taken, so a server starts while another
/// process holds one); one from a newer build is refused.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StorageError> {
    let cause = |source| OpenCause::diagnose(path, false, source);
    let found = user_version(conn).map_err(|source| StorageError::Migration {
        version: SCHEMA_VERSION,
        source: cause(source),
    })?;
    if found >= SCHEMA_VERSION {
        return check_current(conn, path);
    }
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let target = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let migration_error = |source| StorageError::Migration {
            version: target,
            source: cause(source),
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
        tx.execute_batch(step.sql).map_err(migration_error)?;
        if let Some(then) = step.then {
            then(&tx).map_err(migration_error)?;
        }
        tx.pragma_update(None, "user_version", target)
            .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
        tracing::info!(version = target, "migrated the database schema");
    }
    // The loop above never sees a newer version when there are no steps to run.
    check_current(conn, path)
}

/// Gives every user id the stricter rule refuses (`.`, `-x`, `@x`: ids a URL path or a
/// command line misreads) a safe one, in every table, and records each rename in
/// `user_id_renames` so that the operator can find it and journal lines written under the old
/// id still land. The key stays, so the user's requests keep working.
fn rename_unsafe_user_ids(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let mut ids = BTreeSet::new();
    for sql in [
        "SELECT id FROM users",
        "SELECT user_id FROM user_totals",
        "SELECT DISTINCT user_id FROM usage",
    ] {
        let mut stmt = tx.prepare(sql)?;
        for id in stmt.query_map([], |row| row.get::<_, String>(0))? {
            ids.insert(id?);
        }
    }
    let mut taken: BTreeSet<String> = ids.clone();
    let now = UnixMillis::now().0;
    for old in ids.iter().filter(|id| UserId::parse(id).is_err()) {
        let new = safe_user_id(old, |candidate| taken.contains(candidate));
        taken.insert(new.clone());
        // The new row first and the old one last, so no foreign key ever points nowhere.
        tx.execute(
            "INSERT INTO users (id, display_name, note, allowed_models, disabled, created_at)
             SELECT ?2, display_name, note, allowed_models, disabled, created_at
             FROM users WHERE id = ?1",
            params![old, new],
        )?;
        for table in [
            "api_keys",
            "rate_limits",
            "user_totals",
            "usage",
            "refusals",
        ] {
            tx.execute(
                &format!("UPDATE {table} SET user_id = ?2 WHERE user_id = ?1"),
                params![old, new],
            )?;
        }
        tx.execute("DELETE FROM users WHERE id = ?1", [old])?;
        tx.execute(
            "INSERT INTO user_id_renames (old_id, new_id, renamed_at) VALUES (?1, ?2, ?3)",
            params![old, new, now],
        )?;
        tracing::warn!(
            old_id = %old,
            new_id = %new,
            "renamed a user whose id is not safe in a URL or on a command line; its key keeps working"
        );
    }
    Ok(())
}

/// A valid id for `old`: its allowed characters after a leading `u`, at most 64, and a
/// `-2`, `-3`, ... suffix when that is taken.
fn safe_user_id(old: &str, taken: impl Fn(&str) -> bool) -> String {
    const MAX: usize = 64;
    let allowed: String = old
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        .collect();
    let base: String = format!("u{allowed}").chars().take(MAX).collect();
    if !taken(&base) {
        return base;
    }
    (2u64..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = MAX - suffix.len();
            format!("{}{suffix}", &base[..base.len().min(keep)])
        })
        .find(|candidate| !taken(candidate))
        .unwrap_or(base)
}

/// The ids the migration to version 4 renamed, old to new (for journal lines written under
/// an old id).
pub(crate) fn user_id_renames(conn: &Connection) -> rusqlite::Result<HashMap<String, UserId>> {
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'user_id_renames'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_table {
        return Ok(HashMap::new());
    }
    let mut stmt = conn.prepare("SELECT old_id, new_id FROM user_id_renames")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, crate::sql::user_id_at(row, 1)?))
    })?;
    rows.collect()
}

/// Refuses a database whose version is not exactly [`SCHEMA_VERSION`] (used read-only, where
/// migrating is not possible).
pub(crate) fn check_current(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let found = user_version(conn).map_err(|source| StorageError::Migration {
        version: SCHEMA_VERSION,
        source: OpenCause::diagnose(path, true, source),
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
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            table_names(&conn),
            [
                "api_keys",
                "change_marker",
                "rate_limits",
                "refusals",
                "usage",
                "usage_journal",
                "user_id_renames",
                "user_totals",
                "users"
            ]
        );
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        let before: i64 = conn
            .pragma_query_value(None, "schema_version", |r| r.get(0))
            .unwrap();
        migrate(&mut conn, &path).unwrap();
        let after: i64 = conn
            .pragma_query_value(None, "schema_version", |r| r.get(0))
            .unwrap();
        // schema_version counts every schema change, so it proves no DDL ran the second time.
        assert_eq!(before, after);
    }

    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, &path).unwrap_err();
        assert!(
            matches!(err, StorageError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(table_names(&conn).is_empty());
        assert!(matches!(
            check_current(&conn, &path),
            Err(StorageError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn check_current_refuses_an_old_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        assert!(matches!(
            check_current(&conn, &path),
            Err(StorageError::SchemaTooOld { found: 0, .. })
        ));
    }

    #[test]
    fn safe_ids_start_with_a_letter_fit_and_avoid_taken_ones() {
        let none = |_: &str| false;
        assert_eq!(safe_user_id(".", none), "u.");
        assert_eq!(safe_user_id("-rf", none), "u-rf");
        assert_eq!(safe_user_id("@x", none), "u@x");
        let long = format!("_{}", "a".repeat(63));
        let renamed = safe_user_id(&long, none);
        assert_eq!(renamed.len(), 64);
        assert!(UserId::parse(&renamed).is_ok());
        let taken = |id: &str| id == "u.." || id == "u..-2";
        assert_eq!(safe_user_id("..", taken), "u..-3");
        let taken_long = |id: &str| id == renamed;
        let again = safe_user_id(&long, taken_long);
        assert!(again.ends_with("-2") && again.len() == 64, "{again}");
        assert!(UserId::parse(&again).is_ok());
    }
}
