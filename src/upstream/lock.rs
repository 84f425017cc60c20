//! The one way the policies' mutexes are taken.

use std::sync::{Mutex, MutexGuard};

/// A policy's lock. Policies are plain numbers that every update leaves consistent, so a
/// panic elsewhere while one was held leaves nothing half-done: use it anyway.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
