//! jobs: what `dash job` asks of the masters: the jobs with their last run and next slot, a
//! job's runs with their attempts, a run now (`dash job run`, held to the job's concurrency by
//! the state machine), suspend and resume. The runs themselves are the leader's
//! (`job_runner`).

use dash_core::api::ReplicaInfo;
use dash_core::command::Command;
use dash_core::event::{EventDraft, EventKind};
use dash_core::job::api::{AttemptInfo, JobInfo, RunInfo};
use dash_core::job::schedule::{Schedule, format_local};
use dash_core::job::{RunState, RunTrigger};
use dash_store::{JobRow, Rejection, RunRow, ServiceRow, StoreError};

use crate::now_ms;
use crate::state_log::StateLog;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn not_found(name: &str) -> JobError {
    Rejection::NotFound {
        what: "job".into(),
        name: name.to_string(),
    }
    .into()
}

/// The job `name`, or why not (a 404 for none, a 400 for a service).
async fn job_row(log: &StateLog, name: &str) -> Result<(ServiceRow, JobRow), JobError> {
    let row = log
        .store()
        .service(name)
        .await?
        .filter(|r| !r.removing)
        .ok_or_else(|| not_found(name))?;
    if !row.spec.is_job() {
        return Err(Rejection::Invalid {
            field: "name".into(),
            message: format!(
                "{name} is a service, not a job (its file has no kind = \"job\"); `dash job ls` lists jobs"
            ),
        }
        .into());
    }
    let job = log
        .store()
        .jobs()
        .await?
        .into_iter()
        .find(|j| j.service == name)
        .ok_or_else(|| not_found(name))?;
    Ok((row, job))
}

/// Every job.
pub async fn list(log: &StateLog) -> Result<Vec<JobInfo>, JobError> {
    let store = log.store();
    let jobs = store.jobs().await?;
    let runs = store.job_runs(None).await?;
    let replicas = store.replicas(None).await?;
    let now = now_ms();
    let mut out = Vec::new();
    for row in store.services().await? {
        if !row.spec.is_job() || row.removing {
            continue;
        }
        let name = row.spec.name.to_string();
        let Some(job) = jobs.iter().find(|j| j.service == name) else {
            continue;
        };
        let mine: Vec<&RunRow> = runs.iter().filter(|r| r.service == name).collect();
        let attempts: Vec<&ReplicaInfo> = replicas.iter().filter(|r| r.service == name).collect();
        out.push(info(&row, job, &mine, &attempts, now));
    }
    Ok(out)
}

/// One job.
pub async fn inspect(log: &StateLog, name: &str) -> Result<JobInfo, JobError> {
    let (row, job) = job_row(log, name).await?;
    let runs = log.store().job_runs(Some(name)).await?;
    let replicas = log.store().replicas(Some(name)).await?;
    let runs: Vec<&RunRow> = runs.iter().collect();
    let attempts: Vec<&ReplicaInfo> = replicas.iter().collect();
    Ok(info(&row, &job, &runs, &attempts, now_ms()))
}

fn info(
    row: &ServiceRow,
    job: &JobRow,
    runs: &[&RunRow],
    replicas: &[&ReplicaInfo],
    now: u64,
) -> JobInfo {
    let schedule = row.spec.job.as_ref().and_then(|j| j.schedule.as_ref());
    let parsed = schedule.and_then(|s| Schedule::parse(&s.cron, &s.timezone).ok());
    let next = parsed
        .as_ref()
        .filter(|_| !job.suspended)
        .and_then(|p| p.next_after(job.last_slot_ms.max(now)));
    JobInfo {
        name: row.spec.name.to_string(),
        version: row.version,
        schedule: schedule.map(|s| s.cron.clone()),
        timezone: schedule.map(|s| s.timezone.clone()),
        concurrency: schedule.map(|s| s.concurrency).unwrap_or_default(),
        suspended: job.suspended,
        active: runs.iter().filter(|r| r.state == RunState::Running).count() as u32,
        last_run: runs.last().map(|r| run_info(r, replicas)),
        next_run_ms: next,
        next_run_local: next
            .zip(parsed.as_ref())
            .map(|(n, p)| format_local(n, p.timezone())),
        skipped_slots: job.skipped,
    }
}

