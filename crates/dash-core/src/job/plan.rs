//! A job's decisions, as pure functions of what the leader reads:
//!
//! - [`plan_slots`]: which of the schedule's slots start a run now, which are skipped and why,
//!   and when to look again;
//! - [`plan_run`]: what a run in progress needs: another attempt, or to finish (succeeded,
//!   failed after `backoff_limit` retries, or past its `deadline`).

use std::time::Duration;

use crate::api::{DesiredState, ReplicaState};
use crate::job::schedule::Schedule;
use crate::job::{Concurrency, JobSpec, RunState, ScheduleSpec};

/// How long before its slot a run is recorded and its replicas placed, so that the node has
/// the image, network and bundle ready and starts the container at the slot itself. A run
/// that would have to wait for another (`forbid`, `replace`) is decided at the slot instead.
pub const LEAD: Duration = Duration::from_secs(1);

/// Due slots looked at in one pass (a cluster down for a long time catches up over several
/// passes, each skipping a batch).
pub const SLOTS_PER_PASS: usize = 1_000;

/// Why a slot was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Not decided within `starting_deadline` of its time (no leader, the masters down).
    MissedDeadline { late_ms: u64, deadline_ms: u64 },
    /// A later slot was due as well: only the latest missed slot runs.
    Superseded { by_ms: u64 },
    /// A run was in progress and `concurrency = "forbid"`.
    Forbidden { run: u64 },
}

impl SkipReason {
    /// The reason as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::MissedDeadline { .. } => "missed_deadline",
            SkipReason::Superseded { .. } => "superseded",
            SkipReason::Forbidden { .. } => "forbid",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::MissedDeadline {
                late_ms,
                deadline_ms,
            } => write!(
                f,
                "missed by {}, more than starting_deadline {} (no leader could start it in time)",
                crate::units::format_duration(Duration::from_millis(*late_ms)),
                crate::units::format_duration(Duration::from_millis(*deadline_ms)),
            ),
            SkipReason::Superseded { by_ms } => write!(
                f,
                "missed, and a later slot ({}) is due too: only the latest missed slot runs",
                crate::clock::utc(*by_ms)
            ),
            SkipReason::Forbidden { run } => {
                write!(f, "run {run} is still running and concurrency = \"forbid\"")
            }
        }
    }
}

/// One decision about a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// Skip the slot (recorded as decided, with an event saying why).
    Skip { slot_ms: u64, reason: SkipReason },
    /// Start a run for the slot (`slot_ms` may be up to [`LEAD`] ahead: its replicas start at
    /// the slot); `replace`: stop the runs in progress first.
    Start { slot_ms: u64, replace: bool },
}

/// What [`plan_slots`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotPlan {
    pub decisions: Vec<SlotDecision>,
    /// When to look again (a slot coming up); None: nothing scheduled.
    pub wake_at_ms: Option<u64>,
}

/// A job's schedule state as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotState {
    /// Slots at or before this are decided (run or skipped).
    pub last_slot_ms: u64,
    pub suspended: bool,
    /// Runs in progress.
    pub active: Vec<u64>,
}

/// Decides the slots due by `now_ms` (and one up to [`LEAD`] ahead).
pub fn plan_slots(
    schedule: &Schedule,
    spec: &ScheduleSpec,
    state: &SlotState,
    now_ms: u64,
) -> SlotPlan {
    let mut plan = SlotPlan::default();
    if state.suspended {
        return plan;
    }
    let deadline_ms = spec
        .starting_deadline
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let late = |slot: u64| {
        deadline_ms.and_then(|d| {
            let late_ms = now_ms.saturating_sub(slot);
            (late_ms > d).then_some(SkipReason::MissedDeadline {
                late_ms,
                deadline_ms: d,
            })
        })
    };
    let due = schedule.slots(state.last_slot_ms, now_ms, SLOTS_PER_PASS);
    if let Some((&latest, older)) = due.split_last() {
        // More may be due after a full batch: then even the last of it is superseded.
        let full = due.len() == SLOTS_PER_PASS;
        for &slot in older {
            let reason = late(slot).unwrap_or(SkipReason::Superseded { by_ms: latest });
            plan.decisions.push(SlotDecision::Skip {
                slot_ms: slot,
                reason,
            });
        }
        let decision = if let Some(reason) = late(latest) {
            SlotDecision::Skip {
                slot_ms: latest,
                reason,
            }
        } else if full {
            SlotDecision::Skip {
                slot_ms: latest,
                reason: SkipReason::Superseded { by_ms: now_ms },
            }
        } else {
            match (state.active.last(), spec.concurrency) {
                (Some(&run), Concurrency::Forbid) => SlotDecision::Skip {
                    slot_ms: latest,
                    reason: SkipReason::Forbidden { run },
                },
                (Some(_), Concurrency::Replace) => SlotDecision::Start {
                    slot_ms: latest,
                    replace: true,
                },
                _ => SlotDecision::Start {
                    slot_ms: latest,
                    replace: false,
                },
            }
        };
        plan.decisions.push(decision);
        // The next pass looks at what follows.
        plan.wake_at_ms = Some(now_ms);
        return plan;
    }
    let Some(next) = schedule.next_after(state.last_slot_ms.max(now_ms)) else {
        return plan;
    };
    let lead = u64::try_from(LEAD.as_millis()).unwrap_or(0);
    if next.saturating_sub(now_ms) > lead {
        plan.wake_at_ms = Some(next - lead);
    } else if state.active.is_empty() || spec.concurrency == Concurrency::Allow {
        plan.decisions.push(SlotDecision::Start {
            slot_ms: next,
            replace: false,
        });
        plan.wake_at_ms = Some(now_ms);
    } else {
        // A run is in progress: whether it blocks (forbid) or goes (replace) is decided at
        // the slot, not before.
        plan.wake_at_ms = Some(next);
    }
    plan
}

