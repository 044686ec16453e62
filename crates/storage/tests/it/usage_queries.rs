use aiproxy_domain::{
    Endpoint, LimitKind, Period, RefusalCount, RefusalGrouping, UnixMillis, UsageCursor,
    UsageFilter, UsageGrouping, UsageQuery, UsageRecord, UsageStore, UsageTotals, days_from_civil,
};
use aiproxy_storage::SqliteStore;

use crate::support::{DAY_MS, T0, TestDb, block_on, new_user, record, record_all, uid};

/// Two users, two models, two endpoints, a backend or none, three days; every record has
/// distinct token counts.
fn seeded() -> (TestDb, SqliteStore, Vec<UsageRecord>) {
    let db = TestDb::new();
    let store = db.open();
    for id in ["alice", "bob"] {
        store.blocking().create_user(new_user(id).0).unwrap();
    }
    let mut records = Vec::new();
    for day in 0..3 {
        for i in 0..4 {
            let at = T0.plus_millis(day * DAY_MS + i * 1000);
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            let model = if i < 2 { "llama3.2" } else { "moondream" };
            let mut r = record(user, model, at, (10 * day + i) as u64, 1);
            r.endpoint = if i == 3 {
                Endpoint::OllamaChat
            } else {
                Endpoint::ChatCompletions
            };
            r.backend = (i % 3 == 0).then(|| format!("gpu-{}", day % 2));
            r.client_request_id = (i == 1).then(|| format!("client-{day}"));
            records.push(r);
        }
    }
    record_all(&store, records.clone());
    (db, store, records)
}

fn totals_of<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> UsageTotals {
    let mut totals = UsageTotals::default();
    for r in records {
        totals.add(r);
    }
    totals
}

fn page(
    store: &SqliteStore,
    filter: UsageFilter,
    limit: u32,
    offset: u64,
) -> aiproxy_domain::UsagePage {
    store
        .blocking()
        .usage_page(&UsageQuery {
            filter,
            limit,
            offset,
        })
        .unwrap()
}

#[test]
fn a_page_is_newest_first_with_totals_over_the_whole_filter() {
    let (_db, store, records) = seeded();
    let mut newest_first = records.clone();
    newest_first.reverse();

    let first = page(&store, UsageFilter::default(), 5, 0);
    assert_eq!(first.totals, totals_of(&records));
    assert_eq!(first.records, newest_first[..5]);
    let second = page(&store, UsageFilter::default(), 5, 5);
    assert_eq!(second.records, newest_first[5..10]);
    assert_eq!(second.totals, first.totals);
    let last = page(&store, UsageFilter::default(), 5, 10);
    assert_eq!(last.records, newest_first[10..]);
    assert!(
        page(&store, UsageFilter::default(), 5, 12)
            .records
            .is_empty()
    );
}

#[test]
fn filters_narrow_by_user_model_and_half_open_time_range() {
    let (_db, store, records) = seeded();
    let check = |filter: UsageFilter, keep: &dyn Fn(&UsageRecord) -> bool| {
        let expected: Vec<_> = records.iter().filter(|r| keep(r)).rev().cloned().collect();
        assert!(
            !expected.is_empty() && expected.len() < records.len(),
            "{filter:?} is not selective"
        );
        let got = page(&store, filter.clone(), 100, 0);
        assert_eq!(got.records, expected, "{filter:?}");
        assert_eq!(got.totals, totals_of(&expected), "{filter:?}");
    };

    check(
        UsageFilter {
            user_id: Some(uid("alice")),
            ..Default::default()
        },
        &|r| r.user_id.as_str() == "alice",
    );
    check(
        UsageFilter {
            model: Some("moondream".into()),
            ..Default::default()
        },
        &|r| r.model == "moondream",
    );
    let start = T0.plus_millis(DAY_MS + 1000);
    let end = T0.plus_millis(2 * DAY_MS + 2000);
    check(
        UsageFilter {
            start: Some(start),
            ..Default::default()
        },
        &|r| r.created_at >= start,
    );
    check(
        UsageFilter {
            end: Some(end),
            ..Default::default()
        },
        &|r| r.created_at < end,
    );
    check(
        UsageFilter {
            endpoint: Some(Endpoint::OllamaChat),
            ..Default::default()
        },
        &|r| r.endpoint == Endpoint::OllamaChat,
    );
    check(
        UsageFilter {
            backend: Some("gpu-1".into()),
            ..Default::default()
        },
        &|r| r.backend.as_deref() == Some("gpu-1"),
    );
    check(
        UsageFilter {
            user_id: Some(uid("bob")),
            model: Some("llama3.2".into()),
            start: Some(start),
            end: Some(end),
            ..Default::default()
        },
        &|r| {
            r.user_id.as_str() == "bob"
                && r.model == "llama3.2"
                && r.created_at >= start
                && r.created_at < end
        },
    );
}

