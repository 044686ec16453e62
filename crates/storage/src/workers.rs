//! The store's own threads, which run the blocking SQLite work behind the async trait
//! methods (as sqlx runs each SQLite connection on a worker thread of its own): callers' async
//! executors never block on a file, and no particular runtime is needed to drive a store.
//!
//! Threads start on demand, up to a maximum, and wait for work when idle. A job is a closure;
//! its answer travels back through a oneshot channel that any executor can await.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::StorageError;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads started and not yet ended.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A small pool of threads owned by one store.
pub(crate) struct Workers {
    shared: Arc<Shared>,
    max_threads: usize,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("Workers")
            .field("threads", &queue.threads)
            .field("idle", &queue.idle)
            .field("queued", &queue.jobs.len())
            .field("max_threads", &self.max_threads)
            .finish()
    }
}

impl Workers {
    /// A pool of at most `max_threads` threads (at least one); none is started yet.
    pub(crate) fn new(max_threads: usize) -> Self {
        Self {
            shared: Arc::default(),
            max_threads: max_threads.max(1),
        }
    }

    /// Queues `job`, starting a thread for it when none is idle and the maximum allows.
    pub(crate) fn submit(&self, job: Job) -> Result<(), StorageError> {
        let mut queue = self.shared.lock();
        queue.jobs.push_back(job);
        // Enough idle threads for every queued job: wake one (a woken thread counts as idle
        // until it runs, so the jobs queued before this one have theirs already).
        if queue.idle >= queue.jobs.len() {
            self.shared.work.notify_one();
            return Ok(());
        }
        if queue.threads >= self.max_threads {
            // A busy thread takes it when it is done.
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("aiproxy-sqlite".into())
            .spawn(move || work(&shared));
        match spawned {
            Ok(_) => {
                queue.threads += 1;
                Ok(())
            }
            // Another thread will get to it; only with none at all is the job lost.
            Err(_) if queue.threads > 0 => Ok(()),
            Err(error) => {
                queue.jobs.pop_back();
                Err(StorageError::SpawnWorker(error))
            }
        }
    }
}

impl Drop for Workers {
    /// Tells the threads to end once the queue is empty. They are not joined: the last clone
    /// of a store may be dropped by a job on one of them.
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

fn work(shared: &Shared) {
    let mut queue = shared.lock();
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            // A panicking job drops its answer channel, which its caller reads as the worker
            // being gone; the thread itself carries on.
            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a database worker job panicked");
            }
            queue = shared.lock();
            continue;
        }
        if queue.stopping {
            queue.threads -= 1;
            return;
        }
        queue.idle += 1;
        queue = shared
            .work
            .wait(queue)
            .unwrap_or_else(PoisonError::into_inner);
        queue.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_on_at_most_the_maximum_of_threads_and_all_finish() {
        let workers = Workers::new(2);
        let (done, finished) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        for i in 0..10 {
            let done = done.clone();
            let gate = Arc::clone(&gate);
            workers
                .submit(Box::new(move || {
                    if i < 2 {
                        // The first two hold both threads until released.
                        let _ = gate.lock().unwrap().recv();
                    }
                    done.send(i).unwrap();
                }))
                .unwrap();
        }
        assert!(workers.shared.lock().threads <= 2);
        release.send(()).unwrap();
        release.send(()).unwrap();
        let mut seen: Vec<i32> = (0..10).map(|_| finished.recv().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(workers.shared.lock().threads, 2);
    }

    #[test]
    fn a_panicking_job_does_not_take_its_thread_down() {
        let workers = Workers::new(1);
        workers.submit(Box::new(|| panic!("boom"))).unwrap();
        let (done, finished) = mpsc::channel();
        workers
            .submit(Box::new(move || done.send(()).unwrap()))
            .unwrap();
        finished.recv().unwrap();
        assert_eq!(workers.shared.lock().threads, 1);
    }
}
