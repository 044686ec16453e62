//! The usage writer: every record goes to a journal file first, and into SQLite soon after.
//!
//! `record_usage` appends the record as one line to the journal (`<database>-usage`) and is
//! done as soon as that write returns: from then on the record survives the process being
//! killed, which is what a SQLite commit with `synchronous=NORMAL` promised too, for one small
//! `write` instead of a transaction that rewrites five 4 KiB pages and wakes the caller from
//! another thread. An ingest thread moves journaled records into SQLite in large
//! transactions: every `ingest_interval`, as soon as `max_batch_records` wait, or when a
//! reader asks ([`UsageWriter::flush`]: every read of usage flushes first, so nobody reads
//! behind the journal). The transaction that inserts records also stores how far into the
//! journal it got, so a restart replays exactly the lines not yet ingested; once everything
//! is ingested the journal is cut back to its header.
//!
//! A write that fails (disk full, file system gone read-only) is reported to the caller, and
//! the torn line is cut off again, so no record is ever said to be saved that is not.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiproxy_domain::{StoreError, UsageCommit, UsageRecord, unpoison};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::StorageError;
use crate::error::unavailable;
use crate::journal;
use crate::sql::to_sql_int;

/// Journaled records waiting for SQLite beyond which new records are refused: the database
/// has been failing for a while, and memory must stay bounded. About 30 MB of records.
const MAX_BACKLOG: usize = 200_000;

/// Once everything is ingested, a journal longer than this is cut back to its header.
const ROTATE_BYTES: u64 = 1 << 20;

/// What the usage writer has done so far, for metrics. Counters only grow; the `last_*`
/// fields describe the most recent batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records in the journal that are not in the database yet.
    pub queued: u64,
    /// Transactions committed.
    pub batches_committed: u64,
    /// Records saved by those transactions.
    pub records_committed: u64,
    /// Records of users deleted while their request ran: stored all the same (the ledger
    /// keeps every answered request), but counted in no lifetime total.
    pub records_of_deleted_users: u64,
    /// Transactions that failed; their records stay in the journal and are tried again.
    pub batches_failed: u64,
    /// How many records the most recent batch held.
    pub last_batch_records: u64,
    /// How long the most recent batch took, from `BEGIN` to the end of `COMMIT`.
    pub last_commit_latency: Duration,
    /// Time spent writing batches so far (committed or failed). Its growth over wall time is
    /// how busy the writer is: near 100 % means records arrive faster than they commit.
    pub busy_time: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    batches_committed: AtomicU64,
    records_committed: AtomicU64,
    records_of_deleted_users: AtomicU64,
    batches_failed: AtomicU64,
    last_batch_records: AtomicU64,
    last_commit_nanos: AtomicU64,
    busy_nanos: AtomicU64,
}

/// The journal file and the records in it that SQLite does not have yet.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    generation: u64,
    /// Set when a torn line could not be cut off: appending more would glue records onto it.
    broken: bool,
    /// Bytes in the file: where the next line starts.
    len: u64,
    /// Records not yet ingested, oldest first, each with the offset just past its line.
    pending: VecDeque<(UsageRecord, u64)>,
    /// Records ever appended, and how many of them are ingested: a flush waits until the
    /// second reaches what the first was when it asked.
    appended: u64,
    ingested: u64,
    /// Failed ingest attempts so far, and the latest failure.
    failures: u64,
    last_failure: Option<Arc<rusqlite::Error>>,
    flush_requested: bool,
    stopping: bool,
    /// Set by the ingest thread when it exits.
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    journal: Mutex<Journal>,
    /// Wakes the ingest thread.
    work: Condvar,
    /// Wakes readers waiting in `flush`.
    ingested: Condvar,
    counters: Counters,
    max_batch_records: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Journal> {
        unpoison(self.journal.lock())
    }
}

/// The handle the store keeps on its journal and ingest thread.
#[derive(Debug)]
pub(crate) struct UsageWriter {
    /// `None` when the store cannot write usage (read-only, or another process owns the
    /// journal); the reason is what `submit` answers.
    shared: Option<Arc<Shared>>,
    refusal: fn() -> StorageError,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The journal that goes with a database file.
pub(crate) fn journal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-usage");
    PathBuf::from(name)
}

impl UsageWriter {
    /// A writer that refuses every record: for read-only stores.
    pub(crate) fn refusing(refusal: fn() -> StorageError) -> Self {
        Self {
            shared: None,
            refusal,
            thread: Mutex::new(None),
        }
    }

