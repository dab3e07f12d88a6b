//! job_runner: the leader's part of jobs. On each reconcile pass it asks
//! `dash_core::job::plan` what every job needs and proposes it:
//!
//! ```text
//!   jobs, runs, replicas ─► plan_slots ─► StartJobRun (recorded first) ─► attempts placed
//!   (read once per pass)  │            └► SkipJobSlots (with why)
//!                         └► plan_run  ─► CreateReplicas (an attempt, retried after back-off)
//!                                      └► FinishJobRun (succeeded | failed | stopped)
//! ```
//!
//! A run is in the replicated state before any of its replicas exists, and a slot is decided
//! (run or skipped) by one entry of the log that the state machine refuses a second time: a
//! leader that dies between the two entries leaves a recorded run without attempts, which the
//! next leader starts; it never starts a slot twice. A new leader catches up on the slots
//! since the last decided one (`plan_slots`: late ones skipped by `starting_deadline`, only
//! the latest missed one run), each skip an event that says why.
//!
//! What lives here only (lost with the leader, harmlessly): when an attempt's failure was first
//! seen, for the back-off before its retry.

use std::collections::HashMap;

use dash_core::ServiceSpec;
use dash_core::api::{DesiredState, ReplicaInfo, ReplicaState};
use dash_core::command::Command;
use dash_core::event::{EventDraft, EventKind};
use dash_core::job::plan::{
    self, AttemptView, RunStep, RunView, SkipReason, SlotDecision, SlotState,
};
use dash_core::job::schedule::Schedule;
use dash_core::job::{Concurrency, JobSpec, RunState, RunTrigger};
use dash_core::scheduler;
use dash_store::{JobRow, RunRow, ServiceRow, StoreError};

use crate::now_ms;
use crate::reconciler::{new_replicas, node_snapshots, propose_new_replicas, request_of};
use crate::state_log::StateLog;

/// Skip events written one by one for a batch of skipped slots; beyond, one more says how many
/// others there were.
const SKIP_EVENTS: usize = 10;

pub struct JobRunner {
    log: StateLog,
    /// (job, run) → (failed attempts seen, when the latest failure was first seen).
    failures: HashMap<(String, u64), (usize, u64)>,
    /// The earliest instant a job needs a look (a slot, a back-off, a deadline).
    wake_at_ms: Option<u64>,
}

/// What a pass reads once for every job.
pub struct JobsView {
    pub jobs: HashMap<String, JobRow>,
    pub runs: HashMap<String, Vec<RunRow>>,
}

impl JobsView {
    pub async fn read(store: &dash_store::MasterStore) -> Result<JobsView, StoreError> {
        let jobs = store
            .jobs()
            .await?
            .into_iter()
            .map(|j| (j.service.clone(), j))
            .collect();
        let mut runs: HashMap<String, Vec<RunRow>> = HashMap::new();
        for r in store.job_runs(None).await? {
            runs.entry(r.service.clone()).or_default().push(r);
        }
        Ok(JobsView { jobs, runs })
    }
}

impl JobRunner {
    pub fn new(log: StateLog) -> Self {
        JobRunner {
            log,
            failures: HashMap::new(),
            wake_at_ms: None,
        }
    }

    /// The earliest instant a job asked to be looked at again in the last pass.
    pub fn wake_at_ms(&self) -> Option<u64> {
        self.wake_at_ms
    }

    /// Starts a pass (the wake-up is recomputed by the jobs it looks at).
    pub fn begin_pass(&mut self) {
        self.wake_at_ms = None;
    }

    fn wake(&mut self, at: Option<u64>) {
        if let Some(at) = at {
            self.wake_at_ms = Some(self.wake_at_ms.map_or(at, |w| w.min(at)));
        }
    }

