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

/// `ms` since the epoch as RFC 3339 UTC to the second, e.g. `2026-12-07T08:45:24Z`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = crate::civil::civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400_007), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
