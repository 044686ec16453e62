//! [`UsageStore`] over the `usage` and `user_totals` tables. Writes go through the usage
//! writer (see `writer.rs`); everything here reads, except `delete_usage_before`.

use aiproxy_domain::{
    StoreError, UnixMillis, UsageCommit, UsageEvent, UsageFilter, UsageGrouping, UsagePage,
    UsageQuery, UsageRecord, UsageStore, UsageSummaryRow, UserId,
};
use rusqlite::types::Value;
use rusqlite::{TransactionBehavior, params, params_from_iter};

use crate::SqliteStore;
use crate::error::db;
use crate::sql::{
    USAGE_COLUMNS, UsageWhere, count_at, optional_user_id_at, to_sql_int, totals_from_row,
    usage_from_row, user_id_at,
};

const SUMS: &str = "count(*), COALESCE(SUM(prompt_tokens), 0), \
     COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(total_tokens), 0)";

/// Rows `delete_usage_before` removes per transaction, so that the usage writer, waiting for
/// the same write lock, is held up for one chunk at a time rather than for the whole purge.
const DELETE_CHUNK_ROWS: i64 = 10_000;

impl UsageStore for SqliteStore {
    /// Resolves once the record's batch is committed; with `NotFound` when its user was
    /// deleted meanwhile (the record is dropped), with `Unavailable` when the batch failed or
    /// the store is closed.
    fn record_usage(&self, record: UsageRecord) -> UsageCommit {
        self.writer().submit(record)
    }