    /// One job's step. Returns whether it changed the state.
    pub async fn reconcile(
        &mut self,
        row: &ServiceRow,
        view: &JobsView,
        replicas: &[ReplicaInfo],
    ) -> Result<bool, StoreError> {
        let name = row.spec.name.to_string();
        let Some(job) = row.spec.job.clone() else {
            return Ok(false);
        };
        let now = now_ms();
        let mut changed = false;
        // Replicas of the service it was before it became a job: not attempts of any run.
        let strays: Vec<String> = replicas
            .iter()
            .filter(|r| r.run.is_none() && r.desired == DesiredState::Run)
            .map(|r| r.id.clone())
            .collect();
        if !strays.is_empty() {
            self.stop_strays(&name, strays).await?;
            changed = true;
        }
        let runs = view.runs.get(&name).map(Vec::as_slice).unwrap_or_default();
        let mut active: Vec<&RunRow> = runs
            .iter()
            .filter(|r| r.state == RunState::Running)
            .collect();
        self.failures
            .retain(|(job, run), _| job != &name || active.iter().any(|r| r.run == *run));
        let mut finished = Vec::new();
        for run in &active {
            let (step_changed, over) = self.step_run(row, &job, run, replicas, now).await?;
            changed |= step_changed;
            if over {
                finished.push(run.run);
            }
        }
        // Runs that finished in this pass no longer block a slot.
        active.retain(|r| !finished.contains(&r.run));
        let Some(state) = view.jobs.get(&name) else {
            return Ok(changed);
        };
        match &job.schedule {
            None => {
                if state.applied_version < row.version
                    && !state.suspended
                    && (active.is_empty() || row_concurrency(&job) != Concurrency::Forbid)
                {
                    changed |= self
                        .start(row, &job, RunTrigger::Apply, None, &active, replicas)
                        .await?;
                }
            }
            Some(sched) => {
                let schedule = match Schedule::parse(&sched.cron, &sched.timezone) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(job = %name, error = %e, "a stored schedule does not parse");
                        return Ok(changed);
                    }
                };
                let slot_state = SlotState {
                    last_slot_ms: state.last_slot_ms,
                    suspended: state.suspended,
                    active: active.iter().map(|r| r.run).collect(),
                };
                let plan = plan::plan_slots(&schedule, sched, &slot_state, now);
                self.wake(plan.wake_at_ms);
                let mut skipped = Vec::new();
                for decision in plan.decisions {
                    match decision {
                        SlotDecision::Skip { slot_ms, reason } => skipped.push((slot_ms, reason)),
                        SlotDecision::Start { slot_ms, .. } => {
                            changed |= self.skip(&name, std::mem::take(&mut skipped)).await?;
                            changed |= self
                                .start(
                                    row,
                                    &job,
                                    RunTrigger::Schedule,
                                    Some(slot_ms),
                                    &active,
                                    replicas,
                                )
                                .await?;
                        }
                    }
                }
                changed |= self.skip(&name, skipped).await?;
            }
        }
        Ok(changed)
    }

    /// What run `run` needs, done: (whether the state changed, whether the run is over).
    async fn step_run(
        &mut self,
        row: &ServiceRow,
        job: &JobSpec,
        run: &RunRow,
        replicas: &[ReplicaInfo],
        now: u64,
    ) -> Result<(bool, bool), StoreError> {
        let name = row.spec.name.to_string();
        let attempts: Vec<&ReplicaInfo> =
            replicas.iter().filter(|r| r.run == Some(run.run)).collect();
        // A run goes on at the version it started with, whatever was applied since.
        let spec = match self.log.store().service_version(&name, run.version).await? {
            Some(spec) => spec,
            None => row.spec.clone(),
        };
        // Attempts no node could take when they were made: placed when one can.
        let mut placed = false;
        for a in attempts
            .iter()
            .filter(|a| a.node.is_none() && a.desired == DesiredState::Run)
        {
            placed |= self.place_pending(&spec, a, replicas).await?;
        }
        let views: Vec<AttemptView> = attempts
            .iter()
            .map(|a| AttemptView {
                replica: a.id.clone(),
                desired: a.desired,
                state: a.state,
                exit_code: a.exit_code,
                created_ms: a.created_ms,
                message: a.message.clone(),
            })
            .collect();
        let failed = views
            .iter()
            .filter(|v| v.end() == Some(plan::AttemptEnd::Failed))
            .count();
        let key = (name.clone(), run.run);
        let seen = match self.failures.get(&key) {
            Some((n, at)) if *n == failed => *at,
            _ => {
                self.failures.insert(key.clone(), (failed, now));
                now
            }
        };
        let step = plan::plan_run(
            job,
            &row.spec.restart,
            &RunView {
                run: run.run,
                started_ms: run.start_ms(),
            },
            &views,
            (failed > 0).then_some(seen),
            now,
        );
        match step {
            RunStep::Wait { until_ms } => {
                self.wake(until_ms);
                Ok((placed, false))
            }
            RunStep::Create { count } => {
                let new = Attempts {
                    spec: &spec,
                    version: run.version,
                    run: run.run,
                    first: attempts.len() as u32 + 1,
                    count,
                    start_at_ms: run.slot_ms.filter(|s| *s > now),
                };
                self.create_attempts(new, replicas).await?;
                Ok((true, false))
            }
            RunStep::Finish {
                state,
                exit_code,
                message,
            } => {
                let (kind, text) = match state {
                    RunState::Succeeded => (
                        EventKind::JobRunSucceeded,
                        format!(
                            "run {} succeeded after {} attempt{}{}",
                            run.run,
                            attempts.len(),
                            if attempts.len() == 1 { "" } else { "s" },
                            if message.is_empty() {
                                String::new()
                            } else {
                                format!(" ({message})")
                            }
                        ),
                    ),
                    _ => (
                        EventKind::JobRunFailed,
                        format!(
                            "run {} failed at attempt {}: {message}{}",
                            run.run,
                            attempts.len(),
                            exit_code.map_or(String::new(), |c| format!(" (exit code {c})"))
                        ),
                    ),
                };
                self.log
                    .propose_with(
                        Command::FinishJobRun {
                            service: name.clone(),
                            run: run.run,
                            state,
                            exit_code,
                            message,
                            at_ms: now,
                        },
                        vec![EventDraft::service(kind, &name, None, text)],
                    )
                    .await?;
                self.failures.remove(&key);
                Ok((true, true))
            }
        }
    }

    /// Records a run (the state numbers it), then places its first attempts at once.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &mut self,
        row: &ServiceRow,
        job: &JobSpec,
        trigger: RunTrigger,
        slot_ms: Option<u64>,
        active: &[&RunRow],
        replicas: &[ReplicaInfo],
    ) -> Result<bool, StoreError> {
        let name = row.spec.name.to_string();
        let now = now_ms();
        let events = start_events(&name, job, trigger, slot_ms, active);
        let applied = self
            .log
            .propose_with(
                Command::StartJobRun {
                    service: name.clone(),
                    trigger,
                    slot_ms,
                    at_ms: now,
                },
                events,
            )
            .await?;
        let run = match applied.accepted() {
            Ok(a) => a.run,
            Err(why) => {
                // Another proposal decided first (a manual run, a retry): nothing to do.
                tracing::debug!(job = %name, reason = %why, "run not started");
                return Ok(false);
            }
        };
        let Some(run) = run else { return Ok(true) };
        let new = Attempts {
            spec: &row.spec,
            version: row.version,
            run,
            first: 1,
            count: job.parallelism.min(job.completions),
            start_at_ms: slot_ms.filter(|s| *s > now),
        };
        self.create_attempts(new, replicas).await?;
        Ok(true)
    }

    /// Places the attempts `new` and records them.
    async fn create_attempts(
        &self,
        new: Attempts<'_>,
        replicas: &[ReplicaInfo],
    ) -> Result<(), StoreError> {
        let Attempts {
            spec,
            version,
            run,
            first,
            count,
            start_at_ms,
        } = new;
        let service = &spec.name;
        let snapshot = node_snapshots(self.log.store(), &running(replicas)).await?;
        let placed = scheduler::place(&snapshot, &request_of(spec), count as usize);
        let new = new_replicas(service, version, placed, Some(run), start_at_ms);
        propose_new_replicas(&self.log, new, |i| {
            format!("run {run}, attempt {}: ", first + i as u32)
        })
        .await
    }

    /// Places attempt `a`, made when no node could take it, if one can now.
    async fn place_pending(
        &self,
        spec: &ServiceSpec,
        a: &ReplicaInfo,
        replicas: &[ReplicaInfo],
    ) -> Result<bool, StoreError> {
        let snapshot = node_snapshots(self.log.store(), &running(replicas)).await?;
        let Some(Ok(node)) = scheduler::place(&snapshot, &request_of(spec), 1)
            .into_iter()
            .next()
        else {
            return Ok(false);
        };
        let event = EventDraft::service(
            EventKind::ReplicaScheduled,
            spec.name.as_str(),
            Some(&a.id),
            format!("run {}: on {node}", a.run.unwrap_or_default()),
        );
        self.log
            .propose_with(
                Command::PlaceReplica {
                    id: a.id.clone(),
                    node: Some(node),
                    message: String::new(),
                },
                vec![event],
            )
            .await?;
        Ok(true)
    }

    /// Records skipped slots in one entry, with an event for each (the first
    /// [`SKIP_EVENTS`], then one for the rest).
    async fn skip(&self, name: &str, skipped: Vec<(u64, SkipReason)>) -> Result<bool, StoreError> {
        if skipped.is_empty() {
            return Ok(false);
        }
        let mut events: Vec<EventDraft> = skipped
            .iter()
            .take(SKIP_EVENTS)
            .map(|(slot, reason)| {
                EventDraft::service(
                    EventKind::JobSlotSkipped,
                    name,
                    None,
                    format!("slot {} skipped: {reason}", dash_core::clock::utc(*slot)),
                )
            })
            .collect();
        if skipped.len() > SKIP_EVENTS {
            let rest = &skipped[SKIP_EVENTS..];
            events.push(EventDraft::service(
                EventKind::JobSlotSkipped,
                name,
                None,
                format!(
                    "{} more slots from {} to {} skipped: {}",
                    rest.len(),
                    dash_core::clock::utc(rest[0].0),
                    dash_core::clock::utc(rest[rest.len() - 1].0),
                    rest[rest.len() - 1].1
                ),
            ));
        }
        let applied = self
            .log
            .propose_with(
                Command::SkipJobSlots {
                    service: name.to_string(),
                    slots: skipped.iter().map(|(s, _)| *s).collect(),
                    at_ms: now_ms(),
                },
                events,
            )
            .await?;
        Ok(applied.changed)
    }

    async fn stop_strays(&self, name: &str, ids: Vec<String>) -> Result<(), StoreError> {
        let events = ids
            .iter()
            .map(|id| {
                EventDraft::service(
                    EventKind::ReplicaStopping,
                    name,
                    Some(id),
                    "the service became a job",
                )
            })
            .collect();
        self.log
            .propose_with(
                Command::SetReplicasDesired {
                    ids,
                    desired: DesiredState::Remove,
                    at_ms: now_ms(),
                },
                events,
            )
            .await?;
        Ok(())
    }
}

