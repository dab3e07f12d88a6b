//! `kind = "job"`: the `[job]` and `[schedule]` sections, and what a job may not have.

use toml::Spanned;

use super::raw::{RawJob, RawSchedule, RawService};
use super::validate::Ctx;
use crate::job::schedule::{CRON_FORMS, Schedule, ScheduleError};
use crate::job::{
    Concurrency, JobSpec, Kind, MAX_BACKOFF_LIMIT, MAX_COMPLETIONS, MAX_HISTORY, ScheduleSpec,
};

/// The file's `kind` and, for a job, its `[job]` and `[schedule]`; reports fields a job
/// cannot have, and `[job]`/`[schedule]` in a service.
pub(super) fn validate(cx: &mut Ctx<'_>, raw: &RawService) -> (Kind, Option<JobSpec>) {
    let kind = match raw.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
        None | Some((_, "service")) => Kind::Service,
        Some((_, "job")) => Kind::Job,
        Some((k, other)) => {
            cx.report(
                k,
                "kind",
                format!("kind = {other:?}: unknown kind"),
                "use \"service\" (the default: replicas that keep running) or \"job\" (runs to completion)",
            );
            Kind::Service
        }
    };
    if kind == Kind::Service {
        for (span, section) in [
            (raw.job.as_ref().map(Spanned::span), "[job]"),
            (raw.schedule.as_ref().map(Spanned::span), "[schedule]"),
        ] {
            if let Some(span) = span {
                cx.report(
                    &Spanned::new(span, ()),
                    section.trim_matches(['[', ']']),
                    format!("{section} is only for jobs"),
                    "add kind = \"job\" at the top of the file, or remove the section",
                );
            }
        }
        return (kind, None);
    }
    not_for_jobs(cx, raw);
    let mut job = JobSpec::default();
    if let Some(j) = &raw.job {
        job_section(cx, j.get_ref(), &mut job);
    }
    if let Some(s) = &raw.schedule {
        job.schedule = schedule_section(cx, s.get_ref(), &mut job);
    }
    (kind, Some(job))
}

/// What a service may have and a job may not, each with why.
fn not_for_jobs(cx: &mut Ctx<'_>, raw: &RawService) {
    let mut no = |span: Option<std::ops::Range<usize>>, field: &str, why: &str, help: &str| {
        if let Some(span) = span {
            cx.report(
                &Spanned::new(span, ()),
                field,
                format!("{field}: a job has no {why}"),
                help,
            );
        }
    };
    no(
        raw.replicas.as_ref().map(Spanned::span),
        "replicas",
        "replicas of its own: each run starts its attempts",
        "remove it; set [job] parallelism (attempts at once) and completions instead",
    );
    if raw
        .mode
        .as_ref()
        .is_some_and(|m| m.get_ref().as_str() == "global")
    {
        no(
            raw.mode.as_ref().map(Spanned::span),
            "mode",
            "global mode: a run's attempts are placed by the scheduler",
            "remove mode (or use mode = \"replicated\")",
        );
    }
    no(
        raw.ports
            .as_ref()
            .and_then(|p| p.first())
            .map(Spanned::span),
        "ports",
        "ports: nothing connects to a run",
        "remove [[ports]]; a job that serves is a service (kind = \"service\")",
    );
    no(
        raw.routes
            .as_ref()
            .and_then(|r| r.first())
            .map(Spanned::span),
        "routes",
        "proxy routes: nothing connects to a run",
        "remove [[routes]]",
    );
    no(
        raw.health.as_ref().map(Spanned::span),
        "health",
        "health check: an attempt succeeds by exiting 0",
        "remove [health]",
    );
    no(
        raw.autoscale.as_ref().map(Spanned::span),
        "autoscale",
        "autoscaling: [job] parallelism says how many attempts run at once",
        "remove [autoscale]",
    );
    no(
        raw.restart.as_ref().map(Spanned::span),
        "restart",
        "restart policy of its own: failed attempts are retried up to [job] backoff_limit",
        "remove [restart]; set [job] backoff_limit = 3, say",
    );
}