/// The first millisecond of a UTC day.
fn day_start(year: i64, month: u32, day: u32) -> UnixMillis {
    UnixMillis(days_from_civil(year, month, day) * DAY_MS)
}

#[test]
fn summaries_group_by_the_chosen_keys_in_key_order() {
    let (_db, store, records) = seeded();
    let summary = |grouping| {
        store
            .blocking()
            .usage_summary(&UsageFilter::default(), grouping)
            .unwrap()
    };

    let by_model = summary(UsageGrouping {
        by_model: true,
        ..Default::default()
    });
    assert_eq!(by_model.len(), 2);
    assert_eq!(by_model[0].model.as_deref(), Some("llama3.2"));
    assert_eq!(by_model[0].user_id, None);
    assert_eq!(by_model[0].period_start, None);
    assert_eq!(
        by_model[0].totals,
        totals_of(records.iter().filter(|r| r.model == "llama3.2"))
    );
    assert_eq!(
        by_model[1].totals,
        totals_of(records.iter().filter(|r| r.model == "moondream"))
    );

    let by_day = summary(UsageGrouping {
        period: Some(Period::Day),
        ..Default::default()
    });
    let days: Vec<_> = by_day.iter().map(|r| r.period_start.unwrap()).collect();
    assert_eq!(
        days,
        [
            day_start(2023, 11, 14),
            day_start(2023, 11, 15),
            day_start(2023, 11, 16)
        ]
    );
    assert!(by_day.iter().all(|r| r.totals.requests == 4));

    let by_user_and_day = summary(UsageGrouping {
        by_user: true,
        period: Some(Period::Day),
        ..Default::default()
    });
    let keys: Vec<_> = by_user_and_day
        .iter()
        .map(|r| {
            (
                r.user_id.clone().unwrap().to_string(),
                r.period_start.unwrap(),
                r.totals.requests,
            )
        })
        .collect();
    let expected: Vec<_> = ["alice", "bob"]
        .into_iter()
        .flat_map(|user| (14..17).map(move |day| (user.to_owned(), day_start(2023, 11, day), 2)))
        .collect();
    assert_eq!(keys, expected);

    let by_endpoint_and_backend = summary(UsageGrouping {
        by_endpoint: true,
        by_backend: true,
        ..Default::default()
    });
    let keys: Vec<_> = by_endpoint_and_backend
        .iter()
        .map(|r| (r.endpoint.unwrap(), r.backend.clone(), r.totals))
        .collect();
    let group = |endpoint: Endpoint, backend: Option<&str>| {
        let totals = totals_of(
            records
                .iter()
                .filter(|r| r.endpoint == endpoint && r.backend.as_deref() == backend),
        );
        (endpoint, backend.map(str::to_owned), totals)
    };
    // Ordered by route, then backend (records with none first, as one group).
    assert_eq!(
        keys,
        [
            group(Endpoint::OllamaChat, Some("gpu-0")),
            group(Endpoint::OllamaChat, Some("gpu-1")),
            group(Endpoint::ChatCompletions, None),
            group(Endpoint::ChatCompletions, Some("gpu-0")),
            group(Endpoint::ChatCompletions, Some("gpu-1")),
        ]
    );

    let everything = summary(UsageGrouping::default());
    assert_eq!(everything.len(), 1);
    assert_eq!(everything[0].totals, totals_of(&records));

    let filtered = store
        .blocking()
        .usage_summary(
            &UsageFilter {
                user_id: Some(uid("bob")),
                ..Default::default()
            },
            UsageGrouping {
                by_user: true,
                by_model: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.len(), 2);
    assert!(filtered.iter().all(|r| r.user_id == Some(uid("bob"))));

    let nothing = store
        .blocking()
        .usage_summary(
            &UsageFilter {
                model: Some("absent".into()),
                ..Default::default()
            },
            UsageGrouping::default(),
        )
        .unwrap();
    assert_eq!(nothing.len(), 1);
    assert_eq!(nothing[0].totals, UsageTotals::default());
}

#[test]
fn periods_start_at_their_first_utc_millisecond_across_hour_day_and_month_edges() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    let hour = 3_600_000;
    let feb = day_start(2024, 2, 1);
    let mar = day_start(2024, 3, 1);
    let times = [
        feb.plus_millis(-1),       // 2024-01-31T23:59:59.999Z
        feb,                       // 2024-02-01T00:00:00.000Z
        feb.plus_millis(hour - 1), // still the first hour of February
        mar.plus_millis(-1),       // 2024-02-29T23:59:59.999Z (a leap year)
        mar.plus_millis(hour),     // 2024-03-01T01:00:00.000Z
        UnixMillis(-1),            // 1969-12-31T23:59:59.999Z
    ];
    record_all(
        &store,
        times
            .iter()
            .enumerate()
            .map(|(i, at)| record("alice", "m", *at, i as u64, 0)),
    );
    let starts = |period| -> Vec<(UnixMillis, u64)> {
        store
            .blocking()
            .usage_summary(
                &UsageFilter::default(),
                UsageGrouping {
                    period: Some(period),
                    ..Default::default()
                },
            )
            .unwrap()
            .into_iter()
            .map(|row| (row.period_start.unwrap(), row.totals.requests))
            .collect()
    };
    assert_eq!(
        starts(Period::Hour),
        [
            (UnixMillis(-hour), 1),
            (feb.plus_millis(-hour), 1),
            (feb, 2),
            (mar.plus_millis(-hour), 1),
            (mar.plus_millis(hour), 1),
        ]
    );
    assert_eq!(
        starts(Period::Day),
        [
            (UnixMillis(-DAY_MS), 1),
            (day_start(2024, 1, 31), 1),
            (feb, 2),
            (day_start(2024, 2, 29), 1),
            (mar, 1),
        ]
    );
    assert_eq!(
        starts(Period::Month),
        [
            (day_start(1969, 12, 1), 1),
            (day_start(2024, 1, 1), 1),
            (feb, 3),
            (mar, 1),
        ]
    );
    // Every start is where the domain's own arithmetic puts it.
    for period in [Period::Hour, Period::Day, Period::Month] {
        for (start, _) in starts(period) {
            assert_eq!(period.start_of(start), start, "{period:?}");
        }
    }
}

