//! Timestamps of log lines: RFC 3339 UTC with milliseconds, written without std::fmt.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z.
pub fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(24);
    push_num(&mut s, y, 4);
    s.push('-');
    push_num(&mut s, m, 2);
    s.push('-');
    push_num(&mut s, d, 2);
    s.push('T');
    push_num(&mut s, rem / 3600, 2);
    s.push(':');
    push_num(&mut s, rem / 60 % 60, 2);
    s.push(':');
    push_num(&mut s, rem % 60, 2);
    s.push('.');
    push_num(&mut s, u64::from(millis), 3);
    s.push('Z');
    s
}

/// Zero-padded decimal without std::fmt.
fn push_num(s: &mut String, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while v > 0 || digits.len() - i < width {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    s.extend(digits[i..].iter().map(|b| *b as char));
}

#[path = "../../dash-core/src/civil.rs"]
mod civil;
use civil::civil_from_days;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
    }
}
