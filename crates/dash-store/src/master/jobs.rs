//! Jobs in the state: their transitions (`Command::StartJobRun`, `SkipJobSlots`,
//! `FinishJobRun`, `SetJobSuspended`) and reads.
//!
//! The rules that make a schedule at-most-once live here, in the state machine, so that they
//! hold whichever master proposed and however often a command is retried: a slot at or
//! before the last decided one is refused; with `concurrency = "forbid"` a run is refused
//! while another is in progress (a `dash job run` racing a slot); run numbers are handed out
//! here, one after the other.

use dash_core::ServiceSpec;
use dash_core::job::{Concurrency, RunState, RunTrigger};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Applied, MasterStore, Rejection, StoreError, corrupt};

type Tx<'a, 'b> = &'a mut sqlx::Transaction<'b, sqlx::Sqlite>;

/// A job's schedule state (`jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub service: String,
    pub suspended: bool,
    /// Slots at or before this are decided.
    pub last_slot_ms: u64,
    /// The number the next run gets.
    pub next_run: u64,
    /// Slots skipped since the job was created.
    pub skipped: u64,
    /// The version the last apply-triggered run was for.
    pub applied_version: u64,
}

/// A run as recorded (`job_runs`); its attempts are the replicas with its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub service: String,
    pub run: u64,
    pub version: u64,
    pub trigger: RunTrigger,
    pub slot_ms: Option<u64>,
    pub state: RunState,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub message: String,
}

impl RunRow {
    /// When it is due to start: its slot if that is later than when it was recorded.
    pub fn start_ms(&self) -> u64 {
        self.slot_ms
            .map_or(self.created_ms, |s| s.max(self.created_ms))
    }
}

/// The job `service` as the state has it: its spec and version, or the refusal.
async fn job_spec(tx: Tx<'_, '_>, service: &str) -> Result<(ServiceSpec, u64), StoreError> {
    let row = sqlx::query("SELECT spec, version, removing FROM services WHERE name = ?")
        .bind(service)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Rejection::NotFound {
            what: "job".into(),
            name: service.to_string(),
        })?;
    if row.get::<i64, _>("removing") != 0 {
        return Err(Rejection::Conflict(format!("job {service} is being removed")).into());
    }
    let spec: ServiceSpec =
        serde_json::from_str(row.get("spec")).map_err(|e| corrupt("service spec", e))?;
    if !spec.is_job() {
        return Err(Rejection::Invalid {
            field: "name".into(),
            message: format!(
                "{service} is a service, not a job (its file has no kind = \"job\"); `dash job` works on jobs only"
            ),
        }
        .into());
    }
    Ok((spec, row.get::<i64, _>("version") as u64))
}

