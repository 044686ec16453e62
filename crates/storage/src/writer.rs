//! The usage writer: one thread, one connection, group commit.
//!
//! Every `record_usage` call sends its record down a channel. The writer takes everything
//! queued (up to a cap), writes it in one transaction, commits, and only then tells each
//! caller. No timer is needed for batches to form: while one transaction commits, the next
//! records queue up, so the batch size follows the load by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiproxy_domain::{StoreError, UsageCommit, UsageRecord};
use futures_channel::oneshot;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::StorageError;
use crate::error::{not_found, unavailable};
use crate::sql::to_sql_int;

/// What the usage writer has done so far, for metrics. Counters only grow; the `last_*`
/// fields describe the most recent batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records handed to `record_usage` that the writer has not picked up yet.
    pub queued: u64,
    /// Transactions committed.
    pub batches_committed: u64,
    /// Records saved by those transactions.
    pub records_committed: u64,
    /// Records refused because their user no longer exists (deleted while the request ran).
    pub records_rejected: u64,
    /// Transactions that failed; none of their records was saved.
    pub batches_failed: u64,
    /// How many records the most recent batch held.
    pub last_batch_records: u64,
    /// How long the most recent batch took, from `BEGIN` to the end of `COMMIT`.
    pub last_commit_latency: Duration,
    /// Time spent writing batches so far (committed or failed). Its growth over wall time is
    /// how busy the writer is: near 100 % means records queue faster than they commit.
    pub busy_time: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    batches_committed: AtomicU64,
    records_committed: AtomicU64,
    records_rejected: AtomicU64,
    batches_failed: AtomicU64,
    last_batch_records: AtomicU64,
    last_commit_nanos: AtomicU64,
    busy_nanos: AtomicU64,
}

struct PendingRecord {
    record: UsageRecord,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle the store keeps on its writer thread.
#[derive(Debug)]
pub(crate) struct UsageWriter {
    // `None` once the store is closed; dropping the sender is what tells the thread to finish.
    sender: RwLock<Option<mpsc::Sender<PendingRecord>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl UsageWriter {
    /// Starts the writer thread, which owns `conn` from now on.
    pub(crate) fn start(conn: Connection, max_batch_records: usize) -> Result<Self, StorageError> {
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("aiproxy-usage-writer".into())
            .spawn(move || {
                run(conn, &receiver, max_batch_records.max(1), &thread_counters);
            })
            .map_err(StorageError::SpawnWriter)?;
        Ok(Self {
            sender: RwLock::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            counters,
        })
    }

    /// Queues a record; the future resolves once its batch is committed.
    pub(crate) fn submit(&self, record: UsageRecord) -> UsageCommit {
        let (done, committed) = oneshot::channel();
        let queued = {
            let sender = self.sender.read().unwrap_or_else(PoisonError::into_inner);
            match sender.as_ref() {
                Some(sender) => {
                    // Counted before sending so that the writer's decrement never comes first.
                    self.counters.queued.fetch_add(1, Ordering::Relaxed);
                    let sent = sender.send(PendingRecord { record, done }).is_ok();
                    if !sent {
                        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    }
                    sent
                }
                None => false,
            }
        };
        if !queued {
            return Box::pin(std::future::ready(Err(unavailable(
                StorageError::WriterStopped,
            ))));
        }
        Box::pin(async move {
            match committed.await {
                Ok(outcome) => outcome,
                // The writer went away without answering (it panicked): nothing is promised.
                Err(oneshot::Canceled) => Err(unavailable(StorageError::WriterStopped)),
            }
        })
    }

    /// Whether records can still be queued.
    pub(crate) fn is_running(&self) -> bool {
        let running = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|thread| !thread.is_finished());
        running
            && self
                .sender
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
    }

