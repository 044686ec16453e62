use std::sync::Arc;

use aiproxy_domain::{UsageFilter, UsageQuery, UsageStore};
use aiproxy_storage::{StorageError, StoreOptions};

use crate::support::{T0, TestDb, block_on, new_user, record, uid, unavailable_cause};

const THREADS: usize = 64;
const RECORDS_PER_THREAD: usize = 50;

#[test]
fn records_from_many_threads_are_all_committed_and_counted_exactly_in_fewer_transactions() {
    let db = TestDb::new();
    let store = db.open();
    for t in 0..8 {
        store
            .blocking()
            .create_user(new_user(&format!("user{t}")).0)
            .unwrap();
    }
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                // Like a request handler: record, wait for the commit, go on.
                for i in 0..RECORDS_PER_THREAD {
                    let at = T0.plus_millis((t * RECORDS_PER_THREAD + i) as i64);
                    let r = record(&format!("user{}", t % 8), "llama3.2", at, 3, (i % 5) as u64);
                    block_on(store.record_usage(r)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let rows = (THREADS * RECORDS_PER_THREAD) as u64;
    // completion tokens per thread: 10 × (0 + 1 + 2 + 3 + 4) = 100.
    let expected_tokens = rows * 3 + THREADS as u64 * 100;
    let page = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter::default(),
            limit: 1,
            offset: 0,
        })
        .unwrap();
    assert_eq!(page.totals.requests, rows);
    assert_eq!(page.totals.total_tokens, expected_tokens);
    let lifetime: u64 = store
        .blocking()
        .lifetime_tokens()
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(lifetime, expected_tokens);
    let (users, _) = store
        .blocking()
        .list_users(&aiproxy_domain::UserQuery::page(100, 0))
        .unwrap();
    assert_eq!(users.iter().map(|u| u.totals.requests).sum::<u64>(), rows);
    assert!(users.iter().all(|u| u.totals.requests == rows / 8));

    let stats = store.writer_stats();
    assert_eq!(stats.records_committed, rows);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.batches_failed, 0);
    assert!(
        stats.batches_committed * 10 < rows,
        "little batching happened: {} transactions for {rows} records",
        stats.batches_committed
    );
}

#[test]
fn a_record_for_a_missing_user_is_stored_without_failing_its_batch() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    // Journaled together, so they share a batch.
    block_on(store.record_usage(record("alice", "m", T0, 1, 1))).unwrap();
    block_on(store.record_usage(record("ghost", "m", T0, 1, 1))).unwrap();
    block_on(store.record_usage(record("alice", "m", T0.plus_millis(1), 1, 1))).unwrap();
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 4)]
    );
    assert_eq!(store.writer_stats().records_of_deleted_users, 1);
    assert_eq!(store.writer_stats().records_committed, 3);
    let ghost = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter {
                user_id: Some(uid("ghost")),
                ..UsageFilter::default()
            },
            limit: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(ghost.totals.requests, 1);
}

#[test]
fn closing_saves_everything_journaled_then_refuses_new_records() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    let pending: Vec<_> = (0..500)
        .map(|i| store.record_usage(record("alice", "m", T0.plus_millis(i), 1, 0)))
        .collect();
    store.close();
    for commit in pending {
        block_on(commit).unwrap();
    }
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 500)]
    );

    let late = block_on(store.record_usage(record("alice", "m", T0, 1, 0)));
    assert!(matches!(
        unavailable_cause(late),
        StorageError::WriterStopped
    ));
    assert!(matches!(
        unavailable_cause(store.blocking().ping()),
        StorageError::WriterStopped
    ));
    // Reads still work after closing.
    assert_eq!(
        store.blocking().get_user(&uid("alice")).unwrap().id,
        uid("alice")
    );
    store.close();
}

#[test]
fn dropping_the_last_clone_saves_what_is_journaled() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().create_user(new_user("alice").0).unwrap();
    let clone = store.clone();
    let pending: Vec<_> = (0..300)
        .map(|i| clone.record_usage(record("alice", "m", T0.plus_millis(i), 2, 0)))
        .collect();
    drop(clone);
    drop(store);
    for commit in pending {
        block_on(commit).unwrap();
    }
    let store = db.open();
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 600)]
    );
}

#[test]
fn a_batch_size_of_one_writes_one_transaction_per_record() {
    let db = TestDb::new();
    let store = db
        .open_with(StoreOptions {
            max_batch_records: 1,
            ..StoreOptions::default()
        })
        .unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();
    for i in 0..20 {
        block_on(store.record_usage(record("alice", "m", T0.plus_millis(i), 1, 0))).unwrap();
    }
    assert_eq!(
        store.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 20)]
    );
    let stats = store.writer_stats();
    assert_eq!(stats.batches_committed, 20);
    assert_eq!(stats.last_batch_records, 1);
}

#[test]
fn ping_succeeds_on_a_healthy_store() {
    let db = TestDb::new();
    let store = db.open();
    store.blocking().ping().unwrap();
}