/// `PutService` of a job: its schedule state, from now on (slots before it are not its); a
/// schedule added or changed (cron, zone) also counts from now, so that applying it does not
/// run a slot the new schedule "missed" before it existed.
pub(super) async fn on_put(
    tx: Tx<'_, '_>,
    old: Option<&ServiceSpec>,
    new: &ServiceSpec,
    at_ms: u64,
) -> Result<(), StoreError> {
    let service = new.name.as_str();
    ensure_job(tx, service, at_ms).await?;
    let when = |s: Option<&ServiceSpec>| {
        s.and_then(|s| s.job.as_ref())
            .and_then(|j| j.schedule.as_ref())
            .map(|s| (s.cron.clone(), s.timezone.clone()))
    };
    if old.is_some() && when(old) != when(Some(new)) {
        sqlx::query("UPDATE jobs SET last_slot_ms = MAX(last_slot_ms, ?) WHERE service = ?")
            .bind(at_ms as i64)
            .bind(service)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn ensure_job(tx: Tx<'_, '_>, service: &str, at_ms: u64) -> Result<(), StoreError> {
    sqlx::query("INSERT OR IGNORE INTO jobs (service, last_slot_ms) VALUES (?, ?)")
        .bind(service)
        .bind(at_ms as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn job_row(tx: Tx<'_, '_>, service: &str) -> Result<JobRow, StoreError> {
    let row = sqlx::query("SELECT * FROM jobs WHERE service = ?")
        .bind(service)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| corrupt("job", format!("job {service} has no schedule state")))?;
    Ok(job_of(&row))
}

fn job_of(row: &SqliteRow) -> JobRow {
    JobRow {
        service: row.get("service"),
        suspended: row.get::<i64, _>("suspended") != 0,
        last_slot_ms: row.get::<i64, _>("last_slot_ms") as u64,
        next_run: row.get::<i64, _>("next_run") as u64,
        skipped: row.get::<i64, _>("skipped") as u64,
        applied_version: row.get::<i64, _>("applied_version") as u64,
    }
}

async fn active_runs(tx: Tx<'_, '_>, service: &str) -> Result<Vec<u64>, StoreError> {
    let runs: Vec<i64> = sqlx::query_scalar(
        "SELECT run FROM job_runs WHERE service = ? AND state = 'running' ORDER BY run",
    )
    .bind(service)
    .fetch_all(&mut **tx)
    .await?;
    Ok(runs.into_iter().map(|r| r as u64).collect())
}

/// `StartJobRun`.
pub(super) async fn start_run(
    tx: Tx<'_, '_>,
    service: &str,
    trigger: RunTrigger,
    slot_ms: Option<u64>,
    at_ms: u64,
) -> Result<Applied, StoreError> {
    let (spec, version) = job_spec(tx, service).await?;
    ensure_job(tx, service, at_ms).await?;
    let job = job_row(tx, service).await?;
    let schedule = spec.job.as_ref().and_then(|j| j.schedule.as_ref());
    match trigger {
        RunTrigger::Schedule => {
            let Some(slot) = slot_ms else {
                return Err(Rejection::Invalid {
                    field: "slot_ms".into(),
                    message: "a scheduled run needs its slot".into(),
                }
                .into());
            };
            if schedule.is_none() {
                return Err(Rejection::Conflict(format!("job {service} has no [schedule]")).into());
            }
            if slot <= job.last_slot_ms {
                return Err(Rejection::Conflict(format!(
                    "the slot at {} of job {service} is decided already",
                    dash_core::clock::utc_ms(slot)
                ))
                .into());
            }
        }
        RunTrigger::Apply if version <= job.applied_version => {
            return Err(Rejection::Conflict(format!(
                "version {version} of job {service} has had its run"
            ))
            .into());
        }
        RunTrigger::Apply | RunTrigger::Manual => {}
    }
    if job.suspended {
        return Err(Rejection::Conflict(format!(
            "job {service} is suspended: it starts no run until `dash job resume {service}`"
        ))
        .into());
    }
    let concurrency = schedule.map(|s| s.concurrency).unwrap_or_default();
    let active = active_runs(tx, service).await?;
    let run = job.next_run;
    if let Some(&running) = active.last() {
        match concurrency {
            Concurrency::Forbid => {
                return Err(Rejection::Conflict(format!(
                    "job {service}: run {running} is still running and concurrency = \"forbid\"; \
                     wait for it to end (dash job history {service}), or set concurrency = \
                     \"allow\" or \"replace\" in its [schedule]"
                ))
                .into());
            }
            Concurrency::Replace => {
                for r in &active {
                    end_run(
                        tx,
                        service,
                        *r,
                        RunState::Stopped,
                        None,
                        &format!("replaced by run {run} (concurrency = \"replace\")"),
                        at_ms,
                    )
                    .await?;
                }
                // Runs replaced one after the other must leave the history too.
                prune(tx, service, spec.job.as_ref().map_or(0, |j| j.history)).await?;
            }
            Concurrency::Allow => {}
        }
    }
    sqlx::query(
        "INSERT INTO job_runs (service, run, version, trigger, slot_ms, state, created_ms)
         VALUES (?, ?, ?, ?, ?, 'running', ?)",
    )
    .bind(service)
    .bind(run as i64)
    .bind(version as i64)
    .bind(trigger.as_str())
    .bind(slot_ms.map(|s| s as i64))
    .bind(at_ms as i64)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET next_run = next_run + 1,
           last_slot_ms = MAX(last_slot_ms, COALESCE(?, last_slot_ms)),
           applied_version = CASE WHEN ? = 'apply' THEN ? ELSE applied_version END
         WHERE service = ?",
    )
    .bind(slot_ms.map(|s| s as i64))
    .bind(trigger.as_str())
    .bind(version as i64)
    .bind(service)
    .execute(&mut **tx)
    .await?;
    Ok(Applied {
        changed: true,
        run: Some(run),
        ..Applied::default()
    })
}

/// `SkipJobSlots`: slots after the last decided one become decided; the others changed
/// nothing (a retry).
pub(super) async fn skip_slots(
    tx: Tx<'_, '_>,
    service: &str,
    slots: &[u64],
) -> Result<bool, StoreError> {
    job_spec(tx, service).await?;
    let job = job_row(tx, service).await?;
    let new: Vec<u64> = slots
        .iter()
        .copied()
        .filter(|s| *s > job.last_slot_ms)
        .collect();
    let Some(&last) = new.iter().max() else {
        return Ok(false);
    };
    sqlx::query("UPDATE jobs SET last_slot_ms = ?, skipped = skipped + ? WHERE service = ?")
        .bind(last as i64)
        .bind(new.len() as i64)
        .bind(service)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// `FinishJobRun`: ends a run in progress (nothing for one already over), then prunes the
/// history to the job's `history` finished runs.
pub(super) async fn finish_run(
    tx: Tx<'_, '_>,
    service: &str,
    run: u64,
    state: RunState,
    exit_code: Option<i32>,
    message: &str,
    at_ms: u64,
) -> Result<bool, StoreError> {
    if state == RunState::Running {
        return Err(Rejection::Invalid {
            field: "state".into(),
            message: "a run finishes as succeeded, failed or stopped".into(),
        }
        .into());
    }
    let (spec, _) = job_spec(tx, service).await?;
    if !end_run(tx, service, run, state, exit_code, message, at_ms).await? {
        return Ok(false);
    }
    let keep = spec.job.as_ref().map_or(0, |j| j.history);
    prune(tx, service, keep).await?;
    Ok(true)
}

/// Ends run `run` if it is in progress: its attempts still meant to run are stopped (and kept).
async fn end_run(
    tx: Tx<'_, '_>,
    service: &str,
    run: u64,
    state: RunState,
    exit_code: Option<i32>,
    message: &str,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let ended = sqlx::query(
        "UPDATE job_runs SET state = ?, finished_ms = ?, exit_code = ?, message = ?
         WHERE service = ? AND run = ? AND state = 'running'",
    )
    .bind(state.as_str())
    .bind(at_ms as i64)
    .bind(exit_code)
    .bind(message)
    .bind(service)
    .bind(run as i64)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if ended {
        // Never placed: nothing to stop anywhere.
        sqlx::query("DELETE FROM replicas WHERE service = ? AND run = ? AND node IS NULL")
            .bind(service)
            .bind(run as i64)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE replicas SET desired = 'stop' WHERE service = ? AND run = ? AND desired = 'run'",
        )
        .bind(service)
        .bind(run as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(ended)
}

/// Finished runs beyond the newest `keep` leave the state; their replicas are removed (their
/// nodes delete the containers and logs).
async fn prune(tx: Tx<'_, '_>, service: &str, keep: u32) -> Result<(), StoreError> {
    let old: Vec<i64> = sqlx::query_scalar(
        "SELECT run FROM job_runs WHERE service = ? AND state != 'running'
         ORDER BY run DESC LIMIT -1 OFFSET ?",
    )
    .bind(service)
    .bind(i64::from(keep))
    .fetch_all(&mut **tx)
    .await?;
    for run in old {
        sqlx::query("DELETE FROM replicas WHERE service = ? AND run = ? AND node IS NULL")
            .bind(service)
            .bind(run)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE replicas SET desired = 'remove' WHERE service = ? AND run = ?")
            .bind(service)
            .bind(run)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM job_runs WHERE service = ? AND run = ?")
            .bind(service)
            .bind(run)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `SetJobSuspended`.
pub(super) async fn set_suspended(
    tx: Tx<'_, '_>,
    service: &str,
    suspended: bool,
    at_ms: u64,
) -> Result<bool, StoreError> {
    job_spec(tx, service).await?;
    ensure_job(tx, service, at_ms).await?;
    let changed = sqlx::query(
        "UPDATE jobs SET suspended = ?,
           last_slot_ms = CASE WHEN ? = 0 THEN MAX(last_slot_ms, ?) ELSE last_slot_ms END
         WHERE service = ? AND suspended != ?",
    )
    .bind(i64::from(suspended))
    .bind(i64::from(suspended))
    .bind(at_ms as i64)
    .bind(service)
    .bind(i64::from(suspended))
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    Ok(changed)
}

fn run_of(row: &SqliteRow) -> Result<RunRow, StoreError> {
    let trigger: String = row.get("trigger");
    let state: String = row.get("state");
    Ok(RunRow {
        service: row.get("service"),
        run: row.get::<i64, _>("run") as u64,
        version: row.get::<i64, _>("version") as u64,
        trigger: RunTrigger::parse(&trigger).ok_or_else(|| corrupt("run trigger", &trigger))?,
        slot_ms: row.get::<Option<i64>, _>("slot_ms").map(|v| v as u64),
        state: RunState::parse(&state).ok_or_else(|| corrupt("run state", &state))?,
        created_ms: row.get::<i64, _>("created_ms") as u64,
        finished_ms: row.get::<Option<i64>, _>("finished_ms").map(|v| v as u64),
        exit_code: row.get::<Option<i64>, _>("exit_code").map(|c| c as i32),
        message: row.get("message"),
    })
}

impl MasterStore {
    /// Every job's schedule state.
    pub async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY service")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(job_of).collect())
    }

    /// The runs of `service` (of every job when None), oldest first.
    pub async fn job_runs(&self, service: Option<&str>) -> Result<Vec<RunRow>, StoreError> {
        let rows = match service {
            Some(s) => {
                sqlx::query("SELECT * FROM job_runs WHERE service = ? ORDER BY run")
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM job_runs ORDER BY service, run")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(run_of).collect()
    }
}