    /// Stops accepting records, waits until every queued one is committed (or failed), and
    /// joins the thread. Calling it again does nothing.
    pub(crate) fn stop(&self) {
        drop(
            self.sender
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the usage writer thread panicked");
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            queued: c.queued.load(Ordering::Relaxed),
            batches_committed: c.batches_committed.load(Ordering::Relaxed),
            records_committed: c.records_committed.load(Ordering::Relaxed),
            records_rejected: c.records_rejected.load(Ordering::Relaxed),
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

fn run(
    mut conn: Connection,
    receiver: &mpsc::Receiver<PendingRecord>,
    max_batch_records: usize,
    counters: &Counters,
) {
    // Capped: the option may be huge ("no limit"), and the vector grows when needed anyway.
    let mut batch = Vec::with_capacity(max_batch_records.min(4096));
    // `recv` keeps returning queued records after the last sender is gone, so closing the
    // store flushes everything before the loop ends.
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        while batch.len() < max_batch_records {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        counters
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);

        let started = Instant::now();
        let outcome = write_batch(&mut conn, &batch);
        let latency = started.elapsed();
        let latency_nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        counters
            .last_commit_nanos
            .store(latency_nanos, Ordering::Relaxed);
        counters
            .busy_nanos
            .fetch_add(latency_nanos, Ordering::Relaxed);
        counters
            .last_batch_records
            .store(batch.len() as u64, Ordering::Relaxed);

        match outcome {
            Ok(saved) => {
                let n_saved = saved.iter().filter(|s| **s).count() as u64;
                counters.batches_committed.fetch_add(1, Ordering::Relaxed);
                counters
                    .records_committed
                    .fetch_add(n_saved, Ordering::Relaxed);
                counters
                    .records_rejected
                    .fetch_add(batch.len() as u64 - n_saved, Ordering::Relaxed);
                for (pending, saved) in batch.drain(..).zip(saved) {
                    let answer = if saved {
                        Ok(())
                    } else {
                        Err(not_found("user", pending.record.user_id.as_str()))
                    };
                    // The caller may have stopped waiting; the record is saved regardless.
                    let _ = pending.done.send(answer);
                }
            }
            Err(error) => {
                counters.batches_failed.fetch_add(1, Ordering::Relaxed);
                let rows = batch.len();
                tracing::error!(rows, error = %error, "a batch of usage records could not be committed");
                let source = Arc::new(error);
                for pending in batch.drain(..) {
                    let _ = pending.done.send(Err(unavailable(StorageError::UsageBatch {
                        rows,
                        source: Arc::clone(&source),
                    })));
                }
            }
        }
    }
}

// The EXISTS guard makes a record of a user deleted meanwhile insert nothing (reported as
// NotFound to its caller alone) instead of failing the foreign key and with it the whole batch.
const INSERT_USAGE: &str = "
    INSERT INTO usage (request_id, user_id, model, endpoint, prompt_tokens, completion_tokens,
                       total_tokens, status, duration_ms, created_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
    WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2)";

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

/// Writes the batch in one transaction. Returns, per record, whether it was saved (`false`:
/// its user no longer exists).
fn write_batch(conn: &mut Connection, batch: &[PendingRecord]) -> rusqlite::Result<Vec<bool>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut saved = Vec::with_capacity(batch.len());
    let mut totals: HashMap<&str, BatchTotals> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(INSERT_USAGE)?;
        for pending in batch {
            let r = &pending.record;
            let inserted = insert.execute(params![
                r.request_id,
                r.user_id.as_str(),
                r.model,
                r.endpoint.as_str(),
                to_sql_int(r.prompt_tokens),
                to_sql_int(r.completion_tokens),
                to_sql_int(r.total_tokens()),
                r.status.as_str(),
                to_sql_int(r.duration_ms),
                r.created_at.0,
            ])? == 1;
            saved.push(inserted);
            if inserted {
                let sums = totals.entry(r.user_id.as_str()).or_default();
                sums.requests = sums.requests.saturating_add(1);
                sums.prompt_tokens = sums.prompt_tokens.saturating_add(r.prompt_tokens);
                sums.completion_tokens = sums.completion_tokens.saturating_add(r.completion_tokens);
                sums.total_tokens = sums.total_tokens.saturating_add(r.total_tokens());
            }
        }
        let mut add_to_totals = tx.prepare_cached(ADD_TO_TOTALS)?;
        for (user_id, sums) in &totals {
            add_to_totals.execute(params![
                user_id,
                to_sql_int(sums.requests),
                to_sql_int(sums.prompt_tokens),
                to_sql_int(sums.completion_tokens),
                to_sql_int(sums.total_tokens),
            ])?;
        }
    }
    tx.commit()?;
    Ok(saved)
}
