use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiproxy_domain::StoreError;

/// Why the SQLite store failed: while opening or migrating (returned by
/// [`SqliteStore::open`](crate::SqliteStore::open)), or while serving a trait method (then it
/// travels as the source of [`StoreError::Unavailable`], where callers may downcast to it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The folder that should hold the database file could not be created.
    #[error("cannot create the folder {path} for the database")]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened or configured; the source says why, in words
    /// an operator can act on.
    #[error("cannot open the database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: OpenCause,
    },
    /// SQLite refused write-ahead logging (for example on some network file systems), without
    /// which readers would block the usage writer.
    #[error("the database {path} cannot use write-ahead logging (journal mode stays '{mode}')")]
    NoWriteAheadLog {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// A migration step failed; the database is left at the version before that step.
    #[error("migrating the database schema to version {version} failed")]
    Migration {
        /// The version the failed step would have reached.
        version: u32,
        /// Why (a lock held by another process, a full disk, ...).
        #[source]
        source: OpenCause,
    },
    /// The database was written by a newer build of aiproxy; this build refuses to touch it
    /// rather than misread it.
    #[error(
        "the database has schema version {found}, newer than version {supported} that this \
         build knows; run a newer aiproxy or point this one at another database"
    )]
    SchemaTooNew {
        /// The version recorded in the file.
        found: u32,
        /// The newest version this build can use.
        supported: u32,
    },
    /// A store opened read-only found a schema that needs migrating, which only a read-write
    /// open may do.
    #[error(
        "the database has schema version {found} but version {required} is needed, and a \
         read-only store cannot migrate it; open it once read-write"
    )]
    SchemaTooOld {
        /// The version recorded in the file.
        found: u32,
        /// The version this build needs.
        required: u32,
    },
    /// The usage writer thread could not be started.
    #[error("cannot start the usage writer thread")]
    SpawnWriter(#[source] std::io::Error),
    /// No worker thread could be started to run a store method.
    #[error("cannot start a database worker thread")]
    SpawnWorker(#[source] std::io::Error),
    /// A store method was given up: its worker thread stopped before answering (the store
    /// is being dropped, or the method panicked).
    #[error("the database worker stopped before answering")]
    WorkerGone,
    /// No pooled connection could be had in time (the pool is exhausted, or new connections
    /// fail to open).
    #[error("no database connection could be had from the pool")]
    Pool(#[source] r2d2::Error),
    /// A statement failed (locked, full, read-only or damaged database, …).
    #[error("a database statement failed")]
    Database(#[source] rusqlite::Error),
    /// The usage journal could not be opened, read or started afresh.
    #[error("cannot use the usage journal {path}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A usage record could not be appended to the journal (disk full, file system gone
    /// read-only, …): it was not saved.
    #[error("writing a usage record to the journal failed; it was not saved")]
    JournalWrite(#[source] std::io::Error),
    /// Another process (a running server) owns this database's usage journal, so this store
    /// cannot record usage.
    #[error(
        "another process (a running aiproxy server?) is recording usage in this database; \
         stop it first, or point this one at another database"
    )]
    JournalInUse,
    /// The store was opened read-only.
    #[error("the store is read-only")]
    ReadOnly,
    /// Journaled records cannot be moved into the database (it is failing), so they pile up:
    /// reads that need them, and new records past a bound, are refused until it recovers.
    #[error("{records} usage records are waiting for the database, which is failing")]
    UsageBacklog {
        /// How many records wait.
        records: usize,
        /// What SQLite said on the latest attempt.
        #[source]
        last_failure: Option<Arc<rusqlite::Error>>,
    },
    /// The store was closed (or its writer thread stopped), so usage can no longer be written.
    #[error("the usage writer has stopped; the store is closed")]
    WriterStopped,
}

/// Why a database could not be opened or migrated, told apart so that the operator reads
/// "permission denied" or "locked by another process" rather than SQLite's "unable to open
/// database file".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenCause {
    /// The path names a directory.
    #[error("the path is a directory, not a database file")]
    IsADirectory,
    /// A read-only open of a file that does not exist.
    #[error("the file does not exist (a read-only open creates nothing)")]
    Missing,
    /// The operating system refused access to the file, or to its folder (where SQLite
    /// creates `-wal` and `-shm` files beside the database).
    #[error("permission denied on {path}")]
    PermissionDenied {
        /// The file or folder refused.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a SQLite database (or it is encrypted or damaged).
    #[error("the file is not a SQLite database (or it is encrypted or damaged)")]
    NotADatabase(#[source] rusqlite::Error),
    /// Another process holds a lock on the database longer than the busy timeout (a
    /// transaction left open in a `sqlite3` shell, a backup tool, a server using exclusive
    /// locking).
    #[error("the database is locked by another process")]
    Locked(#[source] rusqlite::Error),
    /// Any other failure, as SQLite reported it.
    #[error("SQLite refused it")]
    Sqlite(#[source] rusqlite::Error),
}

impl OpenCause {
    /// Tells apart why SQLite failed while opening `path`, looking at the file system where
    /// SQLite's own code (`SQLITE_CANTOPEN`, `SQLITE_READONLY`) does not say.
    pub(crate) fn diagnose(path: &Path, read_only: bool, error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        if path.is_dir() {
            return Self::IsADirectory;
        }
        match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => return Self::NotADatabase(error),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                return Self::Locked(error);
            }
            Some(
                ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure,
            ) => {}
            _ => return Self::Sqlite(error),
        }
        if !path.exists() && read_only {
            return Self::Missing;
        }
        match probe_access(path, read_only) {
            Some(denied) => denied,
            None => Self::Sqlite(error),
        }
    }
}

/// Opens the file (and, for a read-write store, creates and removes a file in its folder)
/// as SQLite would, to learn whether the operating system refuses access.
fn probe_access(path: &Path, read_only: bool) -> Option<OpenCause> {
    let denied = |path: &Path, source: std::io::Error| {
        (source.kind() == std::io::ErrorKind::PermissionDenied).then(|| {
            OpenCause::PermissionDenied {
                path: path.to_owned(),
                source,
            }
        })
    };
    if path.exists() {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path);
        if let Err(source) = opened {
            return denied(path, source);
        }
    }
    if read_only {
        return None;
    }
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut probe = path.as_os_str().to_owned();
    probe.push("-open-probe");
    let probe = PathBuf::from(probe);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(source) => denied(folder, source),
    }
}

/// A failure the caller can do nothing about but retry later or report.
pub(crate) fn unavailable(error: StorageError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

/// Maps a SQLite failure inside a trait method: a uniqueness violation is a `Conflict` on the
/// thing being written, everything else means the store cannot serve now.
pub(crate) fn from_sqlite(error: rusqlite::Error, entity: &'static str, id: &str) -> StoreError {
    if is_uniqueness_violation(&error) {
        return StoreError::Conflict {
            entity,
            id: id.to_owned(),
        };
    }
    unavailable(StorageError::Database(error))
}

/// Maps a SQLite failure where no uniqueness constraint can be involved (reads, deletes).
pub(crate) fn db(error: rusqlite::Error) -> StoreError {
    unavailable(StorageError::Database(error))
}

/// Maps a failure to check a connection out of the pool.
pub(crate) fn pool(error: r2d2::Error) -> StoreError {
    unavailable(StorageError::Pool(error))
}

pub(crate) fn not_found(entity: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        entity,
        id: id.to_owned(),
    }
}

fn is_uniqueness_violation(error: &rusqlite::Error) -> bool {
    match error.sqlite_error() {
        Some(e) => {
            e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_failure(extended_code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(extended_code), None)
    }

    #[test]
    fn uniqueness_violations_become_conflicts() {
        let err = from_sqlite(
            sqlite_failure(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE),
            "api key",
            "sk-abc",
        );
        assert!(
            matches!(err, StoreError::Conflict { entity: "api key", ref id } if id == "sk-abc")
        );
        let err = from_sqlite(
            sqlite_failure(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
            "user",
            "alice",
        );
        assert!(matches!(err, StoreError::Conflict { entity: "user", .. }));
    }

    #[test]
    fn other_failures_are_unavailable_and_keep_their_source() {
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
        ] {
            let err = from_sqlite(sqlite_failure(code), "user", "alice");
            let StoreError::Unavailable(source) = err else {
                panic!("code {code} should be Unavailable, got {err:?}");
            };
            assert!(matches!(
                source.downcast_ref::<StorageError>(),
                Some(StorageError::Database(_))
            ));
        }
    }
}