    /// Opens the journal next to `database`, moves what a previous run left in it into the
    /// database through `conn`, and starts the ingest thread, which owns `conn` from then on.
    ///
    /// Only one process may append: when another holds the journal (a server is running
    /// while the CLI opens the same database), this fails with `JournalInUse`, or, when
    /// `share` is set, returns a writer that refuses records.
    pub(crate) fn start(
        database: &Path,
        mut conn: Connection,
        max_batch_records: usize,
        ingest_interval: Duration,
        share: bool,
    ) -> Result<Self, StorageError> {
        let path = journal_path(database);
        let journal_error = |source| StorageError::Journal {
            path: path.clone(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(journal_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) if share => {
                tracing::debug!(path = %path.display(), "another process owns the usage journal");
                return Ok(Self::refusing(|| StorageError::JournalInUse));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(StorageError::JournalInUse),
            Err(std::fs::TryLockError::Error(source)) => return Err(journal_error(source)),
        }
        let generation = replay(&mut conn, &mut file, &path)?;
        let mut journal = Journal {
            len: 0,
            path: path.clone(),
            file,
            generation,
            broken: false,
            pending: VecDeque::new(),
            appended: 0,
            ingested: 0,
            failures: 0,
            last_failure: None,
            flush_requested: false,
            stopping: false,
            stopped: false,
        };
        // Everything is in the database now: a new generation starts with just its header.
        rotate(&mut journal).map_err(journal_error)?;
        let shared = Arc::new(Shared {
            journal: Mutex::new(journal),
            work: Condvar::new(),
            ingested: Condvar::new(),
            counters: Counters::default(),
            max_batch_records: max_batch_records.max(1),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("aiproxy-usage-writer".into())
            .spawn(move || run(conn, &thread_shared, ingest_interval))
            .map_err(StorageError::SpawnWriter)?;
        Ok(Self {
            shared: Some(shared),
            refusal: || StorageError::WriterStopped,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Appends a record to the journal; the returned future is already resolved.
    pub(crate) fn submit(&self, record: UsageRecord) -> UsageCommit {
        Box::pin(std::future::ready(self.append(record)))
    }

    /// Appends a record to the journal; done when the write returns.
    pub(crate) fn append(&self, record: UsageRecord) -> Result<(), StoreError> {
        let Some(shared) = &self.shared else {
            return Err(unavailable((self.refusal)()));
        };
        let line = journal::encode(&record);
        let mut journal = shared.lock();
        if journal.stopping {
            return Err(unavailable(StorageError::WriterStopped));
        }
        if journal.broken {
            return Err(unavailable(StorageError::JournalWrite(
                std::io::Error::other(
                    "an earlier failed write could not be cut off the usage journal; restart the server",
                ),
            )));
        }
        if journal.pending.len() >= MAX_BACKLOG {
            return Err(unavailable(StorageError::UsageBacklog {
                records: journal.pending.len(),
                last_failure: journal.last_failure.clone(),
            }));
        }
        if let Err(source) = journal.file.write_all(&line) {
            // Part of the line may be in the file; cut it off so the next line starts clean
            // and a restart does not find half a record.
            let len = journal.len;
            if let Err(error) = journal.file.set_len(len) {
                tracing::error!(%error, "could not cut a torn line off the usage journal; refusing usage until a restart");
                journal.broken = true;
            }
            return Err(unavailable(StorageError::JournalWrite(source)));
        }
        journal.len += line.len() as u64;
        journal.appended += 1;
        let end = journal.len;
        journal.pending.push_back((record, end));
        if journal.pending.len() == shared.max_batch_records {
            shared.work.notify_one();
        }
        Ok(())
    }

    /// Waits until every record appended before the call is in the database. Returns at once
    /// when nothing is pending; fails when the ingest attempt that should have covered them
    /// fails (the records stay journaled).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let mut journal = shared.lock();
        let target = journal.appended;
        let failures_before = journal.failures;
        while journal.ingested < target {
            if journal.failures > failures_before {
                let source = journal.last_failure.clone();
                return Err(unavailable(StorageError::UsageBacklog {
                    records: journal.pending.len(),
                    last_failure: source,
                }));
            }
            if journal.stopped {
                return Err(unavailable(StorageError::WriterStopped));
            }
            journal.flush_requested = true;
            shared.work.notify_one();
            journal = unpoison(
                shared
                    .ingested
                    .wait_timeout(journal, Duration::from_millis(100)),
            )
            .0;
        }
        Ok(())
    }

    /// Whether this writer was started and has stopped since (a store that never could
    /// write usage, read-only or without the journal, has not "stopped").
    pub(crate) fn has_stopped(&self) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        let journal = shared.lock();
        journal.stopping || journal.stopped
    }

    /// Stops accepting records, moves every journaled one into the database (as far as it
    /// can), and joins the thread. Calling it again does nothing.
    pub(crate) fn stop(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared.lock().stopping = true;
        shared.work.notify_one();
        let thread = unpoison(self.thread.lock()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the usage writer thread panicked");
        }
        // Nothing is appended after `stopping` is set, so the journal is free for the next
        // process now, not whenever the last clone of the store happens to be dropped (a
        // restart in the same process, or a worker thread still winding down).
        if let Err(error) = shared.lock().file.unlock() {
            tracing::warn!(%error, "could not release the usage journal's lock");
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        let Some(shared) = &self.shared else {
            return WriterStats::default();
        };
        let c = &shared.counters;
        WriterStats {
            queued: shared.lock().pending.len() as u64,
            batches_committed: c.batches_committed.load(Ordering::Relaxed),
            records_committed: c.records_committed.load(Ordering::Relaxed),
            records_of_deleted_users: c.records_of_deleted_users.load(Ordering::Relaxed),
            batches_failed: c.batches_failed.load(Ordering::Relaxed),
            last_batch_records: c.last_batch_records.load(Ordering::Relaxed),
            last_commit_latency: Duration::from_nanos(c.last_commit_nanos.load(Ordering::Relaxed)),
            busy_time: Duration::from_nanos(c.busy_nanos.load(Ordering::Relaxed)),
        }
    }
}

impl Drop for UsageWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves the records a previous run journaled but did not ingest into the database. Returns
/// the newest generation the file or the database knows, which the next file must exceed.
fn replay(conn: &mut Connection, file: &mut File, path: &Path) -> Result<u64, StorageError> {
    let journal_error = |source| StorageError::Journal {
        path: path.to_owned(),
        source,
    };
    let (ingested_generation, ingested_len): (u64, u64) = conn
        .query_row(
            "SELECT generation, ingested_bytes FROM usage_journal WHERE id = 1",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )
        .optional()
        .map_err(StorageError::Database)?
        .map_or((0, 0), |(g, l)| {
            (u64::try_from(g).unwrap_or(0), u64::try_from(l).unwrap_or(0))
        });
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(journal_error)?;
    file.read_to_end(&mut bytes).map_err(journal_error)?;
    let renames = crate::schema::user_id_renames(conn).map_err(StorageError::Database)?;
    let contents = journal::read(
        &bytes,
        |generation| (generation == ingested_generation).then_some(ingested_len),
        &renames,
    );
    if contents.unreadable > 0 {
        // Kept for a human to look at: the file is about to start afresh.
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".damaged-{}", aiproxy_domain::UnixMillis::now().0));
        let copied = std::fs::copy(path, &aside);
        tracing::warn!(
            path = %path.display(),
            lines = contents.unreadable,
            copy = %PathBuf::from(&aside).display(),
            copied = copied.is_ok(),
            "the usage journal had damaged lines; they were skipped and the file copied aside"
        );
    }
    let file_generation = contents.generation.unwrap_or(0);
    if !contents.records.is_empty() {
        let records: Vec<&UsageRecord> = contents.records.iter().map(|(r, _)| r).collect();
        write_batch(conn, &records, file_generation, contents.complete_len)
            .map_err(StorageError::Database)?;
        tracing::info!(
            records = records.len(),
            "recorded the usage a previous run had journaled but not yet saved"
        );
    }
    Ok(file_generation.max(ingested_generation))
}

/// Replaces the journal with a new generation holding only the records still pending, so the
/// file stays small under steady load (when something is always pending). The new file is
/// written beside the old one and renamed over it: a crash before the rename leaves the old
/// file, which replays as before; after it, the new one, whose every line is pending.
fn rotate(journal: &mut Journal) -> std::io::Result<()> {
    let next = journal.generation + 1;
    let mut fresh_path = journal.path.clone().into_os_string();
    fresh_path.push(".next");
    let fresh_path = PathBuf::from(fresh_path);
    let mut bytes = journal::header(next);
    let mut ends = Vec::with_capacity(journal.pending.len());
    for (record, _) in &journal.pending {
        bytes.extend_from_slice(&journal::encode(record));
        ends.push(bytes.len() as u64);
    }
    let mut fresh = File::options()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .open(&fresh_path)?;
    fresh.set_len(0)?;
    fresh.write_all(&bytes)?;
    fresh.try_lock().map_err(std::io::Error::other)?;
    std::fs::rename(&fresh_path, &journal.path)?;
    journal.file = fresh;
    journal.generation = next;
    journal.len = bytes.len() as u64;
    for ((_, end), new_end) in journal.pending.iter_mut().zip(ends) {
        *end = new_end;
    }
    Ok(())
}

/// Marks the writer stopped however `run` ends, a panic included, so that `flush` callers
/// are not left waiting.
struct StoppedOnExit<'a>(&'a Shared);

impl Drop for StoppedOnExit<'_> {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.ingested.notify_all();
    }
}

fn run(mut conn: Connection, shared: &Shared, interval: Duration) {
    let _stopped_on_exit = StoppedOnExit(shared);
    let mut journal = shared.lock();
    loop {
        let due = Instant::now() + interval;
        while !journal.stopping
            && !journal.flush_requested
            && journal.pending.len() < shared.max_batch_records
        {
            let now = Instant::now();
            if now >= due && !journal.pending.is_empty() {
                break;
            }
            let wait = if journal.pending.is_empty() {
                interval
            } else {
                due.saturating_duration_since(now)
            };
            journal = unpoison(shared.work.wait_timeout(journal, wait)).0;
        }
        journal.flush_requested = false;
        if journal.pending.is_empty() {
            if journal.stopping {
                break;
            }
            continue;
        }
        let take = journal.pending.len().min(shared.max_batch_records);
        let batch: Vec<(UsageRecord, u64)> = journal.pending.drain(..take).collect();
        let generation = journal.generation;
        // The lock is not held while SQLite works: requests keep appending meanwhile.
        drop(journal);

        let through = batch.last().map_or(0, |(_, end)| *end);
        let records: Vec<&UsageRecord> = batch.iter().map(|(r, _)| r).collect();
        let started = Instant::now();
        let outcome = write_batch(&mut conn, &records, generation, through);
        note_batch(&shared.counters, started.elapsed(), records.len(), &outcome);
        drop(records);

        journal = shared.lock();
        match outcome {
            Ok(_) => {
                journal.ingested += batch.len() as u64;
                if journal.len > ROTATE_BYTES
                    && let Err(error) = rotate(&mut journal)
                {
                    // The old file is untouched and still ours; it is tried again next batch.
                    tracing::warn!(%error, "could not start the usage journal afresh");
                }
            }
            Err(error) => {
                tracing::error!(rows = batch.len(), %error, "usage records could not be moved into the database; they stay journaled");
                for item in batch.into_iter().rev() {
                    journal.pending.push_front(item);
                }
                journal.failures += 1;
                journal.last_failure = Some(Arc::new(error));
                if journal.stopping {
                    // One more try happened already; the journal keeps the rest for next time.
                    shared.ingested.notify_all();
                    break;
                }
                // Not straight back into a failing database: wait for the next interval.
                shared.ingested.notify_all();
                journal = unpoison(shared.work.wait_timeout(journal, interval)).0;
                continue;
            }
        }
        shared.ingested.notify_all();
    }
}

fn note_batch(
    counters: &Counters,
    took: Duration,
    records: usize,
    outcome: &rusqlite::Result<usize>,
) {
    // `Ok` holds how many records had no user any more.
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    counters.last_commit_nanos.store(nanos, Ordering::Relaxed);
    counters.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    counters
        .last_batch_records
        .store(records as u64, Ordering::Relaxed);
    match outcome {
        Ok(orphaned) => {
            counters.batches_committed.fetch_add(1, Ordering::Relaxed);
            counters
                .records_committed
                .fetch_add(records as u64, Ordering::Relaxed);
            counters
                .records_of_deleted_users
                .fetch_add(*orphaned as u64, Ordering::Relaxed);
        }
        Err(_) => {
            counters.batches_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const INSERT_USAGE: &str = "
    INSERT INTO usage (request_id, user_id, model, endpoint, prompt_tokens, completion_tokens,
                       total_tokens, status, duration_ms, created_at, backend, client_request_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

// Saturating additions: an overflowing `+` would silently turn the column into a REAL.
const ADD_TO_TOTALS: &str = "
    INSERT INTO user_totals (user_id, requests, prompt_tokens, completion_tokens, total_tokens)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (user_id) DO UPDATE SET
        requests = CASE WHEN requests > 9223372036854775807 - excluded.requests
                        THEN 9223372036854775807 ELSE requests + excluded.requests END,
        prompt_tokens = CASE WHEN prompt_tokens > 9223372036854775807 - excluded.prompt_tokens
                        THEN 9223372036854775807 ELSE prompt_tokens + excluded.prompt_tokens END,
        completion_tokens = CASE WHEN completion_tokens > 9223372036854775807 - excluded.completion_tokens
                        THEN 9223372036854775807 ELSE completion_tokens + excluded.completion_tokens END,
        total_tokens = CASE WHEN total_tokens > 9223372036854775807 - excluded.total_tokens
                        THEN 9223372036854775807 ELSE total_tokens + excluded.total_tokens END";

#[derive(Default)]
struct BatchTotals {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// Writes the records in one transaction, with the journal position they reach, and adds
/// them to their users' lifetime totals. Every record is stored; one whose user was deleted
/// meanwhile is stored too, but counts in no total (there is no user to count it for).
/// Returns how many such records there were.
fn write_batch(
    conn: &mut Connection,
    batch: &[&UsageRecord],
    generation: u64,
    journal_through: u64,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut orphaned = 0;
    // Each user of the batch, with the sums of their rows; `None` for a user deleted
    // meanwhile. One lookup per user and batch, not per row: the transaction holds the write
    // lock, so no user can go away while it runs.
    let mut totals: HashMap<&str, Option<BatchTotals>> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(INSERT_USAGE)?;
        let mut find_user = tx.prepare_cached("SELECT 1 FROM users WHERE id = ?1")?;
        for r in batch {
            let user_id = r.user_id.as_str();
            insert.raw_bind_parameter(1, &r.request_id)?;
            insert.raw_bind_parameter(2, user_id)?;
            insert.raw_bind_parameter(3, &r.model)?;
            insert.raw_bind_parameter(4, r.endpoint.as_str())?;
            insert.raw_bind_parameter(5, to_sql_int(r.prompt_tokens))?;
            insert.raw_bind_parameter(6, to_sql_int(r.completion_tokens))?;
            insert.raw_bind_parameter(7, to_sql_int(r.total_tokens()))?;
            insert.raw_bind_parameter(8, r.status.as_str())?;
            insert.raw_bind_parameter(9, to_sql_int(r.duration_ms))?;
            insert.raw_bind_parameter(10, r.created_at.0)?;
            insert.raw_bind_parameter(11, r.backend.as_deref())?;
            insert.raw_bind_parameter(12, r.client_request_id.as_deref())?;
            insert.raw_execute()?;
            let sums = match totals.entry(user_id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let exists = find_user.exists([user_id])?;
                    entry.insert(exists.then(BatchTotals::default))
                }
            };
            let Some(sums) = sums else {
                orphaned += 1;
                continue;
            };
            sums.requests = sums.requests.saturating_add(1);
            sums.prompt_tokens = sums.prompt_tokens.saturating_add(r.prompt_tokens);
            sums.completion_tokens = sums.completion_tokens.saturating_add(r.completion_tokens);
            sums.total_tokens = sums.total_tokens.saturating_add(r.total_tokens());
        }
        let mut add_to_totals = tx.prepare_cached(ADD_TO_TOTALS)?;
        for (user_id, sums) in totals
            .iter()
            .filter_map(|(id, sums)| Some((id, sums.as_ref()?)))
        {
            add_to_totals.execute(params![
                user_id,
                to_sql_int(sums.requests),
                to_sql_int(sums.prompt_tokens),
                to_sql_int(sums.completion_tokens),
                to_sql_int(sums.total_tokens),
            ])?;
        }
        tx.prepare_cached(
            "INSERT INTO usage_journal (id, generation, ingested_bytes) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET generation = ?1, ingested_bytes = ?2",
        )?
        .execute(params![to_sql_int(generation), to_sql_int(journal_through)])?;
    }
    tx.commit()?;
    Ok(orphaned)
}
