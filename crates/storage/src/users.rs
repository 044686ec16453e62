//! [`UserStore`] over the `users`, `api_keys`, `rate_limits` and `user_totals` tables.

use aiproxy_domain::{
    ApiKeyHash, Deleted, NewUser, RateLimits, StoreError, StoreFuture, UnixMillis, User, UserId,
    UserPatch, UserQuery, UserSort, UserStore, UserSummary,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::error::{db, from_sqlite, not_found};
use crate::sql::{
    USER_COLUMN_COUNT, allowed_models_to_sql, count_at, select_user, to_sql_int, totals_from_row,
    user_columns, user_from_row,
};
use crate::{Blocking, SqliteStore};

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

const LIST_USERS_FROM: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", COALESCE(t.requests, 0), COALESCE(t.prompt_tokens, 0),
       COALESCE(t.completion_tokens, 0), COALESCE(t.total_tokens, 0)
      FROM users u
      LEFT JOIN api_keys k ON k.user_id = u.id
      LEFT JOIN rate_limits l ON l.user_id = u.id
      LEFT JOIN user_totals t ON t.user_id = u.id"
);

/// Case-insensitive (Unicode) "contains" on the id or the display name; registered on every
/// connection (see `connection.rs`).
const SEARCH: &str = "(aiproxy_contains_folded(u.id, ?) OR \
     aiproxy_contains_folded(u.display_name, ?))";

const UPSERT_LIMITS: &str = "
    INSERT INTO rate_limits (user_id, requests_per_minute, requests_per_day, tokens_per_minute,
                             tokens_per_day, total_token_limit, max_concurrent_requests,
                             max_num_ctx, max_keep_alive_secs)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (user_id) DO UPDATE SET
        requests_per_minute = excluded.requests_per_minute,
        requests_per_day = excluded.requests_per_day,
        tokens_per_minute = excluded.tokens_per_minute,
        tokens_per_day = excluded.tokens_per_day,
        total_token_limit = excluded.total_token_limit,
        max_concurrent_requests = excluded.max_concurrent_requests,
        max_num_ctx = excluded.max_num_ctx,
        max_keep_alive_secs = excluded.max_keep_alive_secs";

// Children first: the foreign keys cascade anyway, but explicit deletes keep the work visible
// and do not depend on `foreign_keys` being on. Usage and refusals have no foreign key (their
// rows may outlive the user, see `delete_user`).
const DELETE_USER_CHILDREN: [&str; 4] = [
    "DELETE FROM refusals WHERE user_id = ?1",
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

fn limits_params(limits: &RateLimits) -> [Option<i64>; 8] {
    [
        limits.requests_per_minute,
        limits.requests_per_day,
        limits.tokens_per_minute,
        limits.tokens_per_day,
        limits.total_token_limit,
        limits.max_concurrent_requests,
        limits.max_num_ctx,
        limits.max_keep_alive_secs,
    ]
    .map(|limit| limit.map(to_sql_int))
}

fn write_limits(conn: &Connection, id: &UserId, limits: &RateLimits) -> Result<(), StoreError> {
    let [rpm, rpd, tpm, tpd, total, concurrent, num_ctx, keep_alive] = limits_params(limits);
    conn.prepare_cached(UPSERT_LIMITS)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.as_str(),
                rpm,
                rpd,
                tpm,
                tpd,
                total,
                concurrent,
                num_ctx,
                keep_alive
            ])
        })
        .map_err(db)?;
    Ok(())
}

/// The `ORDER BY` of a listing: the sort key, then the id for ties.
fn order_by(sort: UserSort, descending: bool) -> &'static str {
    match (sort, descending) {
        (UserSort::Id, false) => "u.id",
        (UserSort::Id, true) => "u.id DESC",
        (UserSort::CreatedAt, false) => "u.created_at, u.id",
        (UserSort::CreatedAt, true) => "u.created_at DESC, u.id",
        (UserSort::TotalTokens, false) => "COALESCE(t.total_tokens, 0), u.id",
        (UserSort::TotalTokens, true) => "COALESCE(t.total_tokens, 0) DESC, u.id",
        (UserSort::Requests, false) => "COALESCE(t.requests, 0), u.id",
        (UserSort::Requests, true) => "COALESCE(t.requests, 0) DESC, u.id",
    }
}

