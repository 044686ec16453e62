//! One rule, shared by every crate, for a lock whose holder panicked.

use std::sync::{LockResult, PoisonError};

/// The guard a lock call returned, whether or not a thread panicked while holding the lock.
///
/// The locks of aiproxy guard state that each update leaves whole (counters, caches, queues
/// changed by single inserts and assignments), so a panic elsewhere leaves it consistent,
/// while refusing every later request over it would take the proxy down. Wrap every
/// `Mutex::lock`, `RwLock::read`/`write` and `Condvar::wait*` result in it.
pub fn unpoison<G>(result: LockResult<G>) -> G {
    result.unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_hands_out_its_value() {
        let counter = Arc::new(Mutex::new(1));
        let holder = counter.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(panicked.is_err() && counter.is_poisoned());
        *unpoison(counter.lock()) += 1;
        assert_eq!(*unpoison(counter.lock()), 2);
    }
}