fn job_section(cx: &mut Ctx<'_>, j: &RawJob, job: &mut JobSpec) {
    let max = i64::from(MAX_COMPLETIONS);
    if let Some(c) = &j.completions {
        job.completions = cx
            .int(
                c,
                "job.completions",
                1,
                max,
                "the successful attempts a run needs, e.g. completions = 1",
            )
            .map_or(1, |n| n as u32);
    }
    if let Some(p) = &j.parallelism {
        job.parallelism = cx
            .int(
                p,
                "job.parallelism",
                1,
                max,
                "the attempts of a run that run at once, e.g. parallelism = 1",
            )
            .map_or(1, |n| n as u32);
    }
    if let Some(b) = &j.backoff_limit {
        job.backoff_limit = cx
            .int(
                b,
                "job.backoff_limit",
                0,
                i64::from(MAX_BACKOFF_LIMIT),
                "failed attempts retried before the run fails; 0: no retry",
            )
            .map_or(job.backoff_limit, |n| n as u32);
    }
    if let Some(d) = &j.deadline {
        let deadline = cx.duration(&j.deadline, "job.deadline", std::time::Duration::ZERO);
        if deadline < std::time::Duration::from_secs(1) {
            if !deadline.is_zero() || crate::units::parse_duration(d.get_ref()).is_ok() {
                cx.report(
                    d,
                    "job.deadline",
                    format!("job.deadline = {:?}: shorter than 1s", d.get_ref()),
                    "e.g. deadline = \"30m\"; leave it out for no deadline",
                );
            }
        } else {
            job.deadline = Some(deadline);
        }
    }
}

fn schedule_section(cx: &mut Ctx<'_>, s: &RawSchedule, job: &mut JobSpec) -> Option<ScheduleSpec> {
    let timezone = s
        .timezone
        .as_ref()
        .map_or_else(|| "UTC".to_string(), |t| t.get_ref().trim().to_string());
    let mut ok = true;
    let zone = match (&s.timezone, crate::job::schedule::parse_timezone(&timezone)) {
        (Some(t), Err(m)) => {
            cx.report(
                t,
                "schedule.timezone",
                format!("schedule.timezone = {m}"),
                "leave it out for UTC",
            );
            ok = false;
            "UTC"
        }
        _ => timezone.as_str(),
    };
    // The cron is checked whatever the zone: both problems are reported at once.
    match Schedule::parse(s.cron.get_ref(), zone) {
        // 2000-01-01: a pattern that ever matches does so within the supported years.
        Ok(parsed) if parsed.next_after(946_684_800_000).is_none() => {
            cx.report(
                &s.cron,
                "schedule.cron",
                format!(
                    "schedule.cron = {:?}: no date ever matches (e.g. 30 February)",
                    s.cron.get_ref()
                ),
                CRON_FORMS,
            );
            ok = false;
        }
        Ok(_) => {}
        Err(ScheduleError::Cron(m) | ScheduleError::Timezone(m)) => {
            cx.report(
                &s.cron,
                "schedule.cron",
                format!("schedule.cron = {m}"),
                CRON_FORMS,
            );
            ok = false;
        }
    }
    let concurrency = match s.concurrency.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None => Concurrency::default(),
        Some((_, "forbid")) => Concurrency::Forbid,
        Some((_, "allow")) => Concurrency::Allow,
        Some((_, "replace")) => Concurrency::Replace,
        Some((c, other)) => {
            cx.report(
                c,
                "schedule.concurrency",
                format!("schedule.concurrency = {other:?}: unknown policy"),
                "use \"forbid\" (skip a slot while a run is in progress), \"allow\" (run both) or \"replace\" (stop the running one)",
            );
            Concurrency::default()
        }
    };
    let mut starting_deadline = None;
    if let Some(d) = &s.starting_deadline {
        let v = cx.duration(
            &s.starting_deadline,
            "schedule.starting_deadline",
            std::time::Duration::ZERO,
        );
        if v >= std::time::Duration::from_secs(1) {
            starting_deadline = Some(v);
        } else if crate::units::parse_duration(d.get_ref()).is_ok() {
            cx.report(
                d,
                "schedule.starting_deadline",
                format!(
                    "schedule.starting_deadline = {:?}: shorter than 1s",
                    d.get_ref()
                ),
                "e.g. starting_deadline = \"10m\"; leave it out to run a missed slot however late",
            );
        }
    }
    if let Some(h) = &s.history {
        job.history = cx
            .int(
                h,
                "schedule.history",
                0,
                i64::from(MAX_HISTORY),
                "finished runs kept with their logs, e.g. history = 5",
            )
            .map_or(job.history, |n| n as u32);
    }
    ok.then(|| ScheduleSpec {
        cron: s.cron.get_ref().trim().to_string(),
        timezone,
        concurrency,
        starting_deadline,
    })
}
