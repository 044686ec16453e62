use aiproxy_domain::{
    Page, UnixMillis, UsageFilter, UsageGrouping, UsageQuery, UsageRecord, UsageStore, UsageTotals,
    UserStore,
};
use aiproxy_storage::SqliteStore;

use crate::support::{DAY_MS, T0, TestDb, new_user, record, record_all, uid};

/// Two users, two models, three days; every record has distinct token counts.
fn seeded() -> (TestDb, SqliteStore, Vec<UsageRecord>) {
    let db = TestDb::new();
    let store = db.open();
    for id in ["alice", "bob"] {
        store.create_user(new_user(id).0).unwrap();
    }
    let mut records = Vec::new();
    for day in 0..3 {
        for i in 0..4 {
            let at = T0.plus_millis(day * DAY_MS + i * 1000);
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            let model = if i < 2 { "llama3.2" } else { "moondream" };
            records.push(record(user, model, at, (10 * day + i) as u64, 1));
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
            user_id: Some(uid("bob")),
            model: Some("llama3.2".into()),
            start: Some(start),
            end: Some(end),
        },
        &|r| {
            r.user_id.as_str() == "bob"
                && r.model == "llama3.2"
                && r.created_at >= start
                && r.created_at < end
        },
    );
}

#[test]
fn summaries_group_by_the_chosen_keys_in_key_order() {
    let (_db, store, records) = seeded();
    let summary = |grouping| {
        store
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
    assert_eq!(by_model[0].day, None);
    assert_eq!(
        by_model[0].totals,
        totals_of(records.iter().filter(|r| r.model == "llama3.2"))
    );
    assert_eq!(
        by_model[1].totals,
        totals_of(records.iter().filter(|r| r.model == "moondream"))
    );

    let by_day = summary(UsageGrouping {
        by_day: true,
        ..Default::default()
    });
    let days: Vec<_> = by_day.iter().map(|r| r.day.clone().unwrap()).collect();
    assert_eq!(days, ["2023-11-14", "2023-11-15", "2023-11-16"]);
    assert!(by_day.iter().all(|r| r.totals.requests == 4));

    let by_user_and_day = summary(UsageGrouping {
        by_user: true,
        by_day: true,
        ..Default::default()
    });
    let keys: Vec<_> = by_user_and_day
        .iter()
        .map(|r| {
            (
                r.user_id.clone().unwrap().to_string(),
                r.day.clone().unwrap(),
                r.totals.requests,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("alice".to_owned(), "2023-11-14".to_owned(), 2),
            ("alice".to_owned(), "2023-11-15".to_owned(), 2),
            ("alice".to_owned(), "2023-11-16".to_owned(), 2),
            ("bob".to_owned(), "2023-11-14".to_owned(), 2),
            ("bob".to_owned(), "2023-11-15".to_owned(), 2),
            ("bob".to_owned(), "2023-11-16".to_owned(), 2),
        ]
    );

    let everything = summary(UsageGrouping::default());
    assert_eq!(everything.len(), 1);
    assert_eq!(everything[0].totals, totals_of(&records));

    let filtered = store
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
fn for_each_hands_records_oldest_first_and_stops_when_asked() {
    let (_db, store, records) = seeded();
    let mut seen = Vec::new();
    store
        .for_each_usage(&UsageFilter::default(), &mut |r| {
            seen.push(r);
            true
        })
        .unwrap();
    assert_eq!(seen, records);

    let mut calls = 0;
    store
        .for_each_usage(
            &UsageFilter {
                user_id: Some(uid("alice")),
                ..Default::default()
            },
            &mut |r| {
                assert_eq!(r.user_id, uid("alice"));
                calls += 1;
                calls < 3
            },
        )
        .unwrap();
    assert_eq!(calls, 3);
}

#[test]
fn events_since_cover_records_at_or_after_the_instant_in_time_order() {
    let (_db, store, records) = seeded();
    let since = T0.plus_millis(2 * DAY_MS);
    let events = store.usage_events_since(since).unwrap();
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
        store.create_user(new_user(id).0).unwrap();
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
    let events = store.usage_events_since(T0).unwrap();
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
    let lifetime_before = store.lifetime_tokens().unwrap();
    let (listed_before, _) = store
        .list_users(Page {
            limit: 10,
            offset: 0,
        })
        .unwrap();

    let cutoff = T0.plus_millis(DAY_MS);
    let deleted = store.delete_usage_before(cutoff).unwrap();
    assert_eq!(
        deleted,
        records.iter().filter(|r| r.created_at < cutoff).count() as u64
    );

    let remaining = page(&store, UsageFilter::default(), 100, 0);
    assert_eq!(remaining.records.len(), records.len() - deleted as usize);
    assert!(remaining.records.iter().all(|r| r.created_at >= cutoff));
    assert_eq!(store.lifetime_tokens().unwrap(), lifetime_before);
    let (listed_after, _) = store
        .list_users(Page {
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(listed_after, listed_before);
    assert_eq!(store.delete_usage_before(cutoff).unwrap(), 0);
}

#[test]
fn deleting_more_rows_than_one_chunk_deletes_them_all() {
    let db = TestDb::new();
    let store = db.open();
    store.create_user(new_user("alice").0).unwrap();
    record_all(
        &store,
        (0..25_000).map(|i| record("alice", "m", UnixMillis(i), 1, 0)),
    );
    record_all(&store, [record("alice", "m", UnixMillis(1_000_000), 1, 0)]);
    assert_eq!(
        store.delete_usage_before(UnixMillis(1_000_000)).unwrap(),
        25_000
    );
    assert_eq!(
        page(&store, UsageFilter::default(), 10, 0).totals.requests,
        1
    );
    assert_eq!(store.lifetime_tokens().unwrap(), [(uid("alice"), 25_001)]);
}

#[test]
fn users_without_usage_have_zero_lifetime_tokens() {
    let db = TestDb::new();
    let store = db.open();
    store.create_user(new_user("zed").0).unwrap();
    assert_eq!(store.lifetime_tokens().unwrap(), [(uid("zed"), 0)]);
}
