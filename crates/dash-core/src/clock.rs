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

/// `ms` since the epoch as RFC 3339 UTC with milliseconds, e.g. `2026-12-07T08:45:24.120Z`:
/// the form of the monitors' log line stamps, which sort as text.
pub fn utc_ms(ms: u64) -> String {
    let mut s = utc(ms);
    s.pop();
    s.push_str(&format!(".{:03}Z", ms % 1000));
    s
}

/// A point in time as people give it to `--since`/`--until`: `now`, a duration ago (`10m`,
/// `1h30m`), an RFC 3339 UTC time (`2026-12-07T08:45:24Z`, fractions of a second allowed), or
/// seconds since the epoch. Milliseconds since the epoch; `flag` names the flag in errors.
pub fn parse_time_point(text: &str, now_ms: u64, flag: &str) -> Result<u64, String> {
    let t = text.trim();
    let fix = "give `now`, a duration ago such as 10m or 1h, an RFC 3339 UTC time such as \
               2026-12-07T08:45:24Z, or seconds since 1970";
    if t.is_empty() {
        return Err(format!("{flag} is empty: {fix}"));
    }
    if t == "now" {
        return Ok(now_ms);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| format!("{flag} {t:?} is too large: {fix}"));
    }
    if t.contains('T') {
        return parse_rfc3339_utc(t).ok_or_else(|| format!("{flag} {t:?} is not a time: {fix}"));
    }
    let back = crate::units::parse_duration(t).map_err(|e| format!("{flag} {t:?}: {e}; {fix}"))?;
    Ok(now_ms.saturating_sub(back.as_millis().min(u128::from(u64::MAX)) as u64))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (also `+00:00`) as ms since the epoch.
fn parse_rfc3339_utc(t: &str) -> Option<u64> {
    let t = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix('z'))
        .or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<u64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    if hh > 23 || mm > 59 || ss > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
    let days = days_from_civil(y, mo, day)?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// Day count since 1970-01-01 of a (year, month, day) from 1970 on; None for a date that
/// does not exist (2026-02-30) or is before 1970 (the inverse of
/// [`crate::civil::civil_from_days`]).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let leap = y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    if d > month_days[(m - 1) as usize] {
        return None;
    }
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m - 3) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_points() {
        let now = 1_700_000_000_123;
        let p = |t: &str| super::parse_time_point(t, now, "--since");
        assert_eq!(p("now"), Ok(now));
        assert_eq!(p("10m"), Ok(now - 600_000));
        assert_eq!(p("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(p("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(p("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(p("2000-02-29T00:00:00+00:00"), Ok(951_782_400_000));
        for bad in [
            "",
            "yesterday",
            "2023-02-30T00:00:00Z",
            "2023-11-14T25:00:00Z",
            "99999999999999999999",
        ] {
            let e = p(bad).unwrap_err();
            assert!(
                e.contains("--since") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
        // Round trip with utc().
        for ms in [0u64, 951_782_400_000, 1_700_000_000_000, 4_102_444_800_000] {
            assert_eq!(super::parse_rfc3339_utc(&super::utc(ms)), Some(ms));
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400_007), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(super::utc_ms(1_700_000_000_023), "2023-11-14T22:13:20.023Z");
    }
}
