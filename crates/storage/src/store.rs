use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aiproxy_domain::{Store, StoreError, StoreFuture};
use r2d2::PooledConnection;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::connection::{self, ConnectionSettings};
use crate::error::{OpenCause, db, pool, unavailable};
use crate::workers::Workers;
use crate::writer::{UsageWriter, WriterStats};
use crate::{StorageError, schema};

/// How a [`SqliteStore`] is opened. Start from [`StoreOptions::default`] and change what you
/// need.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pooled connections for reads and for user changes (the usage writer has its own).
    /// The async trait methods run on as many threads of the store's own (each holds at most
    /// one connection at a time), started when first needed. Default 8; 0 is taken as 1.
    pub pool_size: u32,
    /// How long a statement waits for another connection's write lock before failing with
    /// `Unavailable`. Default 5 s.
    pub busy_timeout: Duration,
    /// How long a method waits for a free pooled connection before failing with
    /// `Unavailable`. Default 3 s, so an exhausted pool is an error rather than a long hang;
    /// zero is taken as 1 ms.
    pub connection_timeout: Duration,
    /// The most journaled usage records moved into the database in one transaction; reaching
    /// it also starts a move at once. Default 1024; 0 is taken as 1.
    pub max_batch_records: usize,
    /// How long a journaled usage record may wait before it is moved into the database.
    /// Reads of usage never see the wait (they move what is pending first); it only bounds
    /// how much a restart has to replay. Default 50 ms.
    pub ingest_interval: Duration,
    /// Open the file read-only: nothing is created or migrated (the schema must already be
    /// current), and every write answers `Unavailable`. For reporting tools and tests.
    /// Default `false`.
    pub read_only: bool,
    /// What to do when another process (a running server) owns the database's usage journal:
    /// `false` (the default) fails the open with [`StorageError::JournalInUse`], so a second
    /// server on the same file stops at once; `true` opens a store that reads and changes
    /// users but answers `record_usage` with `Unavailable`, for admin tools run beside a
    /// server.
    pub share_usage_journal: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            busy_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(3),
            max_batch_records: 1024,
            ingest_interval: Duration::from_millis(50),
            read_only: false,
            share_usage_journal: false,
        }
    }
}

/// The SQLite engine for [`Store`]: users, keys, limits and usage in one database file.
///
/// Two ways in, each obvious at the call site:
///
/// - the domain traits ([`aiproxy_domain::UserStore`], [`aiproxy_domain::UsageStore`],
///   [`Store`]): async; the SQLite work runs on the store's own worker threads, so any executor
///   may await them without blocking. `record_usage` is the exception that needs no thread:
///   it appends to the usage journal on the caller's thread and returns a future that is
///   already resolved.
/// - [`SqliteStore::blocking`]: the same operations as plain blocking calls on the caller's
///   thread, for the admin command line, tests and benchmarks.
///
/// Cloning is cheap and every clone shares the same pool, workers and usage writer. When the
/// last clone is dropped, usage records still queued are committed before the drop returns.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    pool: r2d2::Pool<SqliteConnectionManager>,
    writer: UsageWriter,
    workers: Workers,
}

/// The blocking view of a [`SqliteStore`] (see [`SqliteStore::blocking`]): every method runs
/// on the calling thread and may wait for the disk, a lock or the usage writer.
#[derive(Debug, Clone, Copy)]
pub struct Blocking<'a> {
    pub(crate) store: &'a SqliteStore,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("writer", &self.inner.writer.stats())
            .finish_non_exhaustive()
    }
}

/// Reports connections the pool fails to open through `tracing`, like the rest of the proxy.
#[derive(Debug)]
struct TracingErrorHandler;

impl r2d2::HandleError<rusqlite::Error> for TracingErrorHandler {
    fn handle_error(&self, error: rusqlite::Error) {
        tracing::warn!(%error, "opening a pooled database connection failed");
    }
}

