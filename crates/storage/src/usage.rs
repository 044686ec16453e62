//! [`UsageStore`] over the `usage`, `user_totals` and `refusals` tables. Usage rows are
//! written through the usage writer (see `writer.rs`); everything here reads, except
//! `delete_usage_before` and `record_refusals`.

use aiproxy_domain::{
    Period, RefusalCount, RefusalGrouping, RefusalSummaryRow, StoreError, StoreFuture, UnixMillis,
    UsageCommit, UsageCursor, UsageEvent, UsageFilter, UsageGrouping, UsagePage, UsageQuery,
    UsageRecord, UsageStore, UsageSummaryRow, UserId,
};
use rusqlite::types::Value;
use rusqlite::{TransactionBehavior, params, params_from_iter};

use crate::error::db;
use crate::sql::{
    USAGE_COLUMNS, UsageWhere, count_at, limit_kind_at, optional_endpoint_at, optional_user_id_at,
    to_sql_int, totals_from_row, usage_from_row, user_id_at,
};
use crate::{Blocking, SqliteStore};

const SUMS: &str = "count(*), COALESCE(SUM(prompt_tokens), 0), \
     COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(total_tokens), 0)";

/// Rows `delete_usage_before` removes per transaction, so that the usage writer, waiting for
/// the same write lock, is held up for one chunk at a time rather than for the whole purge.
const DELETE_CHUNK_ROWS: i64 = 10_000;

/// What retention deletes, a chunk at a time, and whether the count is reported.
const PURGES: [(&str, bool); 2] = [
    (
        "DELETE FROM usage WHERE id IN
            (SELECT id FROM usage WHERE created_at < ?1 LIMIT ?2)",
        true,
    ),
    (
        "DELETE FROM refusals WHERE (user_id, limit_kind, minute) IN
            (SELECT user_id, limit_kind, minute FROM refusals WHERE minute < ?1 LIMIT ?2)",
        false,
    ),
];

const MINUTE_MS: i64 = 60_000;

/// The start of the UTC period holding `column` (integer milliseconds), in milliseconds: the
/// period's first millisecond. Floors rather than truncates, so times before 1970 group
/// right too; months go through SQLite's calendar from the start of the day.
fn period_start_sql(period: Period, column: &str) -> String {
    let floor = |unit: i64| format!("({column} - ((({column}) % {unit}) + {unit}) % {unit})");
    match period {
        Period::Hour => floor(3_600_000),
        Period::Day => floor(86_400_000),
        Period::Month => format!(
            "CAST(strftime('%s', {} / 1000, 'unixepoch', 'start of month') AS INTEGER) * 1000",
            floor(86_400_000)
        ),
    }
}

/// `GROUP BY` and `ORDER BY` over the given 1-based columns, or nothing.
fn group_and_order(keys: &[&str]) -> String {
    if keys.is_empty() {
        return String::new();
    }
    let keys = keys.join(", ");
    format!("GROUP BY {keys} ORDER BY {keys}")
}

/// The async trait. `record_usage` appends to the journal on the caller's thread (no thread
/// hop per request); every other method runs its [`Blocking`] twin on the store's threads.
impl UsageStore for SqliteStore {
    /// Appends the record to the usage journal and returns an already-resolved future: `Ok`
    /// once the line is written (it survives the process being killed), `Unavailable` when
    /// the write failed, the store is closed, or another process owns the journal. The row
    /// is stored even when its user was deleted meanwhile.
    fn record_usage(&self, record: UsageRecord) -> UsageCommit {
        self.writer().submit(record)
    }

    fn usage_page<'a>(&'a self, query: &'a UsageQuery) -> StoreFuture<'a, UsagePage> {
        let query = query.clone();
        self.run(move |store| store.usage_page(&query))
    }

    fn usage_summary<'a>(
        &'a self,
        filter: &'a UsageFilter,
        grouping: UsageGrouping,
    ) -> StoreFuture<'a, Vec<UsageSummaryRow>> {
        let filter = filter.clone();
        self.run(move |store| store.usage_summary(&filter, grouping))
    }

    fn usage_batch<'a>(
        &'a self,
        filter: &'a UsageFilter,
        after: Option<&'a UsageCursor>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<UsageRecord>> {
        let (filter, after) = (filter.clone(), after.cloned());
        self.run(move |store| store.usage_batch(&filter, after.as_ref(), limit))
    }

    fn usage_events_since(&self, since: UnixMillis) -> StoreFuture<'_, Vec<UsageEvent>> {
        self.run(move |store| store.usage_events_since(since))
    }

    fn lifetime_tokens(&self) -> StoreFuture<'_, Vec<(UserId, u64)>> {
        self.run(|store| store.lifetime_tokens())
    }

    /// See [`Blocking::delete_usage_before`].
    fn delete_usage_before(&self, before: UnixMillis) -> StoreFuture<'_, u64> {
        self.run(move |store| store.delete_usage_before(before))
    }

    fn record_refusals(&self, counts: Vec<RefusalCount>) -> StoreFuture<'_, ()> {
        self.run(move |store| store.record_refusals(&counts))
    }

    fn refusal_summary<'a>(
        &'a self,
        filter: &'a UsageFilter,
        grouping: RefusalGrouping,
    ) -> StoreFuture<'a, Vec<RefusalSummaryRow>> {
        let filter = filter.clone();
        self.run(move |store| store.refusal_summary(&filter, grouping))
    }
}