/// The async trait: each method runs its [`Blocking`] twin on the store's own threads.
impl UserStore for SqliteStore {
    fn create_user(&self, new: NewUser) -> StoreFuture<'_, User> {
        self.run(move |store| store.create_user(new))
    }

    fn get_user<'a>(&'a self, id: &'a UserId) -> StoreFuture<'a, User> {
        let id = id.clone();
        self.run(move |store| store.get_user(&id))
    }

    fn list_users<'a>(&'a self, query: &'a UserQuery) -> StoreFuture<'a, (Vec<UserSummary>, u64)> {
        let query = query.clone();
        self.run(move |store| store.list_users(&query))
    }

    fn update_user<'a>(&'a self, id: &'a UserId, patch: &'a UserPatch) -> StoreFuture<'a, User> {
        let (id, patch) = (id.clone(), patch.clone());
        self.run(move |store| store.update_user(&id, &patch))
    }

    /// See [`Blocking::delete_user`]: rows of requests still in flight are kept.
    fn delete_user<'a>(&'a self, id: &'a UserId) -> StoreFuture<'a, Deleted> {
        let id = id.clone();
        self.run(move |store| store.delete_user(&id))
    }

    fn delete_all_users(&self) -> StoreFuture<'_, Deleted> {
        self.run(|store| store.delete_all_users())
    }

    fn replace_key<'a>(
        &'a self,
        id: &'a UserId,
        key_hash: ApiKeyHash,
        key_prefix: &'a str,
        key_expires_at: Option<UnixMillis>,
    ) -> StoreFuture<'a, User> {
        let (id, key_prefix) = (id.clone(), key_prefix.to_owned());
        self.run(move |store| store.replace_key(&id, key_hash, &key_prefix, key_expires_at))
    }

    fn find_user_by_key<'a>(&'a self, key_hash: &'a ApiKeyHash) -> StoreFuture<'a, Option<User>> {
        let key_hash = *key_hash;
        self.run(move |store| store.find_user_by_key(&key_hash))
    }

    fn set_limits<'a>(&'a self, id: &'a UserId, limits: &'a RateLimits) -> StoreFuture<'a, ()> {
        let (id, limits) = (id.clone(), *limits);
        self.run(move |store| store.set_limits(&id, &limits))
    }

    /// See [`Blocking::change_marker`].
    fn change_marker(&self) -> StoreFuture<'_, u64> {
        self.run(|store| store.change_marker())
    }
}