/// An attempt of a run (one replica) as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    pub replica: String,
    pub desired: DesiredState,
    pub state: ReplicaState,
    pub exit_code: Option<i32>,
    pub created_ms: u64,
    /// Why it ended, when its node said (a start that failed: the image, the network…).
    pub message: String,
}

impl AttemptView {
    /// Its exit code, if its process ran (a start that failed has none).
    pub fn code(&self) -> Option<i32> {
        self.exit_code
            .filter(|_| self.state != ReplicaState::Failed || self.exit_code != Some(-1))
    }
}

/// How an attempt ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    Succeeded,
    /// Exited non-zero, could not start, or was lost with its node.
    Failed,
}

impl AttemptView {
    pub fn end(&self) -> Option<AttemptEnd> {
        match self.state {
            ReplicaState::Exited if self.exit_code == Some(0) => Some(AttemptEnd::Succeeded),
            ReplicaState::Exited | ReplicaState::Failed => Some(AttemptEnd::Failed),
            // Given up by the masters before it ended (its node is down): it will not report
            // an end in time.
            _ if self.desired != DesiredState::Run => Some(AttemptEnd::Failed),
            _ => None,
        }
    }
}

/// What a run in progress needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStep {
    /// Nothing now; look again at `until_ms` (None: on the next change).
    Wait { until_ms: Option<u64> },
    /// Start this many more attempts.
    Create { count: u32 },
    /// The run is over.
    Finish {
        state: RunState,
        exit_code: Option<i32>,
        message: String,
    },
}

/// A run in progress as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    pub run: u64,
    /// When it was recorded, or its slot if that is later (a run recorded ahead of its slot).
    pub started_ms: u64,
}

/// What run `run` needs, given its attempts (oldest first) and, if its last attempt failed,
/// when that failure was first seen (a retry waits the restart back-off after it).
pub fn plan_run(
    job: &JobSpec,
    retry_backoff: &crate::spec::RestartPolicy,
    run: &RunView,
    attempts: &[AttemptView],
    failure_seen_ms: Option<u64>,
    now_ms: u64,
) -> RunStep {
    let ended: Vec<(AttemptEnd, &AttemptView)> = attempts
        .iter()
        .filter_map(|a| a.end().map(|e| (e, a)))
        .collect();
    let succeeded = ended
        .iter()
        .filter(|(e, _)| *e == AttemptEnd::Succeeded)
        .count() as u32;
    let failed: Vec<&AttemptView> = ended
        .iter()
        .filter(|(e, _)| *e == AttemptEnd::Failed)
        .map(|(_, a)| *a)
        .collect();
    let active = attempts.len() as u32 - ended.len() as u32;
    if succeeded >= job.completions {
        return RunStep::Finish {
            state: RunState::Succeeded,
            exit_code: Some(0),
            message: match job.completions {
                1 => String::new(),
                n => format!("{n} completions"),
            },
        };
    }
    let last_code = failed.iter().rev().find_map(|a| a.code());
    if failed.len() as u32 > job.backoff_limit {
        let attempts_word = if failed.len() == 1 {
            "attempt"
        } else {
            "attempts"
        };
        let last = failed.last().map_or(String::new(), |a| match a.code() {
            Some(c) => format!("; last exit code {c}"),
            None if a.message.is_empty() => String::new(),
            None => format!("; last: {}", a.message),
        });
        return RunStep::Finish {
            state: RunState::Failed,
            exit_code: last_code,
            message: format!(
                "{} failed {attempts_word} (backoff_limit = {}){last}",
                failed.len(),
                job.backoff_limit,
            ),
        };
    }
    if let Some(deadline) = job.deadline {
        let end = run
            .started_ms
            .saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX));
        if now_ms >= end {
            return RunStep::Finish {
                state: RunState::Failed,
                exit_code: None,
                message: format!(
                    "deadline {} exceeded: stopped",
                    crate::units::format_duration(deadline)
                ),
            };
        }
    }
    let want = job
        .parallelism
        .min(job.completions - succeeded)
        .saturating_sub(active);
    let deadline_at = job.deadline.map(|d| {
        run.started_ms
            .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    if want == 0 {
        return RunStep::Wait {
            until_ms: deadline_at,
        };
    }
    if !failed.is_empty() {
        let delay = retry_backoff.delay(failed.len() as u32 - 1);
        let ready_at = failure_seen_ms
            .unwrap_or(now_ms)
            .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        if now_ms < ready_at {
            return RunStep::Wait {
                until_ms: Some(deadline_at.map_or(ready_at, |d| d.min(ready_at))),
            };
        }
    }
    RunStep::Create { count: want }
}
