//! The wall clock, read in one place. Everything else in dash-core takes time as an argument
//! (`now_ms`, `now: Instant`) so that it stays a pure function; the daemons and the CLI call
//! this to get that argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
