//! Issue 17.10: a database that cannot be opened says why, in its error's source chain: a
//! directory, a file that is not a database, a lock held by another process, permissions.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use aiproxy_storage::{OpenCause, SqliteStore, StorageError, StoreOptions};

use crate::support::TestDb;

/// The error and its sources, joined as the binary prints them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The cause behind an open or migration failure.
fn cause_of(error: &StorageError) -> &OpenCause {
    match error {
        StorageError::Open { source, .. } | StorageError::Migration { source, .. } => source,
        other => panic!("not an open failure: {other:?}"),
    }
}

fn quick() -> StoreOptions {
    StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..StoreOptions::default()
    }
}

#[test]
fn a_directory_is_named_as_one() {
    let db = TestDb::new();
    std::fs::create_dir(&db.path).unwrap();
    let error = SqliteStore::open(&db.path, quick()).unwrap_err();
    assert!(
        matches!(cause_of(&error), OpenCause::IsADirectory),
        "{error:?}"
    );
    let text = chain(&error);
    assert!(text.starts_with("cannot open the database "), "{text}");
    assert!(text.contains("is a directory"), "{text}");
}

#[test]
fn a_file_that_is_not_a_database_is_named_as_such() {
    let db = TestDb::new();
    std::fs::write(&db.path, vec![b'x'; 8192]).unwrap();
    let error = SqliteStore::open(&db.path, quick()).unwrap_err();
    assert!(
        matches!(cause_of(&error), OpenCause::NotADatabase(_)),
        "{error:?}"
    );
    assert!(
        chain(&error).contains("not a SQLite database"),
        "{}",
        chain(&error)
    );
}

#[test]
fn a_lock_held_by_another_process_is_named_as_such() {
    let db = TestDb::new();
    // A database in SQLite's default rollback mode with a write transaction open in another
    // connection (a `sqlite3` shell left in BEGIN EXCLUSIVE): switching to WAL must wait.
    let other = db.raw();
    other
        .execute_batch("CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .unwrap();
    let error = SqliteStore::open(&db.path, quick()).unwrap_err();
    assert!(
        matches!(cause_of(&error), OpenCause::Locked(_)),
        "{error:?}"
    );
    assert!(
        chain(&error).contains("locked by another process"),
        "{}",
        chain(&error)
    );
    other.execute_batch("ROLLBACK").unwrap();
    // Once the lock is gone the same file opens.
    drop(SqliteStore::open(&db.path, quick()).unwrap());
}

#[test]
fn a_current_database_opens_while_another_process_holds_its_write_lock() {
    let db = TestDb::new();
    drop(db.open());
    let other = db.raw();
    other
        .execute_batch("BEGIN IMMEDIATE; UPDATE users SET disabled = disabled;")
        .unwrap();
    // Nothing to migrate, so no write lock is needed to open (writes wait as usual).
    let store = SqliteStore::open(&db.path, quick()).unwrap();
    other.execute_batch("COMMIT").unwrap();
    store.blocking().ping().unwrap();
}

const CHILD: &str = "AIPROXY_TEST_OPEN_AS_ANOTHER_USER";
const NOBODY: u32 = 65_534;

/// Whether this process runs as root (the owner of a file it creates), for whom permissions
/// do not apply.
fn running_as_root(db: &TestDb) -> bool {
    let probe = db.dir.path().join("owner-probe");
    std::fs::write(&probe, b"").unwrap();
    std::fs::metadata(&probe).unwrap().uid() == 0
}

#[test]
fn permission_denied_is_named_as_such() {
    // The child role: run as another user by the parent role below.
    if let Some(path) = std::env::var_os(CHILD) {
        let error = SqliteStore::open(std::path::Path::new(&path), quick()).unwrap_err();
        assert!(
            matches!(cause_of(&error), OpenCause::PermissionDenied { .. }),
            "{error:?}"
        );
        println!("CHAIN {}", chain(&error));
        return;
    }
    let db = TestDb::new();
    drop(db.open());
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if !running_as_root(&db) {
        std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let error = SqliteStore::open(&db.path, quick()).unwrap_err();
        assert!(
            matches!(cause_of(&error), OpenCause::PermissionDenied { .. }),
            "{error:?}"
        );
        assert!(chain(&error).contains("permission denied"));
        return;
    }
    // Root reads every file: open it as `nobody` instead, in a child run of this test.
    std::fs::set_permissions(db.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = std::os::unix::process::CommandExt::gid(
        std::os::unix::process::CommandExt::uid(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "open_errors::permission_denied_is_named_as_such",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, &db.path),
            NOBODY,
        ),
        NOBODY,
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHAIN ").map(|(_, chain)| chain))
        .unwrap_or_else(|| panic!("the child did not run: {stdout}"));
    assert!(line.contains("permission denied on "), "{line}");
    assert!(line.contains("Permission denied (os error 13)"), "{line}");
}
