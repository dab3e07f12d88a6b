//! Slots against reference lists written by hand from the 2027 DST changes:
//! Europe/Paris: 28 March 02:00 CET → 03:00 CEST (01:00 UTC); 31 October 03:00 CEST → 02:00 CET
//! (01:00 UTC). America/New_York: 14 March 02:00 EST → 03:00 EDT (07:00 UTC); 7 November
//! 02:00 EDT → 01:00 EST (06:00 UTC).

#![allow(clippy::unwrap_used)]

use super::schedule::{Schedule, ScheduleError};

fn ms(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis() as u64
}

fn slots(cron: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let s = Schedule::parse(cron, tz).unwrap();
    s.slots(ms(from), u64::MAX, n)
        .into_iter()
        .map(|t| {
            chrono::DateTime::from_timestamp_millis(t as i64)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .collect()
}

#[test]
fn paris_spring_forward_a_0230_slot_runs_once_at_0300() {
    assert_eq!(
        slots("30 2 * * *", "Europe/Paris", "2027-03-26T12:00:00Z", 4),
        [
            "2027-03-27T01:30:00Z", // 02:30 CET
            "2027-03-28T01:00:00Z", // 02:30 does not exist: 03:00 CEST
            "2027-03-29T00:30:00Z", // 02:30 CEST
            "2027-03-30T00:30:00Z",
        ]
    );
}

#[test]
fn paris_spring_forward_hourly_has_no_double_at_0300() {
    assert_eq!(
        slots("0 * * * *", "Europe/Paris", "2027-03-27T23:30:00Z", 3),
        [
            "2027-03-28T00:00:00Z", // 01:00 CET
            "2027-03-28T01:00:00Z", // 02:00 (gap) and 03:00 CEST: one slot
            "2027-03-28T02:00:00Z", // 04:00 CEST
        ]
    );
}

#[test]
fn paris_fall_back_the_repeated_hour_runs_once() {
    assert_eq!(
        slots("30 2 * * *", "Europe/Paris", "2027-10-29T12:00:00Z", 3),
        [
            "2027-10-30T00:30:00Z", // 02:30 CEST
            "2027-10-31T00:30:00Z", // 02:30 twice: the first (CEST) only
            "2027-11-01T01:30:00Z", // 02:30 CET
        ]
    );
    assert_eq!(
        slots("0 * * * *", "Europe/Paris", "2027-10-30T22:30:00Z", 4),
        [
            "2027-10-30T23:00:00Z", // 01:00 CEST
            "2027-10-31T00:00:00Z", // 02:00 CEST
            "2027-10-31T02:00:00Z", // 03:00 CET (02:00 CET, the repeat, is not run)
            "2027-10-31T03:00:00Z",
        ]
    );
}

#[test]
fn new_york_spring_forward_slots_in_the_gap_make_one() {
    assert_eq!(
        slots(
            "*/30 * * * *",
            "America/New_York",
            "2027-03-14T06:00:00Z",
            4
        ),
        [
            "2027-03-14T06:30:00Z", // 01:30 EST
            "2027-03-14T07:00:00Z", // 02:00 and 02:30 do not exist: 03:00 EDT, once
            "2027-03-14T07:30:00Z", // 03:30 EDT
            "2027-03-14T08:00:00Z",
        ]
    );
    assert_eq!(
        slots("0 9 * * 1-5", "America/New_York", "2027-03-12T00:00:00Z", 2),
        ["2027-03-12T14:00:00Z", "2027-03-15T13:00:00Z"] // 09:00 EST Fri, 09:00 EDT Mon
    );
}

#[test]
fn new_york_fall_back_the_repeated_hour_runs_once() {
    assert_eq!(
        slots("30 1 * * *", "America/New_York", "2027-11-05T12:00:00Z", 3),
        [
            "2027-11-06T05:30:00Z", // 01:30 EDT
            "2027-11-07T05:30:00Z", // 01:30 twice: the first (EDT) only
            "2027-11-08T06:30:00Z", // 01:30 EST
        ]
    );
    // From inside the repeat's second pass: nothing more until 02:00 EST.
    assert_eq!(
        slots(
            "*/15 * * * *",
            "America/New_York",
            "2027-11-07T06:10:00Z",
            2
        ),
        ["2027-11-07T07:00:00Z", "2027-11-07T07:15:00Z"]
    );
}

#[test]
fn shorthands_and_utc() {
    assert_eq!(
        slots("@daily", "UTC", "2027-01-01T00:00:00Z", 2),
        ["2027-01-02T00:00:00Z", "2027-01-03T00:00:00Z"]
    );
    assert_eq!(
        slots("@hourly", "UTC", "2027-01-01T00:10:00Z", 1),
        ["2027-01-01T01:00:00Z"]
    );
    assert_eq!(
        slots("@weekly", "UTC", "2027-01-01T00:00:00Z", 1), // a Friday
        ["2027-01-03T00:00:00Z"]
    );
    assert_eq!(
        slots("0 3 * * *", "UTC", "2027-01-01T03:00:00Z", 1), // strictly after
        ["2027-01-02T03:00:00Z"]
    );
}

#[test]
fn every_is_aligned_on_the_epoch() {
    let s = Schedule::parse("@every 5s", "UTC").unwrap();
    assert_eq!(s.next_after(0), Some(5_000));
    assert_eq!(s.next_after(4_999), Some(5_000));
    assert_eq!(s.next_after(5_000), Some(10_000));
    assert_eq!(
        s.slots(1_000, 21_000, 10),
        vec![5_000, 10_000, 15_000, 20_000]
    );
    assert_eq!(s.slots(1_000, 21_000, 2), vec![5_000, 10_000]);
    // The time zone does not move @every.
    let p = Schedule::parse("@every 10m", "Europe/Paris").unwrap();
    assert_eq!(p.next_after(1), Some(600_000));
}

#[test]
fn bad_patterns_name_the_field_and_what_it_takes() {
    let err = |c: &str| match Schedule::parse(c, "UTC") {
        Err(ScheduleError::Cron(m)) => m,
        other => panic!("{c}: {other:?}"),
    };
    let m = err("61 * * * *");
    assert!(
        m.contains("minute field \"61\"") && m.contains("0-59"),
        "{m}"
    );
    let m = err("0 24 * * *");
    assert!(m.contains("hour field \"24\"") && m.contains("0-23"), "{m}");
    let m = err("0 0 * 13 *");
    assert!(m.contains("month field"), "{m}");
    let m = err("* * * *");
    assert!(m.contains("has 4 fields") && m.contains("@every"), "{m}");
    let m = err("0 0 0 * * *");
    assert!(m.contains("has 6 fields"), "{m}");
    assert!(err("@reboot").contains("unknown shorthand"));
    assert!(err("@every 500ms").contains("at least 1s"));
    assert!(err("@every soon").contains("duration"));
    match Schedule::parse("0 3 * * *", "Mars/Olympus") {
        Err(ScheduleError::Timezone(m)) => assert!(m.contains("IANA"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_impossible_date_has_no_slot() {
    let s = Schedule::parse("0 0 30 2 *", "UTC").unwrap();
    assert_eq!(s.next_after(ms("2027-01-01T00:00:00Z")), None);
}