impl SqliteStore {
    /// Opens (creating the folder and file on first run) and migrates the database at `path`.
    ///
    /// Every connection uses write-ahead logging, `synchronous=NORMAL`, foreign keys and the
    /// busy timeout. Migrations already applied are skipped; a database from a newer build is
    /// refused with [`StorageError::SchemaTooNew`] and left as it is.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Self, StorageError> {
        let settings = ConnectionSettings {
            busy_timeout: options.busy_timeout,
            read_only: options.read_only,
        };
        if !options.read_only
            && let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|source| StorageError::CreateFolder {
                path: folder.to_owned(),
                source,
            })?;
        }
        let open_error = |source| StorageError::Open {
            path: path.to_owned(),
            source: OpenCause::diagnose(path, options.read_only, source),
        };

        // This first connection migrates, then becomes the usage writer's own connection.
        let mut writer_conn =
            Connection::open_with_flags(path, settings.open_flags()).map_err(open_error)?;
        let journal_mode = connection::configure(&mut writer_conn, settings).map_err(open_error)?;
        if !options.read_only && !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::NoWriteAheadLog {
                path: path.to_owned(),
                mode: journal_mode,
            });
        }
        writer_conn
            .pragma_update(None, "cache_size", -connection::WRITER_CACHE_KIB)
            .map_err(open_error)?;
        if options.read_only {
            schema::check_current(&writer_conn, path)?;
        } else {
            schema::migrate(&mut writer_conn, path)?;
        }
        // The writer adds to a user's totals only after finding the user, inside a
        // transaction that holds the write lock, so SQLite's own foreign-key probe on every
        // totals row would only repeat that check.
        writer_conn
            .pragma_update(None, "foreign_keys", false)
            .map_err(open_error)?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(settings.open_flags())
            .with_init(move |conn| connection::configure(conn, settings).map(drop));
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .connection_timeout(options.connection_timeout.max(Duration::from_millis(1)))
            // The manager's validity check is an empty statement; skipping it saves a call.
            .test_on_check_out(false)
            .error_handler(Box::new(TracingErrorHandler))
            .build(manager)
            .map_err(|error| match error_of_first_connection(path, settings) {
                Some(open) => open,
                None => StorageError::Pool(error),
            })?;

        let writer = if options.read_only {
            UsageWriter::refusing(|| StorageError::ReadOnly)
        } else {
            UsageWriter::start(
                path,
                writer_conn,
                options.max_batch_records,
                options.ingest_interval,
                options.share_usage_journal,
            )?
        };
        tracing::debug!(path = %path.display(), read_only = options.read_only, "opened the database");
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool,
                writer,
                workers: Workers::new(options.pool_size.max(1) as usize),
            }),
        })
    }

    /// The blocking API: the trait operations as plain calls on this thread, for the admin
    /// command line, tests and benchmarks. Never call it from an async executor's thread.
    pub fn blocking(&self) -> Blocking<'_> {
        Blocking { store: self }
    }

    /// Runs `work` on one of the store's threads; the future resolves with its answer. A job
    /// whose future was dropped before a thread got to it does not run.
    pub(crate) fn run<T, F>(&self, work: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(Blocking<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = futures_channel::oneshot::channel();
        let store = self.clone();
        let submitted = self.inner.workers.submit(Box::new(move || {
            if !answer.is_canceled() {
                let _ = answer.send(work(store.blocking()));
            }
        }));
        Box::pin(async move {
            submitted.map_err(unavailable)?;
            answered
                .await
                .map_err(|_| unavailable(StorageError::WorkerGone))?
        })
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What the usage writer has done so far (queue depth, batches, last commit latency).
    /// Cheap: a handful of atomic loads.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// Stops the usage writer for every clone: moves every journaled record into the
    /// database, then joins its thread. Afterwards `record_usage` and `ping` answer `Unavailable`; the other
    /// methods keep working, so requests still draining can read. Calling it twice is fine.
    pub fn close(&self) {
        self.inner.writer.stop();
    }

    pub(crate) fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>, StoreError> {
        self.inner.pool.get().map_err(pool)
    }

    /// A pooled connection that sees every usage record journaled before the call: for reads
    /// of usage or totals, and for deletes that must take journaled records with them.
    pub(crate) fn conn_with_usage(
        &self,
    ) -> Result<PooledConnection<SqliteConnectionManager>, StoreError> {
        self.inner.writer.flush()?;
        self.conn()
    }

    pub(crate) fn writer(&self) -> &UsageWriter {
        &self.inner.writer
    }
}

/// Opens one more connection as the pool would, to tell why the pool could not open its
/// first: the cause in the words of [`OpenCause`] rather than the pool's timeout.
fn error_of_first_connection(path: &Path, settings: ConnectionSettings) -> Option<StorageError> {
    let mut conn = match Connection::open_with_flags(path, settings.open_flags()) {
        Ok(conn) => conn,
        Err(source) => return Some(open_failure(path, settings.read_only, source)),
    };
    connection::configure(&mut conn, settings)
        .err()
        .map(|source| open_failure(path, settings.read_only, source))
}

fn open_failure(path: &Path, read_only: bool, source: rusqlite::Error) -> StorageError {
    StorageError::Open {
        path: path.to_owned(),
        source: OpenCause::diagnose(path, read_only, source),
    }
}

impl Store for SqliteStore {
    /// See [`Blocking::ping`].
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|store| store.ping())
    }
}

impl Blocking<'_> {
    /// Reads a table page, then takes the write lock and runs a write statement that matches
    /// no row before rolling back: this fails on a read-only, locked or unopenable database
    /// without changing anything. Also fails once the usage writer has stopped. It does not
    /// detect a full disk (nothing is written).
    pub fn ping(&self) -> Result<(), StoreError> {
        if self.store.inner.writer.has_stopped() {
            return Err(unavailable(StorageError::WriterStopped));
        }
        let mut conn = self.store.conn()?;
        conn.query_row("SELECT 1 FROM users LIMIT 1", [], |_| Ok(()))
            .optional()
            .map_err(db)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        // On a read-only file SQLite quietly turns BEGIN IMMEDIATE into a read transaction;
        // a write statement (matching no row, so nothing changes) is what fails there.
        tx.execute("UPDATE users SET disabled = disabled WHERE 0", [])
            .map_err(db)?;
        tx.rollback().map_err(db)
    }
}