impl Blocking<'_> {
    /// Appends a record to the usage journal; see [`UsageStore::record_usage`].
    pub fn record_usage(&self, record: UsageRecord) -> Result<(), StoreError> {
        self.store.writer().append(record)
    }

    /// A page of records, newest first, with totals over the whole filter (one read
    /// transaction, so both describe the same moment).
    pub fn usage_page(&self, query: &UsageQuery) -> Result<UsagePage, StoreError> {
        let filter = UsageWhere::new(&query.filter);
        let mut conn = self.store.conn_with_usage()?;
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

    /// Totals grouped by the keys asked for, in the order user, model, endpoint, backend,
    /// period, and ordered by them (endpoints by their route). Without any key the answer is
    /// one row of totals over the whole filter (zeros when it covers nothing).
    pub fn usage_summary(
        &self,
        filter: &UsageFilter,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageSummaryRow>, StoreError> {
        let filter = UsageWhere::new(filter);
        let period = grouping.period.map(|p| period_start_sql(p, "created_at"));
        let columns = [
            grouping.by_user.then_some("user_id"),
            grouping.by_model.then_some("model"),
            grouping.by_endpoint.then_some("endpoint"),
            grouping.by_backend.then_some("backend"),
            period.as_deref(),
        ];
        let keys: Vec<&str> = ["1", "2", "3", "4", "5"]
            .into_iter()
            .zip(&columns)
            .filter_map(|(key, column)| column.map(|_| key))
            .collect();
        let selected: Vec<&str> = columns.iter().map(|c| c.unwrap_or("NULL")).collect();
        let sql = format!(
            "SELECT {}, {SUMS} FROM usage {} {}",
            selected.join(", "),
            filter.sql,
            group_and_order(&keys),
        );
        let conn = self.store.conn_with_usage()?;
        conn.prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params_from_iter(&filter.params), |row| {
                    Ok(UsageSummaryRow {
                        user_id: optional_user_id_at(row, 0)?,
                        model: row.get(1)?,
                        endpoint: optional_endpoint_at(row, 2)?,
                        backend: row.get(3)?,
                        period_start: row.get::<_, Option<i64>>(4)?.map(UnixMillis),
                        totals: totals_from_row(row, 5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)
    }

    /// Up to `limit` records the filter covers, oldest first by (creation time, request id),
    /// after `after`. Each batch is one indexed range read from the cursor on: an export of
    /// millions of rows holds one batch at a time and never re-reads what it passed.
    pub fn usage_batch(
        &self,
        filter: &UsageFilter,
        after: Option<&UsageCursor>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let mut clause = UsageWhere::new(filter);
        if let Some(cursor) = after {
            // `created_at >= ?` first, so the range starts at the cursor on the index.
            clause = clause.and(
                "created_at >= ? AND (created_at > ? OR request_id > ?)",
                [
                    Value::Integer(cursor.created_at.0),
                    Value::Integer(cursor.created_at.0),
                    Value::Text(cursor.request_id.clone()),
                ],
            );
        }
        let mut params = clause.params;
        params.push(Value::Integer(i64::from(limit)));
        let conn = self.store.conn_with_usage()?;
        conn.prepare_cached(&format!(
            "SELECT {USAGE_COLUMNS} FROM usage {} ORDER BY created_at, request_id LIMIT ?",
            clause.sql
        ))
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(&params), usage_from_row)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)
    }

    /// The records since `since`, merged per user and second, in the order of their seconds.
    pub fn usage_events_since(&self, since: UnixMillis) -> Result<Vec<UsageEvent>, StoreError> {
        let conn = self.store.conn_with_usage()?;
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

    /// Every user, in id order, with their lifetime token total (zero for those who never
    /// used anything).
    pub fn lifetime_tokens(&self) -> Result<Vec<(UserId, u64)>, StoreError> {
        let conn = self.store.conn_with_usage()?;
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

    /// Deletes the usage records, and the refusal counts, of before `before`; returns how
    /// many usage records went. Deletes in chunks of 10 000 rows, one transaction each, so
    /// usage writes interleave with a large purge. If a chunk fails, the chunks before it stay
    /// deleted (running the call again finishes the job). Lifetime totals are kept apart and
    /// never change here.
    pub fn delete_usage_before(&self, before: UnixMillis) -> Result<u64, StoreError> {
        let mut conn = self.store.conn_with_usage()?;
        let mut counted = 0;
        for (statement, count_it) in PURGES {
            loop {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let n = tx
                    .execute(statement, params![before.0, DELETE_CHUNK_ROWS])
                    .map_err(db)?;
                tx.commit().map_err(db)?;
                if count_it {
                    counted += n as u64;
                }
                if (n as i64) < DELETE_CHUNK_ROWS {
                    break;
                }
            }
        }
        Ok(counted)
    }

    /// Adds refusal counts, one transaction for all; counts of the same user, limit and
    /// minute add up (saturating), and each count's time is taken to the start of its minute.
    pub fn record_refusals(&self, counts: &[RefusalCount]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut conn = self.store.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO refusals (user_id, limit_kind, minute, count)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user_id, limit_kind, minute) DO UPDATE SET
                         count = CASE WHEN count > 9223372036854775807 - excluded.count
                                      THEN 9223372036854775807
                                      ELSE count + excluded.count END",
                )
                .map_err(db)?;
            for count in counts {
                let minute = count.minute.0 - count.minute.0.rem_euclid(MINUTE_MS);
                upsert
                    .execute(params![
                        count.user_id.as_str(),
                        count.limit.name(),
                        minute,
                        to_sql_int(count.count),
                    ])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Refusals grouped by the keys asked for, in the order user, limit (by name), period,
    /// and ordered by them. The filter's user, start and end apply (to the refusal's minute);
    /// without any key the answer is one row with the total.
    pub fn refusal_summary(
        &self,
        filter: &UsageFilter,
        grouping: RefusalGrouping,
    ) -> Result<Vec<RefusalSummaryRow>, StoreError> {
        let mut clause = UsageWhere::default();
        if let Some(user_id) = &filter.user_id {
            clause = clause.and("user_id = ?", [Value::Text(user_id.as_str().to_owned())]);
        }
        if let Some(start) = filter.start {
            clause = clause.and("minute >= ?", [Value::Integer(start.0)]);
        }
        if let Some(end) = filter.end {
            clause = clause.and("minute < ?", [Value::Integer(end.0)]);
        }
        let period = grouping.period.map(|p| period_start_sql(p, "minute"));
        let columns = [
            grouping.by_user.then_some("user_id"),
            grouping.by_limit.then_some("limit_kind"),
            period.as_deref(),
        ];
        let keys: Vec<&str> = ["1", "2", "3"]
            .into_iter()
            .zip(&columns)
            .filter_map(|(key, column)| column.map(|_| key))
            .collect();
        let selected: Vec<&str> = columns.iter().map(|c| c.unwrap_or("NULL")).collect();
        let sql = format!(
            "SELECT {}, COALESCE(SUM(count), 0) FROM refusals {} {}",
            selected.join(", "),
            clause.sql,
            group_and_order(&keys),
        );
        let conn = self.store.conn()?;
        conn.prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params_from_iter(&clause.params), |row| {
                    Ok(RefusalSummaryRow {
                        user_id: optional_user_id_at(row, 0)?,
                        limit: match row.get_ref(1)? {
                            rusqlite::types::ValueRef::Null => None,
                            _ => Some(limit_kind_at(row, 1)?),
                        },
                        period_start: row.get::<_, Option<i64>>(2)?.map(UnixMillis),
                        count: count_at(row, 3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)
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
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        crate::schema::migrate(&mut conn, &path).unwrap();
        for mask in 0..16u8 {
            let filter = UsageFilter {
                user_id: (mask & 1 != 0).then(|| UserId::parse("alice").unwrap()),
                model: (mask & 2 != 0).then(|| "llama3.2".to_owned()),
                start: (mask & 4 != 0).then_some(UnixMillis(1)),
                end: (mask & 8 != 0).then_some(UnixMillis(5)),
                ..UsageFilter::default()
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

    /// An export batch continues from its cursor on an index, in order: at most the records
    /// of one millisecond are sorted by request id, never the whole range.
    #[test]
    fn batches_read_from_the_cursor_on_an_index_without_sorting_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        crate::schema::migrate(&mut conn, &path).unwrap();
        for mask in 0..8u8 {
            let filter = UsageFilter {
                user_id: (mask & 1 != 0).then(|| UserId::parse("alice").unwrap()),
                model: (mask & 2 != 0).then(|| "llama3.2".to_owned()),
                end: (mask & 4 != 0).then_some(UnixMillis(5)),
                ..UsageFilter::default()
            };
            let clause = UsageWhere::new(&filter).and(
                "created_at >= ? AND (created_at > ? OR request_id > ?)",
                [
                    Value::Integer(1),
                    Value::Integer(1),
                    Value::Text("r".into()),
                ],
            );
            let mut params = clause.params.clone();
            params.push(Value::Integer(10));
            let batch = plan(
                &conn,
                &format!(
                    "SELECT {USAGE_COLUMNS} FROM usage {} ORDER BY created_at, request_id LIMIT ?",
                    clause.sql
                ),
                &params,
            );
            assert!(
                batch.starts_with("SEARCH usage USING INDEX"),
                "{filter:?}: {batch}"
            );
            assert!(batch.contains("created_at>?"), "{filter:?}: {batch}");
            assert!(
                !batch.contains("TEMP B-TREE FOR ORDER BY"),
                "{filter:?}: {batch}"
            );
        }
    }
}