impl Blocking<'_> {
    /// Creates a user with its first key. `Conflict` when the id or the key hash is taken.
    pub fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut conn = self.store.conn()?;
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

    /// One user. `NotFound` when unknown.
    pub fn get_user(&self, id: &UserId) -> Result<User, StoreError> {
        let conn = self.store.conn()?;
        fetch_user(&conn, id)
    }

    /// Users matching the query, with their lifetime totals (every usage record journaled
    /// before the call included), and how many match in all.
    pub fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserSummary>, u64), StoreError> {
        let mut conn = self.store.conn_with_usage()?;
        let (filter, filter_params) = match &query.search {
            Some(text) if !text.is_empty() => (
                format!("WHERE {SEARCH}"),
                vec![Value::Text(text.clone()), Value::Text(text.clone())],
            ),
            _ => (String::new(), Vec::new()),
        };
        // One read transaction, so the count and the page describe the same moment.
        let tx = conn.transaction().map_err(db)?;
        let count = tx
            .prepare_cached(&format!("SELECT count(*) FROM users u {filter}"))
            .and_then(|mut stmt| {
                stmt.query_row(params_from_iter(&filter_params), |row| count_at(row, 0))
            })
            .map_err(db)?;
        let mut page_params = filter_params;
        page_params.push(Value::Integer(i64::from(query.page.limit)));
        page_params.push(Value::Integer(to_sql_int(query.page.offset)));
        let users = tx
            .prepare_cached(&format!(
                "{LIST_USERS_FROM} {filter} ORDER BY {} LIMIT ? OFFSET ?",
                order_by(query.sort, query.descending)
            ))
            .and_then(|mut stmt| {
                stmt.query_map(params_from_iter(&page_params), |row| {
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

    /// Changes a user's settings. `NotFound` when unknown.
    pub fn update_user(&self, id: &UserId, patch: &UserPatch) -> Result<User, StoreError> {
        let mut conn = self.store.conn()?;
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

    /// Deletes a user with its key, limits, lifetime totals, refusal counts and every usage
    /// record journaled before the call, in one transaction, and says how many records went.
    /// `NotFound` when the user does not exist.
    ///
    /// A request of the user still in flight (its key was cached, or it was admitted just
    /// before) records its row when it ends, after this: that row is stored all the same,
    /// under the deleted id (usage rows have no foreign key to their user), so the ledger
    /// never loses an answered request. Such a row counts in no lifetime total; a user created
    /// again under the same id sees it in its history.
    pub fn delete_user(&self, id: &UserId) -> Result<Deleted, StoreError> {
        let mut conn = self.store.conn_with_usage()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let usage_records = tx
            .execute("DELETE FROM usage WHERE user_id = ?1", [id.as_str()])
            .map_err(db)? as u64;
        for statement in DELETE_USER_CHILDREN {
            tx.execute(statement, [id.as_str()]).map_err(db)?;
        }
        let users = tx
            .execute("DELETE FROM users WHERE id = ?1", [id.as_str()])
            .map_err(db)? as u64;
        if users == 0 {
            // Dropping the transaction rolls back; nothing was there to delete anyway.
            return Err(not_found("user", id.as_str()));
        }
        tx.commit().map_err(db)?;
        Ok(Deleted {
            users,
            usage_records,
        })
    }

    /// Deletes every user, key, limit, lifetime total, refusal count and usage record
    /// journaled before the call. Rows of requests still in flight are stored when they end,
    /// as for [`Blocking::delete_user`].
    pub fn delete_all_users(&self) -> Result<Deleted, StoreError> {
        let mut conn = self.store.conn_with_usage()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let usage_records = tx.execute("DELETE FROM usage", []).map_err(db)? as u64;
        tx.execute_batch(
            "DELETE FROM refusals;
             DELETE FROM user_totals;
             DELETE FROM rate_limits;
             DELETE FROM api_keys;",
        )
        .map_err(db)?;
        let users = tx.execute("DELETE FROM users", []).map_err(db)? as u64;
        tx.commit().map_err(db)?;
        Ok(Deleted {
            users,
            usage_records,
        })
    }

    /// Replaces a user's key; the old one stops matching at once. `NotFound` when the user
    /// does not exist; `Conflict` when another user's key has this hash. Giving a user its own
    /// current hash again only updates prefix and expiry.
    pub fn replace_key(
        &self,
        id: &UserId,
        key_hash: ApiKeyHash,
        key_prefix: &str,
        key_expires_at: Option<UnixMillis>,
    ) -> Result<User, StoreError> {
        let mut conn = self.store.conn()?;
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

    /// The user whose current key has this hash, if any.
    pub fn find_user_by_key(&self, key_hash: &ApiKeyHash) -> Result<Option<User>, StoreError> {
        let conn = self.store.conn()?;
        conn.prepare_cached(FIND_USER_BY_KEY)
            .and_then(|mut stmt| stmt.query_row([&key_hash.0[..]], user_from_row).optional())
            .map_err(db)
    }

    /// Stores a user's limits. `NotFound` when unknown.
    pub fn set_limits(&self, id: &UserId, limits: &RateLimits) -> Result<(), StoreError> {
        let mut conn = self.store.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        if !user_exists(&tx, id)? {
            return Err(not_found("user", id.as_str()));
        }
        write_limits(&tx, id, limits)?;
        tx.commit().map_err(db)
    }

    /// A counter that triggers in the database move on every insert, update or delete of a
    /// user, key or limits row, so a change by any writer of the file (this process, the
    /// admin command line, a hand-written SQL statement) moves it.
    pub fn change_marker(&self) -> Result<u64, StoreError> {
        let conn = self.store.conn()?;
        conn.prepare_cached("SELECT value FROM change_marker WHERE id = 1")
            .and_then(|mut stmt| stmt.query_row([], |row| count_at(row, 0)))
            .map_err(db)
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
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        crate::schema::migrate(&mut conn, &path).unwrap();
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