/// Reads the whole filter batch after batch, as the export does.
fn read_in_batches(store: &SqliteStore, filter: &UsageFilter, size: u32) -> Vec<UsageRecord> {
    let mut all = Vec::new();
    let mut cursor: Option<UsageCursor> = None;
    loop {
        let batch = store
            .blocking()
            .usage_batch(filter, cursor.as_ref(), size)
            .unwrap();
        assert!(batch.len() <= size as usize);
        let Some(last) = batch.last() else {
            return all;
        };
        cursor = Some(UsageCursor {
            created_at: last.created_at,
            request_id: last.request_id.clone(),
        });
        all.extend(batch);
    }
}

#[test]
fn batches_hand_every_record_once_oldest_first_whatever_the_batch_size() {
    let (_db, store, records) = seeded();
    for size in [1, 2, 5, 12, 100] {
        assert_eq!(
            read_in_batches(&store, &UsageFilter::default(), size),
            records,
            "batches of {size}"
        );
    }
    let alice = UsageFilter {
        user_id: Some(uid("alice")),
        ..Default::default()
    };
    let expected: Vec<_> = records
        .iter()
        .filter(|r| r.user_id == uid("alice"))
        .cloned()
        .collect();
    assert_eq!(read_in_batches(&store, &alice, 2), expected);
}

#[test]
fn batches_order_records_of_the_same_millisecond_by_request_id_and_skip_none() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    // Journaled in an order unlike their request ids, ten sharing each millisecond.
    let records: Vec<UsageRecord> = (0..30)
        .map(|i| {
            let mut r = record("alice", "m", T0.plus_millis(i % 3), i as u64, 0);
            r.request_id = format!("id-{:02}", (i * 7) % 30);
            r
        })
        .collect();
    record_all(&store, records.clone());
    let mut expected = records;
    expected.sort_by(|a, b| (a.created_at, &a.request_id).cmp(&(b.created_at, &b.request_id)));
    for size in [1, 4, 7] {
        assert_eq!(
            read_in_batches(&store, &UsageFilter::default(), size),
            expected
        );
    }
    // A cursor past every record of its millisecond continues with the next millisecond.
    let cursor = UsageCursor {
        created_at: T0.plus_millis(2),
        request_id: "id-99".into(),
    };
    let late = record("alice", "m", T0.plus_millis(5), 1, 1);
    record_all(&store, [late.clone()]);
    let after = store
        .blocking()
        .usage_batch(&UsageFilter::default(), Some(&cursor), 10)
        .unwrap();
    assert_eq!(after, [late]);
}

