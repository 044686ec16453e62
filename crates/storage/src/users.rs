//! [`UserStore`] over the `users`, `api_keys`, `rate_limits` and `user_totals` tables.

use aiproxy_domain::{
    ApiKeyHash, NewUser, Page, RateLimits, StoreError, UnixMillis, User, UserId, UserPatch,
    UserStore, UserSummary,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::SqliteStore;
use crate::error::{db, from_sqlite, not_found};
use crate::sql::{
    USER_COLUMN_COUNT, allowed_models_to_sql, count_at, select_user, to_sql_int, totals_from_row,
    user_columns, user_from_row,
};

const GET_USER: &str = concat!(select_user!(), " WHERE u.id = ?1");

// Starts from api_keys so that the lookup is one probe of the unique key_hash index.
const FIND_USER_BY_KEY: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM api_keys k
      JOIN users u ON u.id = k.user_id
      LEFT JOIN rate_limits l ON l.user_id = u.id
      WHERE k.key_hash = ?1"
);

const LIST_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", COALESCE(t.requests, 0), COALESCE(t.prompt_tokens, 0),
       COALESCE(t.completion_tokens, 0), COALESCE(t.total_tokens, 0)
      FROM users u
      LEFT JOIN api_keys k ON k.user_id = u.id
      LEFT JOIN rate_limits l ON l.user_id = u.id
      LEFT JOIN user_totals t ON t.user_id = u.id
      ORDER BY u.id
      LIMIT ?1 OFFSET ?2"
);

const UPSERT_LIMITS: &str = "
    INSERT INTO rate_limits (user_id, requests_per_minute, requests_per_day, tokens_per_minute,
                             tokens_per_day, total_token_limit, max_concurrent_requests)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (user_id) DO UPDATE SET
        requests_per_minute = excluded.requests_per_minute,
        requests_per_day = excluded.requests_per_day,
        tokens_per_minute = excluded.tokens_per_minute,
        tokens_per_day = excluded.tokens_per_day,
        total_token_limit = excluded.total_token_limit,
        max_concurrent_requests = excluded.max_concurrent_requests";

// Children first: the foreign keys cascade anyway, but explicit deletes keep the work visible
// and do not depend on `foreign_keys` being on.
const DELETE_USER_CHILDREN: [&str; 4] = [
    "DELETE FROM usage WHERE user_id = ?1",
    "DELETE FROM user_totals WHERE user_id = ?1",
    "DELETE FROM rate_limits WHERE user_id = ?1",
    "DELETE FROM api_keys WHERE user_id = ?1",
];

fn fetch_user(conn: &Connection, id: &UserId) -> Result<User, StoreError> {
    conn.prepare_cached(GET_USER)
        .and_then(|mut stmt| stmt.query_row([id.as_str()], user_from_row).optional())
        .map_err(db)?
        .ok_or_else(|| not_found("user", id.as_str()))
}

fn user_exists(conn: &Connection, id: &UserId) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM users WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([id.as_str()]))
        .map_err(db)
}

/// Whether `key_hash` is the current key of a user other than `except`.
fn key_taken(
    conn: &Connection,
    key_hash: &ApiKeyHash,
    except: Option<&UserId>,
) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM api_keys WHERE key_hash = ?1 AND user_id IS NOT ?2")
        .and_then(|mut stmt| stmt.exists(params![&key_hash.0[..], except.map(UserId::as_str)]))
        .map_err(db)
}

fn limits_params(limits: &RateLimits) -> [Option<i64>; 6] {
    [
        limits.requests_per_minute,
        limits.requests_per_day,
        limits.tokens_per_minute,
        limits.tokens_per_day,
        limits.total_token_limit,
        limits.max_concurrent_requests,
    ]
    .map(|limit| limit.map(to_sql_int))
}

fn write_limits(conn: &Connection, id: &UserId, limits: &RateLimits) -> Result<(), StoreError> {
    let [rpm, rpd, tpm, tpd, total, concurrent] = limits_params(limits);
    conn.prepare_cached(UPSERT_LIMITS)
        .and_then(|mut stmt| {
            stmt.execute(params![id.as_str(), rpm, rpd, tpm, tpd, total, concurrent])
        })
        .map_err(db)?;
    Ok(())
}

