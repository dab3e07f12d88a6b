//! proxy clock: one process-wide origin so deadlines fit in an `AtomicU64` of nanoseconds.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds from the proxy's clock origin to `at` (0 for instants before the origin).
pub(crate) fn nanos(at: Instant) -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years: the cast cannot truncate in practice.
    at.saturating_duration_since(origin).as_nanos() as u64
}

/// Whole seconds from the origin to `at`.
pub(crate) fn secs(at: Instant) -> u64 {
    nanos(at) / 1_000_000_000
}