#[test]
fn the_async_methods_answer_like_the_blocking_ones() {
    let (_db, store, records) = seeded();
    let filter = UsageFilter::default();
    assert_eq!(
        block_on(store.usage_batch(&filter, None, 100)).unwrap(),
        records
    );
    let query = UsageQuery {
        filter: filter.clone(),
        limit: 3,
        offset: 0,
    };
    assert_eq!(
        block_on(store.usage_page(&query)).unwrap(),
        store.blocking().usage_page(&query).unwrap()
    );
    let grouping = UsageGrouping {
        by_user: true,
        period: Some(Period::Month),
        ..Default::default()
    };
    assert_eq!(
        block_on(store.usage_summary(&filter, grouping)).unwrap(),
        store.blocking().usage_summary(&filter, grouping).unwrap()
    );
    assert_eq!(
        block_on(store.lifetime_tokens()).unwrap(),
        store.blocking().lifetime_tokens().unwrap()
    );
    assert_eq!(
        block_on(store.usage_events_since(T0)).unwrap(),
        store.blocking().usage_events_since(T0).unwrap()
    );
}

#[test]
fn refusal_counts_add_up_per_user_limit_and_minute() {
    let db = TestDb::new();
    let store = db.open();
    let refused = |user: &str, limit, at: UnixMillis, count| RefusalCount {
        user_id: uid(user),
        limit,
        minute: at,
        count,
    };
    let minute = UnixMillis(T0.0 - T0.0 % 60_000);
    block_on(store.record_refusals(vec![
        refused("alice", LimitKind::RequestsPerMinute, minute, 3),
        refused(
            "alice",
            LimitKind::RequestsPerMinute,
            minute.plus_millis(59_999),
            2,
        ),
        refused("alice", LimitKind::TokensPerDay, minute, 1),
        refused(
            "bob",
            LimitKind::RequestsPerMinute,
            minute.plus_millis(60_000),
            7,
        ),
    ]))
    .unwrap();
    // Counts add up across calls too (a proxy flushes its counters now and then).
    block_on(store.record_refusals(vec![refused(
        "alice",
        LimitKind::RequestsPerMinute,
        minute,
        10,
    )]))
    .unwrap();
    block_on(store.record_refusals(Vec::new())).unwrap();
    let rows: i64 = db
        .raw()
        .query_row("SELECT count(*) FROM refusals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3, "one row per user, limit and minute");

    type Row = (Option<String>, Option<LimitKind>, Option<UnixMillis>, u64);
    let summary = |filter: &UsageFilter, grouping| -> Vec<Row> {
        block_on(store.refusal_summary(filter, grouping))
            .unwrap()
            .into_iter()
            .map(|row| {
                (
                    row.user_id.map(|u| u.to_string()),
                    row.limit,
                    row.period_start,
                    row.count,
                )
            })
            .collect()
    };
    let all = UsageFilter::default();
    let hour = Some(Period::Hour.start_of(minute));
    let alice = Some("alice".to_owned());
    assert_eq!(
        summary(
            &all,
            RefusalGrouping {
                by_user: true,
                by_limit: true,
                period: Some(Period::Hour),
            }
        ),
        [
            (alice.clone(), Some(LimitKind::RequestsPerMinute), hour, 15),
            (alice, Some(LimitKind::TokensPerDay), hour, 1),
            (
                Some("bob".into()),
                Some(LimitKind::RequestsPerMinute),
                hour,
                7
            ),
        ]
    );
    assert_eq!(
        summary(&all, RefusalGrouping::default()),
        [(None, None, None, 23)]
    );
    let bob_later = UsageFilter {
        user_id: Some(uid("bob")),
        start: Some(minute.plus_millis(60_000)),
        ..Default::default()
    };
    assert_eq!(
        summary(
            &bob_later,
            RefusalGrouping {
                by_limit: true,
                ..Default::default()
            }
        ),
        [(None, Some(LimitKind::RequestsPerMinute), None, 7)]
    );
    let first_minute = UsageFilter {
        end: Some(minute.plus_millis(60_000)),
        ..Default::default()
    };
    assert_eq!(
        summary(&first_minute, RefusalGrouping::default()),
        [(None, None, None, 16)]
    );

    // Retention takes old refusals along with old usage.
    assert_eq!(
        store
            .blocking()
            .delete_usage_before(minute.plus_millis(60_000))
            .unwrap(),
        0
    );
    assert_eq!(
        summary(&all, RefusalGrouping::default()),
        [(None, None, None, 7)]
    );
}

#[test]
fn events_since_cover_records_at_or_after_the_instant_in_time_order() {
    let (_db, store, records) = seeded();
    let since = T0.plus_millis(2 * DAY_MS);
    let events = store.blocking().usage_events_since(since).unwrap();
    let expected: Vec<_> = records.iter().filter(|r| r.created_at >= since).collect();
    assert_eq!(events.len(), expected.len());
    for (event, record) in events.iter().zip(expected) {
        assert_eq!(event.user_id, record.user_id);
        assert_eq!(event.at, record.created_at);
        assert_eq!(event.total_tokens, record.total_tokens());
        assert_eq!(event.requests, 1, "one record per second here");
    }
}

#[test]
fn events_merge_a_users_requests_of_the_same_second() {
    let db = TestDb::new();
    let store = db.open();
    for id in ["alice", "bob"] {
        store.blocking().create_user(new_user(id).0).unwrap();
    }
    // T0 starts a second.
    assert_eq!(T0.0 % 1000, 0);
    let second = T0.plus_millis(5_000);
    record_all(
        &store,
        vec![
            record("alice", "llama3.2", second.plus_millis(100), 1, 1),
            record("bob", "llama3.2", second.plus_millis(200), 10, 10),
            record("alice", "llama3.2", second.plus_millis(300), 2, 2),
            record("alice", "moondream", second.plus_millis(999), 3, 3),
            record("alice", "llama3.2", second.plus_millis(1_000), 4, 4),
        ],
    );
    let events = store.blocking().usage_events_since(T0).unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.user_id.as_str(), e.at, e.requests, e.total_tokens))
        .collect();
    assert_eq!(
        summary,
        [
            ("alice", second, 3, 12),
            ("bob", second.plus_millis(200), 1, 20),
            ("alice", second.plus_millis(1_000), 1, 8),
        ]
    );
}