impl UserStore for SqliteStore {
    fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut conn = self.conn()?;
        // IMMEDIATE: the existence checks and the inserts see the same database, so the
        // checks cannot pass for two concurrent creations of the same id.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if user_exists(&tx, &new.id)? {
            return Err(StoreError::Conflict {
                entity: "user",
                id: new.id.as_str().to_owned(),
            });
        }
        if key_taken(&tx, &new.key_hash, None)? {
            return Err(StoreError::Conflict {
                entity: "api key",
                id: new.key_prefix.clone(),
            });
        }
        tx.execute(
            "INSERT INTO users (id, display_name, note, allowed_models, disabled, created_at)
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            params![
                new.id.as_str(),
                new.display_name,
                new.note,
                allowed_models_to_sql(new.allowed_models.as_ref()),
                new.created_at.0,
            ],
        )
        .map_err(|e| from_sqlite(e, "user", new.id.as_str()))?;
        tx.execute(
            "INSERT INTO api_keys (user_id, key_hash, key_prefix, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                new.id.as_str(),
                &new.key_hash.0[..],
                new.key_prefix,
                new.created_at.0,
                new.key_expires_at.map(|t| t.0),
            ],
        )
        .map_err(|e| from_sqlite(e, "api key", &new.key_prefix))?;
        write_limits(&tx, &new.id, &new.limits)?;
        tx.commit().map_err(db)?;
        Ok(User {
            id: new.id,
            display_name: new.display_name,
            note: new.note,
            key_prefix: new.key_prefix,
            key_expires_at: new.key_expires_at,
            allowed_models: new.allowed_models,
            disabled: false,
            created_at: new.created_at,
            limits: new.limits,
        })
    }

    fn get_user(&self, id: &UserId) -> Result<User, StoreError> {
        let conn = self.conn_with_usage()?;
        fetch_user(&conn, id)
    }

    fn list_users(&self, page: Page) -> Result<(Vec<UserSummary>, u64), StoreError> {
        let mut conn = self.conn_with_usage()?;
        // One read transaction, so the count and the page describe the same moment.
        let tx = conn.transaction().map_err(db)?;
        let count = tx
            .query_row("SELECT count(*) FROM users", [], |row| count_at(row, 0))
            .map_err(db)?;
        let users = tx
            .prepare_cached(LIST_USERS)
            .and_then(|mut stmt| {
                stmt.query_map(params![page.limit, to_sql_int(page.offset)], |row| {
                    Ok(UserSummary {
                        user: user_from_row(row)?,
                        totals: totals_from_row(row, USER_COLUMN_COUNT)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
        Ok((users, count))
    }

    fn update_user(&self, id: &UserId, patch: &UserPatch) -> Result<User, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let current = fetch_user(&tx, id)?;
        let display_name = patch.display_name.clone().unwrap_or(current.display_name);
        let note = patch.note.clone().unwrap_or(current.note);
        let allowed_models = patch
            .allowed_models
            .clone()
            .unwrap_or(current.allowed_models);
        let disabled = patch.disabled.unwrap_or(current.disabled);
        tx.execute(
            "UPDATE users SET display_name = ?2, note = ?3, allowed_models = ?4, disabled = ?5
             WHERE id = ?1",
            params![
                id.as_str(),
                display_name,
                note,
                allowed_models_to_sql(allowed_models.as_ref()),
                disabled,
            ],
        )
        .map_err(db)?;
        if let Some(expires_at) = patch.key_expires_at {
            tx.execute(
                "UPDATE api_keys SET expires_at = ?2 WHERE user_id = ?1",
                params![id.as_str(), expires_at.map(|t| t.0)],
            )
            .map_err(db)?;
        }
        let updated = fetch_user(&tx, id)?;
        tx.commit().map_err(db)?;
        Ok(updated)
    }

    /// `NotFound` when the user does not exist.
    fn delete_user(&self, id: &UserId) -> Result<(), StoreError> {
        let mut conn = self.conn_with_usage()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for statement in DELETE_USER_CHILDREN {
            tx.execute(statement, [id.as_str()]).map_err(db)?;
        }
        let deleted = tx
            .execute("DELETE FROM users WHERE id = ?1", [id.as_str()])
            .map_err(db)?;
        if deleted == 0 {
            // Dropping the transaction rolls back; nothing was there to delete anyway.
            return Err(not_found("user", id.as_str()));
        }
        tx.commit().map_err(db)
    }

    fn delete_all_users(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn_with_usage()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let count = tx
            .query_row("SELECT count(*) FROM users", [], |row| count_at(row, 0))
            .map_err(db)?;
        tx.execute_batch(
            "DELETE FROM usage;
             DELETE FROM user_totals;
             DELETE FROM rate_limits;
             DELETE FROM api_keys;
             DELETE FROM users;",
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(count)
    }

    /// `NotFound` when the user does not exist; `Conflict` when another user's key has this
    /// hash. Giving a user its own current hash again only updates prefix and expiry.
    fn replace_key(
        &self,
        id: &UserId,
        key_hash: ApiKeyHash,
        key_prefix: &str,
        key_expires_at: Option<UnixMillis>,
    ) -> Result<User, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if !user_exists(&tx, id)? {
            return Err(not_found("user", id.as_str()));
        }
        if key_taken(&tx, &key_hash, Some(id))? {
            return Err(StoreError::Conflict {
                entity: "api key",
                id: key_prefix.to_owned(),
            });
        }
        // The row is keyed on the user, so the old hash is overwritten in the same statement
        // that stores the new one: there is no moment with two keys, or none.
        tx.execute(
            "INSERT INTO api_keys (user_id, key_hash, key_prefix, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (user_id) DO UPDATE SET
                 key_hash = excluded.key_hash,
                 key_prefix = excluded.key_prefix,
                 created_at = excluded.created_at,
                 expires_at = excluded.expires_at",
            params![
                id.as_str(),
                &key_hash.0[..],
                key_prefix,
                UnixMillis::now().0,
                key_expires_at.map(|t| t.0),
            ],
        )
        .map_err(|e| from_sqlite(e, "api key", key_prefix))?;
        let user = fetch_user(&tx, id)?;
        tx.commit().map_err(db)?;
        Ok(user)
    }

    fn find_user_by_key(&self, key_hash: &ApiKeyHash) -> Result<Option<User>, StoreError> {
        let conn = self.conn()?;
        conn.prepare_cached(FIND_USER_BY_KEY)
            .and_then(|mut stmt| stmt.query_row([&key_hash.0[..]], user_from_row).optional())
            .map_err(db)
    }

    fn set_limits(&self, id: &UserId, limits: &RateLimits) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if !user_exists(&tx, id)? {
            return Err(not_found("user", id.as_str()));
        }
        write_limits(&tx, id, limits)?;
        tx.commit().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details: Vec<String> = stmt
            .query_map([&[0u8; 32][..]], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        details.join("\n")
    }

    #[test]
    fn finding_a_user_by_key_is_one_index_probe() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let plan = plan(&conn, FIND_USER_BY_KEY);
        assert!(
            plan.lines().next().is_some_and(
                |first| first.contains("SEARCH k USING INDEX") && first.contains("key_hash=?")
            ),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");
    }
}
