//! Locks a panicked holder left behind are still used: the data behind each of the crate's
//! mutexes (record lists, names, a volume's name) stays whole between statements, so a
//! panic elsewhere must not take the run's cleanup and report down with it.

use std::sync::{Mutex, MutexGuard};

/// The guard, whether or not a holder panicked.
pub fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
