//! Jobs: services of `kind = "job"`, whose replicas run to completion, once per run.
//!
//! ```text
//!   [schedule] ─► schedule::Schedule ─► slots ─► plan::plan_slots ─► start a run | skip a slot
//!   a run's attempts (replicas) ───────────────► plan::plan_run   ─► create attempts | finish
//! ```
//!
//! A run is recorded in the replicated state before any of its replicas exists; each attempt
//! of a run is a replica of its own (the worker never restarts it), so that every attempt
//! keeps its exit code, node and logs. Everything here is pure: the master's reconciler reads
//! the state, asks these functions and proposes what they decide.

pub mod api;
pub mod plan;
pub mod schedule;

#[cfg(test)]
mod plan_test;
#[cfg(test)]
mod schedule_test;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::millis;

/// What a service file says a service is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Replicas that run until they are removed (restarted when they exit).
    #[default]
    Service,
    /// Replicas that run to completion, once per run: now (`dash job run`), on apply, or on a
    /// `[schedule]`.
    Job,
}

impl Kind {
    pub fn is_default(&self) -> bool {
        *self == Kind::Service
    }
}

/// `[job]`: how a run completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobSpec {
    /// Successful attempts a run needs.
    pub completions: u32,
    /// Attempts of a run that run at once.
    pub parallelism: u32,
    /// Failed attempts retried before the run fails (Kubernetes' `backoffLimit`: with 3, a
    /// run fails at its 4th failed attempt).
    pub backoff_limit: u32,
    /// A run still going after this long is stopped and failed.
    #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub deadline: Option<Duration>,
    /// `[schedule]`; None: a run on each apply of a new version and on `dash job run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// Finished runs kept, with their replicas and logs (`[schedule] history`).
    pub history: u32,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            completions: 1,
            parallelism: 1,
            backoff_limit: DEFAULT_BACKOFF_LIMIT,
            deadline: None,
            schedule: None,
            history: DEFAULT_HISTORY,
        }
    }
}

/// Kubernetes' default `backoffLimit`.
pub const DEFAULT_BACKOFF_LIMIT: u32 = 6;
/// Finished runs kept when the file does not say.
pub const DEFAULT_HISTORY: u32 = 5;
/// Bounds the file is held to.
pub const MAX_COMPLETIONS: u32 = 10_000;
pub const MAX_BACKOFF_LIMIT: u32 = 100;
pub const MAX_HISTORY: u32 = 100;

/// `[schedule]`: when runs start by themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleSpec {
    /// 5-field cron, `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly`, or `@every <duration>`.
    pub cron: String,
    /// IANA time zone the cron fields are read in.
    pub timezone: String,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// A slot that could not be decided within this long of its time (no leader) is skipped.
    #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub starting_deadline: Option<Duration>,
}

/// What a slot (or `dash job run`) does while a run is in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// Not started: a slot is skipped, `dash job run` refused.
    #[default]
    Forbid,
    /// Started beside it.
    Allow,
    /// The running one is stopped, then the new one starts.
    Replace,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// A slot of its `[schedule]`.
    Schedule,
    /// `dash job run`.
    Manual,
    /// A new version of a job without a schedule was applied.
    Apply,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::Manual => "manual",
            RunTrigger::Apply => "apply",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Schedule, Self::Manual, Self::Apply]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Recorded; its attempts are being placed, started or run.
    Running,
    /// `completions` attempts exited 0.
    Succeeded,
    /// More than `backoff_limit` attempts failed, or its `deadline` passed.
    Failed,
    /// Stopped before it finished: replaced by a newer run (`concurrency = "replace"`).
    Stopped,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed, Self::Stopped]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Serde helper: an `Option<Duration>` as whole milliseconds.
pub mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
