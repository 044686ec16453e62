//! The usage journal: what a killed process left behind is replayed exactly once.
//!
//! A "crash" here is a copy of the database and journal files taken while the store is alive
//! and has nothing in flight in SQLite (the ingest interval is an hour, so records stay
//! journaled): exactly what a SIGKILL at that moment would leave on disk.

use std::path::Path;
use std::time::Duration;

use aiproxy_domain::{UsageFilter, UsageQuery, UsageStore};
use aiproxy_storage::{SqliteStore, StorageError, StoreOptions};

use crate::support::{T0, TestDb, block_on, new_user, record, uid, unavailable_cause};

fn lazy() -> StoreOptions {
    StoreOptions {
        ingest_interval: Duration::from_secs(3600),
        max_batch_records: 1_000_000,
        ..StoreOptions::default()
    }
}

fn journal_of(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-usage");
    name.into()
}

/// Copies the files a killed process would leave: the database, its WAL and the journal.
fn crash_copy(db: &TestDb) -> TestDb {
    let copy = TestDb::new();
    for suffix in ["", "-wal", "-usage"] {
        let mut from = db.path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = copy.path.as_os_str().to_owned();
        to.push(suffix);
        if Path::new(&from).exists() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
    copy
}

fn request_ids(store: &SqliteStore) -> Vec<String> {
    let mut ids: Vec<String> = store
        .blocking()
        .usage_page(&UsageQuery {
            filter: UsageFilter::default(),
            limit: 1000,
            offset: 0,
        })
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn records_journaled_before_a_crash_are_saved_exactly_once_on_the_next_start() {
    let db = TestDb::new();
    let store = db.open_with(lazy()).unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();
    for i in 0..3 {
        block_on(store.record_usage(record("alice", "m", T0.plus_millis(i), 1, 1))).unwrap();
    }
    assert_eq!(store.writer_stats().queued, 3, "nothing ingested yet");

    let first_crash = crash_copy(&db);
    let restarted = first_crash.open();
    assert_eq!(request_ids(&restarted).len(), 3);
    assert_eq!(
        restarted.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 6)]
    );
    drop(restarted);
    // Opening again replays nothing twice.
    assert_eq!(request_ids(&first_crash.open()).len(), 3);

    // The live store ingests the three (a read asks for them), journals two more, and
    // crashes: the copy holds the three in SQLite and the two in the journal only.
    assert_eq!(request_ids(&store).len(), 3);
    for i in 3..5 {
        block_on(store.record_usage(record("alice", "m", T0.plus_millis(i), 1, 1))).unwrap();
    }
    let second_crash = crash_copy(&db);
    let restarted = second_crash.open();
    assert_eq!(request_ids(&restarted).len(), 5);
    assert_eq!(
        restarted.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 10)]
    );
    assert_eq!(
        restarted
            .blocking()
            .list_users(&aiproxy_domain::UserQuery::page(10, 0))
            .unwrap()
            .0[0]
            .totals
            .requests,
        5
    );
}

#[test]
fn a_line_cut_short_by_a_crash_is_ignored_and_the_file_stays_usable() {
    let db = TestDb::new();
    let store = db.open_with(lazy()).unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();
    block_on(store.record_usage(record("alice", "m", T0, 1, 1))).unwrap();
    let crash = crash_copy(&db);
    drop(store);
    // Half a line at the end, as a power cut mid-append could leave.
    let journal = journal_of(&crash.path);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"{\"id\":\"req-half\",\"user\":\"ali");
    std::fs::write(&journal, bytes).unwrap();

    let store = crash.open();
    assert_eq!(request_ids(&store).len(), 1);
    block_on(store.record_usage(record("alice", "m", T0.plus_millis(1), 1, 1))).unwrap();
    drop(store);
    let store = crash.open();
    assert_eq!(request_ids(&store).len(), 2);
}

