//! A job's `[schedule]` as instants: which slots fall in a span of time.
//!
//! Cron fields are matched on the wall clock of the schedule's time zone (by `croner`, on
//! naive local times, so that no DST rule of a library decides for us); each matching local
//! time then becomes an instant by Dash's own rules, the same on every master:
//!
//! - a local time that exists once is that instant;
//! - a local time that exists twice (the repeated hour when clocks go back) is its first
//!   instant only: a slot in the repeated hour runs once;
//! - a local time that does not exist (the hour skipped when clocks go forward) is the first
//!   instant after the gap (03:00 for a 02:30 slot in Paris): it runs once, late, rather than
//!   never; several skipped slots of one gap make one.
//!
//! `@every <duration>` slots are multiples of the duration since the Unix epoch: the same
//! instants on every master, whenever the job was applied, and no time zone involved.

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The shortest `@every`.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pattern: Pattern,
    tz: Tz,
}

#[derive(Debug, Clone)]
enum Pattern {
    Every(u64),
    Cron(Box<Cron>),
}

/// The cron fields, in order, with what each accepts.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat (0 and 7 are Sunday), #, L"),
];

/// What a `cron` value may be, for error messages.
pub const CRON_FORMS: &str = "5 fields (minute hour day-of-month month day-of-week, \
    e.g. \"0 3 * * *\"), @hourly, @daily, @weekly, @monthly, @yearly, or @every <duration> \
    (e.g. \"@every 10m\")";

impl Schedule {
    /// Parses `cron` read in time zone `timezone`; the error says what is wrong and what
    /// is accepted (for the field `schedule.cron`, or `schedule.timezone`).
    pub fn parse(cron: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let tz = parse_timezone(timezone).map_err(ScheduleError::Timezone)?;
        let pattern = parse_pattern(cron).map_err(ScheduleError::Cron)?;
        Ok(Schedule { pattern, tz })
    }

    /// The first slot strictly after `after_ms` (ms since the Unix epoch); None when there is
    /// none before the end of the supported years (a pattern such as `0 0 30 2 *`).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match &self.pattern {
            Pattern::Every(every) => (after_ms / every + 1).checked_mul(*every),
            Pattern::Cron(cron) => self.next_cron(cron, after_ms),
        }
    }

    /// The slots in `(after_ms, until_ms]`, oldest first, at most `limit` of them.
    pub fn slots(&self, after_ms: u64, until_ms: u64, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = after_ms;
        while out.len() < limit {
            match self.next_after(at) {
                Some(s) if s <= until_ms => {
                    out.push(s);
                    at = s;
                }
                _ => break,
            }
        }
        out
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    fn next_cron(&self, cron: &Cron, after_ms: u64) -> Option<u64> {
        let after = DateTime::<Utc>::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
        let mut cursor = after.with_timezone(&self.tz).naive_local();
        // Matches in a repeated hour's second pass map to instants before `after`: step over
        // them (an hour of minutes at most, twice for a pattern that matches every minute).
        for _ in 0..512 {
            let next = cron.find_next_occurrence(&cursor, false).ok()?;
            let at = self.instant(next)?;
            if at > after_ms {
                return Some(at);
            }
            cursor = next;
        }
        None
    }

    /// The instant of local time `local` by the rules in the module's doc.
    fn instant(&self, local: NaiveDateTime) -> Option<u64> {
        let dt = match self.tz.from_local_datetime(&local) {
            LocalResult::Single(dt) => dt,
            LocalResult::Ambiguous(first, second) => first.min(second),
            LocalResult::None => {
                // In a gap: the first local minute after it.
                let mut t = local;
                let mut found = None;
                for _ in 0..(26 * 60) {
                    t += chrono::Duration::minutes(1);
                    if let Some(dt) = self.tz.from_local_datetime(&t).earliest() {
                        // The gap ended at the first valid minute; its start on the wall clock
                        // is that minute with seconds zeroed (already: croner gives :00).
                        found = Some(dt);
                        break;
                    }
                }
                found?
            }
        };
        u64::try_from(dt.timestamp_millis()).ok()
    }
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Cron(String),
    #[error("{0}")]
    Timezone(String),
}

/// An IANA time zone name (`Europe/Paris`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "{name:?} is not an IANA time zone name; e.g. \"UTC\", \"Europe/Paris\", \
             \"America/New_York\" (the names in /usr/share/zoneinfo)"
        )
    })
}

fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("@every") {
        let d = crate::units::parse_duration(rest.trim())
            .map_err(|e| format!("{text:?}: @every needs a duration ({e}), e.g. \"@every 10m\""))?;
        if d < MIN_EVERY {
            return Err(format!(
                "{text:?}: @every is at least 1s (slots are whole milliseconds, decided by the \
                 leader; shorter intervals would be a service, not a job)"
            ));
        }
        let ms = u64::try_from(d.as_millis()).map_err(|_| format!("{text:?}: too long"))?;
        return Ok(Pattern::Every(ms));
    }
    if t.starts_with('@') {
        let nick = t.to_ascii_lowercase();
        if ![
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ]
        .contains(&nick.as_str())
        {
            return Err(format!(
                "{text:?}: unknown shorthand; accepted: {CRON_FORMS}"
            ));
        }
        let five = match nick.as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            _ => "0 0 1 1 *",
        };
        return cron_parser()
            .parse(five)
            .map(|c| Pattern::Cron(Box::new(c)))
            .map_err(|e| format!("{text:?}: {e}"));
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "{text:?} has {} fields; accepted: {CRON_FORMS}",
            fields.len()
        ));
    }
    // Each field alone first, so that the message names the field that is wrong.
    for (i, ((name, accepted), value)) in FIELDS.iter().zip(&fields).enumerate() {
        let probe: Vec<&str> = (0..FIELDS.len())
            .map(|j| if i == j { *value } else { "*" })
            .collect();
        if let Err(e) = cron_parser().parse(&probe.join(" ")) {
            return Err(format!(
                "{text:?}: the {name} field {value:?} is not valid ({}); the {name} field \
                 takes {accepted}, with *, lists (1,5), ranges (1-5) and steps (*/15)",
                croner_reason(&e)
            ));
        }
    }
    cron_parser()
        .parse(t)
        .map(|c| Pattern::Cron(Box::new(c)))
        .map_err(|e| format!("{text:?}: {}; accepted: {CRON_FORMS}", croner_reason(&e)))
}

/// croner's message without its prefixes.
fn croner_reason(e: &croner::errors::CronError) -> String {
    let s = e.to_string();
    s.trim_start_matches("Invalid pattern: ")
        .trim_start_matches("Component error: ")
        .trim_end_matches('.')
        .to_string()
}

/// Standard 5-field cron: no seconds, no years.
fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// `at_ms` as a local time of `tz` for people (`2027-03-28 03:00 CEST`).
pub fn format_local(at_ms: u64, tz: Tz) -> String {
    match i64::try_from(at_ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(t) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        None => at_ms.to_string(),
    }
}