/// Attempts to make: of run `run` at `version` (whose spec is `spec`), numbered from `first`.
struct Attempts<'a> {
    spec: &'a ServiceSpec,
    version: u64,
    run: u64,
    first: u32,
    count: u32,
    start_at_ms: Option<u64>,
}

/// The replicas that hold a place on their node (a finished attempt holds none).
fn running(replicas: &[ReplicaInfo]) -> Vec<ReplicaInfo> {
    replicas
        .iter()
        .filter(|r| {
            r.desired == DesiredState::Run
                && !matches!(r.state, ReplicaState::Exited | ReplicaState::Failed)
        })
        .cloned()
        .collect()
}

fn row_concurrency(job: &JobSpec) -> Concurrency {
    job.schedule
        .as_ref()
        .map(|s| s.concurrency)
        .unwrap_or_default()
}

/// The events a run's start announces (`{run}`: the number the state gives it).
pub fn start_events(
    name: &str,
    job: &JobSpec,
    trigger: RunTrigger,
    slot_ms: Option<u64>,
    active: &[&RunRow],
) -> Vec<EventDraft> {
    let why = match (trigger, slot_ms) {
        (RunTrigger::Schedule, Some(slot)) => format!("for the slot at {}", slot_label(job, slot)),
        (RunTrigger::Manual, _) => "by dash job run".to_string(),
        _ => "for the new version".to_string(),
    };
    let mut events = vec![EventDraft::service(
        EventKind::JobRunStarted,
        name,
        None,
        format!("run {{run}} started {why}"),
    )];
    if row_concurrency(job) == Concurrency::Replace {
        events.extend(active.iter().map(|r| {
            EventDraft::service(
                EventKind::JobRunStopped,
                name,
                None,
                format!(
                    "run {} stopped: replaced by run {{run}} (concurrency = \"replace\")",
                    r.run
                ),
            )
        }));
    }
    events
}

/// A slot as people read it: UTC, and the job's zone when it has another.
fn slot_label(job: &JobSpec, slot: u64) -> String {
    let utc = dash_core::clock::utc(slot);
    match job
        .schedule
        .as_ref()
        .filter(|s| s.timezone != "UTC")
        .and_then(|s| dash_core::job::schedule::parse_timezone(&s.timezone).ok())
    {
        Some(tz) => format!(
            "{utc} ({})",
            dash_core::job::schedule::format_local(slot, tz)
        ),
        None => utc,
    }
}