#[test]
fn closing_ingests_everything_and_leaves_only_a_header_in_the_journal() {
    let db = TestDb::new();
    let store = db.open_with(lazy()).unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();
    for i in 0..100 {
        block_on(store.record_usage(record("alice", "m", T0.plus_millis(i), 1, 1))).unwrap();
    }
    assert!(std::fs::metadata(journal_of(&db.path)).unwrap().len() > 10_000);
    store.close();
    assert_eq!(request_ids(&store).len(), 100);
    drop(store);
    let store = db.open();
    assert_eq!(request_ids(&store).len(), 100);
    let journal = std::fs::read_to_string(journal_of(&db.path)).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
}

#[test]
fn a_second_server_is_refused_and_an_admin_tool_reads_without_recording_usage() {
    let db = TestDb::new();
    let server = db.open();
    server.blocking().create_user(new_user("alice").0).unwrap();
    block_on(server.record_usage(record("alice", "m", T0, 1, 1))).unwrap();

    // A second server is refused outright...
    assert!(matches!(
        db.open_with(StoreOptions::default()),
        Err(StorageError::JournalInUse)
    ));
    // ...an admin tool may share the file, without recording usage.
    let cli = db
        .open_with(StoreOptions {
            share_usage_journal: true,
            ..StoreOptions::default()
        })
        .unwrap();
    let cause = unavailable_cause(block_on(cli.record_usage(record("alice", "m", T0, 1, 1))));
    assert!(matches!(cause, StorageError::JournalInUse), "{cause:?}");
    // It sees what the owner has ingested (the owner's read asks for it first).
    assert_eq!(request_ids(&server).len(), 1);
    assert_eq!(request_ids(&cli).len(), 1);
    assert_eq!(
        cli.blocking().get_user(&uid("alice")).unwrap().id,
        uid("alice")
    );
}

#[test]
fn under_steady_load_the_journal_starts_afresh_with_what_is_pending_and_loses_nothing() {
    let db = TestDb::new();
    let store = db
        .open_with(StoreOptions {
            ingest_interval: Duration::from_secs(3600),
            max_batch_records: 1000,
            ..StoreOptions::default()
        })
        .unwrap();
    store.blocking().create_user(new_user("alice").0).unwrap();
    // About 3 MB of lines; every 1,000 pending records wake the writer while appends go on,
    // so it rotates with records still pending.
    let total = 20_500;
    for i in 0..total {
        block_on(store.record_usage(record("alice", "m", T0.plus_millis(i), 1, 1))).unwrap();
    }
    // Let the writer finish what woke it: it commits whole batches while one waits, and what
    // is left below a batch stays journaled until the (hour-long) interval. Settled once every
    // record is either committed or queued (none in a batch being written), less than a batch
    // is queued, and the journal was started afresh after the last batch.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let settled = loop {
        let stats = store.writer_stats();
        let journal_len = std::fs::metadata(journal_of(&db.path)).unwrap().len();
        if stats.records_committed + stats.queued == total as u64
            && stats.queued < 1000
            && journal_len < 2 << 20
        {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer did not settle with a short journal: {stats:?}, journal {journal_len} bytes"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(settled.queued > 0, "something must still be pending");

    let restarted = crash_copy(&db).open();
    assert_eq!(
        restarted.blocking().lifetime_tokens().unwrap(),
        [(uid("alice"), 2 * total as u64)]
    );
    assert_eq!(
        restarted
            .blocking()
            .usage_page(&UsageQuery {
                filter: UsageFilter::default(),
                limit: 1,
                offset: 0,
            })
            .unwrap()
            .totals
            .requests,
        total as u64
    );
}

#[test]
fn closing_frees_the_journal_for_the_next_server_while_clones_still_live() {
    let db = TestDb::new();
    let first = db.open();
    first.blocking().create_user(new_user("alice").0).unwrap();
    block_on(first.record_usage(record("alice", "m", T0, 1, 1))).unwrap();
    // A clone held somewhere else (a worker thread still winding down) outlives the close.
    let lingering = first.clone();
    first.close();
    let next = db
        .open_with(StoreOptions::default())
        .expect("the closed store released the journal");
    assert_eq!(request_ids(&next).len(), 1);
    // The closed store records nothing more, so the two never append to the same file.
    let late = record("alice", "m", T0.plus_millis(1), 1, 1);
    let cause = unavailable_cause(block_on(lingering.record_usage(late)));
    assert!(matches!(cause, StorageError::WriterStopped), "{cause:?}");
}
