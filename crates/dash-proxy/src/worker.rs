//! proxy worker: which proxy worker thread this is, so hot state can be kept per worker.
//!
//! Counters and pools are split into [`SHARDS`] shards, one per worker thread (workers past that
//! share). A request then only writes cache lines its own core already holds; with one shared
//! counter the two cores of the bench box handed the same lines back and forth on every request.

use std::cell::Cell;

/// Shards of per-worker state.
pub(crate) const SHARDS: usize = 8;

thread_local! {
    /// The proxy worker this thread is (0 on threads that are not a worker).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as proxy worker `index`.
pub(crate) fn set(index: usize) {
    INDEX.with(|i| i.set(index));
}

/// The shard of the current thread.
pub(crate) fn shard() -> usize {
    INDEX.with(Cell::get) % SHARDS
}

/// A value alone on its cache lines (128 bytes: adjacent-line prefetch pairs 64-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
