//! The admin API's view of jobs: `GET /v1/jobs`, `GET /v1/jobs/{name}/runs`.

use serde::{Deserialize, Serialize};

use super::{Concurrency, RunState, RunTrigger};
use crate::api::ReplicaState;

/// A job as `dash job ls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    pub name: String,
    pub version: u64,
    /// The `[schedule]` cron, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The time zone its schedule is read in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub concurrency: Concurrency,
    pub suspended: bool,
    /// Runs in progress.
    pub active: u32,
    /// The newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunInfo>,
    /// The next slot of its schedule (ms since the epoch); None when it has no schedule, is
    /// suspended, or its pattern has no slot left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_ms: Option<u64>,
    /// The next slot as a wall-clock time of the job's time zone (`2027-03-28 03:00:00 CEST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_local: Option<String>,
    /// Slots skipped since the job was created (missed, superseded, forbidden).
    pub skipped_slots: u64,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunInfo {
    /// 1, 2, …: numbered per job.
    pub run: u64,
    /// The job version it runs.
    pub version: u64,
    pub trigger: RunTrigger,
    /// Its slot (a scheduled run), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_ms: Option<u64>,
    pub state: RunState,
    /// When it was recorded.
    pub created_ms: u64,
    /// When its first attempt's container started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// 0 when it succeeded; the last failed attempt's code when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptInfo>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One attempt of a run: a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptInfo {
    pub replica: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub state: ReplicaState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