/// A run with its attempts (the replicas numbered with it, oldest first).
pub fn run_info(r: &RunRow, replicas: &[&ReplicaInfo]) -> RunInfo {
    let mut attempts: Vec<&&ReplicaInfo> = replicas
        .iter()
        .filter(|a| a.service == r.service && a.run == Some(r.run))
        .collect();
    attempts.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
    RunInfo {
        run: r.run,
        version: r.version,
        trigger: r.trigger,
        slot_ms: r.slot_ms,
        state: r.state,
        created_ms: r.created_ms,
        started_ms: attempts.iter().filter_map(|a| a.started_ms).min(),
        finished_ms: r.finished_ms,
        exit_code: r.exit_code,
        attempts: attempts
            .iter()
            .map(|a| AttemptInfo {
                replica: a.id.clone(),
                node: a.node.clone(),
                state: a.state,
                // A start that failed ran no process: no exit code (its message says why).
                exit_code: a.exit_code.filter(|_| {
                    a.state != dash_core::api::ReplicaState::Failed || a.exit_code != Some(-1)
                }),
                started_ms: a.started_ms,
                message: a.message.clone(),
            })
            .collect(),
        message: r.message.clone(),
    }
}

/// The runs of job `name` kept in its history, oldest first.
pub async fn runs(log: &StateLog, name: &str) -> Result<Vec<RunInfo>, JobError> {
    job_row(log, name).await?;
    let runs = log.store().job_runs(Some(name)).await?;
    let replicas = log.store().replicas(Some(name)).await?;
    let replicas: Vec<&ReplicaInfo> = replicas.iter().collect();
    Ok(runs.iter().map(|r| run_info(r, &replicas)).collect())
}

/// `dash job run`: a run now. Refused (409) while a run is in progress and the job's
/// concurrency is `forbid`; with `replace` the runs in progress are stopped first.
pub async fn run_now(log: &StateLog, name: &str) -> Result<RunInfo, JobError> {
    let (row, _) = job_row(log, name).await?;
    let runs = log.store().job_runs(Some(name)).await?;
    let active: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.state == RunState::Running)
        .collect();
    let job = row.spec.job.clone().unwrap_or_default();
    let events = crate::job_runner::start_events(name, &job, RunTrigger::Manual, None, &active);
    let at = now_ms();
    let applied = log
        .propose_with(
            Command::StartJobRun {
                service: name.to_string(),
                trigger: RunTrigger::Manual,
                slot_ms: None,
                at_ms: at,
            },
            events,
        )
        .await?
        .accepted()?;
    let run = applied.run.unwrap_or_default();
    Ok(RunInfo {
        run,
        version: row.version,
        trigger: RunTrigger::Manual,
        slot_ms: None,
        state: RunState::Running,
        created_ms: at,
        started_ms: None,
        finished_ms: None,
        exit_code: None,
        attempts: Vec::new(),
        message: String::new(),
    })
}

/// `dash job suspend` (`true`) / `resume`.
pub async fn suspend(log: &StateLog, name: &str, suspended: bool) -> Result<JobInfo, JobError> {
    job_row(log, name).await?;
    let (kind, text) = if suspended {
        (
            EventKind::JobSuspended,
            "suspended: no scheduled run starts",
        )
    } else {
        (
            EventKind::JobResumed,
            "resumed: its schedule starts again from now (missed slots are not run)",
        )
    };
    log.propose_with(
        Command::SetJobSuspended {
            service: name.to_string(),
            suspended,
            at_ms: now_ms(),
        },
        vec![EventDraft::service(kind, name, None, text)],
    )
    .await?
    .accepted()?;
    inspect(log, name).await
}