    fn usage_page(&self, query: &UsageQuery) -> Result<UsagePage, StoreError> {
        let filter = UsageWhere::new(&query.filter);
        let mut conn = self.conn_with_usage()?;
        // One read transaction, so the totals and the page describe the same moment.
        let tx = conn.transaction().map_err(db)?;
        let totals = tx
            .prepare_cached(&format!("SELECT {SUMS} FROM usage {}", filter.sql))
            .and_then(|mut stmt| {
                stmt.query_row(params_from_iter(&filter.params), |row| {
                    totals_from_row(row, 0)
                })
            })
            .map_err(db)?;
        let mut page_params = filter.params.clone();
        page_params.push(Value::Integer(i64::from(query.limit)));
        page_params.push(Value::Integer(to_sql_int(query.offset)));
        let records = tx
            .prepare_cached(&format!(
                "SELECT {USAGE_COLUMNS} FROM usage {} ORDER BY created_at DESC, id DESC \
                 LIMIT ? OFFSET ?",
                filter.sql
            ))
            .and_then(|mut stmt| {
                stmt.query_map(params_from_iter(&page_params), usage_from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
        Ok(UsagePage { totals, records })
    }

    /// Rows are ordered by user, then model, then day, for the keys asked for. Without any
    /// grouping key the answer is one row of totals over the whole filter (zeros when it
    /// covers nothing).
    fn usage_summary(
        &self,
        filter: &UsageFilter,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageSummaryRow>, StoreError> {
        let filter = UsageWhere::new(filter);
        let mut keys = Vec::new();
        if grouping.by_user {
            keys.push("1");
        }
        if grouping.by_model {
            keys.push("2");
        }
        if grouping.by_day {
            keys.push("3");
        }
        let group_and_order = if keys.is_empty() {
            String::new()
        } else {
            let keys = keys.join(", ");
            format!("GROUP BY {keys} ORDER BY {keys}")
        };
        let sql = format!(
            "SELECT {}, {}, {}, {SUMS} FROM usage {} {group_and_order}",
            if grouping.by_user { "user_id" } else { "NULL" },
            if grouping.by_model { "model" } else { "NULL" },
            if grouping.by_day {
                "strftime('%Y-%m-%d', created_at / 1000, 'unixepoch')"
            } else {
                "NULL"
            },
            filter.sql,
        );
        let conn = self.conn_with_usage()?;
        conn.prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params_from_iter(&filter.params), |row| {
                    Ok(UsageSummaryRow {
                        user_id: optional_user_id_at(row, 0)?,
                        model: row.get(1)?,
                        day: row.get(2)?,
                        totals: totals_from_row(row, 3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)
    }

    fn for_each_usage(
        &self,
        filter: &UsageFilter,
        sink: &mut dyn FnMut(UsageRecord) -> bool,
    ) -> Result<(), StoreError> {
        let filter = UsageWhere::new(filter);
        let conn = self.conn_with_usage()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {USAGE_COLUMNS} FROM usage {} ORDER BY created_at, id",
                filter.sql
            ))
            .map_err(db)?;
        let mut rows = stmt.query(params_from_iter(&filter.params)).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            if !sink(usage_from_row(row).map_err(db)?) {
                break;
            }
        }
        Ok(())
    }

    fn usage_events_since(&self, since: UnixMillis) -> Result<Vec<UsageEvent>, StoreError> {
        let conn = self.conn_with_usage()?;
        // A day of a busy proxy is millions of rows read once at start-up: read them through
        // SQLite's small page cache rather than the memory map, which would leave every page
        // of the scan counted in the process's resident memory.
        conn.pragma_update(None, "mmap_size", 0).map_err(db)?;
        let events = merged_events_since(&conn, since);
        if let Err(error) = conn.pragma_update(None, "mmap_size", crate::connection::MMAP_BYTES) {
            // Only this pooled connection's reads get slower; not a reason to fail start-up.
            tracing::warn!(%error, "could not turn the memory map back on for a connection");
        }
        events.map_err(db)
    }

    /// Every user, in id order, with zero for those who never used anything.
    fn lifetime_tokens(&self) -> Result<Vec<(UserId, u64)>, StoreError> {
        let conn = self.conn_with_usage()?;
        conn.prepare_cached(
            "SELECT u.id, COALESCE(t.total_tokens, 0) FROM users u
             LEFT JOIN user_totals t ON t.user_id = u.id ORDER BY u.id",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((user_id_at(row, 0)?, count_at(row, 1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)
    }

    /// Deletes in chunks of 10 000 rows, one transaction each, so usage writes interleave
    /// with a large purge. If a chunk fails, the chunks before it stay deleted (running the
    /// call again finishes the job). Lifetime totals are kept apart and never change here.
    fn delete_usage_before(&self, before: UnixMillis) -> Result<u64, StoreError> {
        let mut conn = self.conn_with_usage()?;
        let mut deleted: u64 = 0;
        loop {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let n = tx
                .execute(
                    "DELETE FROM usage WHERE id IN
                        (SELECT id FROM usage WHERE created_at < ?1 LIMIT ?2)",
                    params![before.0, DELETE_CHUNK_ROWS],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            deleted += n as u64;
            if (n as i64) < DELETE_CHUNK_ROWS {
                return Ok(deleted);
            }
        }
    }
}

/// The records since `since`, merged per user and second while they stream by in time order:
/// memory grows with the number of busy seconds, not with the number of rows.
fn merged_events_since(
    conn: &rusqlite::Connection,
    since: UnixMillis,
) -> rusqlite::Result<Vec<UsageEvent>> {
    let mut statement = conn.prepare(
        "SELECT user_id, created_at, total_tokens FROM usage
         WHERE created_at >= ?1 ORDER BY created_at, id",
    )?;
    let mut rows = statement.query([since.0])?;
    let mut events: Vec<UsageEvent> = Vec::new();
    // Where the current second's events start in `events`: one per user seen in it.
    let mut second_starts_at = 0;
    let mut current_second = i64::MIN;
    while let Some(row) = rows.next()? {
        let at: i64 = row.get(1)?;
        let total_tokens = crate::sql::count_at(row, 2)?;
        let second = at.div_euclid(1000);
        if second != current_second {
            current_second = second;
            second_starts_at = events.len();
        }
        let user = row.get_ref(0)?.as_str()?;
        match events[second_starts_at..]
            .iter_mut()
            .find(|event| event.user_id.as_str() == user)
        {
            Some(event) => {
                event.at = UnixMillis(second * 1000);
                event.requests = event.requests.saturating_add(1);
                event.total_tokens = event.total_tokens.saturating_add(total_tokens);
            }
            None => events.push(UsageEvent {
                user_id: crate::sql::user_id_at(row, 0)?,
                at: UnixMillis(at),
                requests: 1,
                total_tokens,
            }),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiproxy_domain::UserId;
    use rusqlite::Connection;

    fn plan(conn: &Connection, sql: &str, params: &[Value]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details: Vec<String> = stmt
            .query_map(params_from_iter(params), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        details.join("\n")
    }

    /// Every filter combination must page newest first straight off an index (no sort of the
    /// matches), and any filter naming a user or a start must search an index, not scan.
    #[test]
    fn pages_walk_an_index_in_order_for_every_filter_combination() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db.sqlite")).unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        for mask in 0..16u8 {
            let filter = UsageFilter {
                user_id: (mask & 1 != 0).then(|| UserId::parse("alice").unwrap()),
                model: (mask & 2 != 0).then(|| "llama3.2".to_owned()),
                start: (mask & 4 != 0).then_some(UnixMillis(1)),
                end: (mask & 8 != 0).then_some(UnixMillis(5)),
            };
            let clause = UsageWhere::new(&filter);
            let mut params = clause.params.clone();
            params.extend([Value::Integer(10), Value::Integer(0)]);
            let page = plan(
                &conn,
                &format!(
                    "SELECT {USAGE_COLUMNS} FROM usage {} ORDER BY created_at DESC, id DESC \
                     LIMIT ? OFFSET ?",
                    clause.sql
                ),
                &params,
            );
            assert!(page.contains("USING INDEX"), "{filter:?}: {page}");
            assert!(!page.contains("TEMP B-TREE"), "{filter:?}: {page}");
            if filter.user_id.is_some() || filter.start.is_some() {
                let sums = plan(
                    &conn,
                    &format!("SELECT {SUMS} FROM usage {}", clause.sql),
                    &clause.params,
                );
                assert!(sums.starts_with("SEARCH usage USING"), "{filter:?}: {sums}");
            }
        }
    }
}