#[test]
fn deleting_old_usage_keeps_lifetime_totals() {
    let (_db, store, records) = seeded();
    let lifetime_before = store.blocking().lifetime_tokens().unwrap();
    let (listed_before, _) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(10, 0))
        .unwrap();

    let cutoff = T0.plus_millis(DAY_MS);
    let deleted = store.blocking().delete_usage_before(cutoff).unwrap();
    assert_eq!(
        deleted,
        records.iter().filter(|r| r.created_at < cutoff).count() as u64
    );

    let remaining = page(&store, UsageFilter::default(), 100, 0);
    assert_eq!(remaining.records.len(), records.len() - deleted as usize);
    assert!(remaining.records.iter().all(|r| r.created_at >= cutoff));
    assert_eq!(store.blocking().lifetime_tokens().unwrap(), lifetime_before);
    let (listed_after, _) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(10, 0))
        .unwrap();
    assert_eq!(listed_after, listed_before);
    assert_eq!(store.blocking().delete_usage_before(cutoff).unwrap(), 0);
}

#[test]
fn deleting_more_rows_than_one_chunk_deletes_them_all() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    record_all(
        &store,
        (0..25_000).map(|i| record("alice", "m", UnixMillis(i), 1, 0)),
    );
    record_all(&store, [record("alice", "m", UnixMillis(1_000_000), 1, 0)]);
    assert_eq!(
        store
            .blocking()
            .delete_usage_before(UnixMillis(1_000_000))
            .unwrap(),
        25_000
    );
    assert_eq!(
        page(&store, UsageFilter::default(), 10, 0).totals.requests,
        1
    );
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 25_001)]
    );
}

#[test]
fn users_without_usage_have_zero_lifetime_tokens() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("zed").0).unwrap();
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("zed"), 0)]
    );
}
