#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::plan::*;
use super::schedule::Schedule;
use super::{Concurrency, JobSpec, RunState, ScheduleSpec};
use crate::api::{DesiredState, ReplicaState};
use crate::spec::RestartPolicy;

fn every5(concurrency: Concurrency, deadline: Option<u64>) -> (Schedule, ScheduleSpec) {
    let spec = ScheduleSpec {
        cron: "@every 5s".into(),
        timezone: "UTC".into(),
        concurrency,
        starting_deadline: deadline.map(Duration::from_millis),
    };
    (Schedule::parse(&spec.cron, &spec.timezone).unwrap(), spec)
}

fn state(last: u64, active: &[u64]) -> SlotState {
    SlotState {
        last_slot_ms: last,
        suspended: false,
        active: active.to_vec(),
    }
}

#[test]
fn a_slot_within_the_lead_is_started_ahead_when_nothing_runs() {
    let (s, spec) = every5(Concurrency::Forbid, None);
    // Slot 10 000 is 500 ms away: recorded now, started at the slot.
    let p = plan_slots(&s, &spec, &state(5_000, &[]), 9_500);
    assert_eq!(
        p.decisions,
        vec![SlotDecision::Start {
            slot_ms: 10_000,
            replace: false
        }]
    );
    // Further away: nothing yet, wake up one lead before it.
    let p = plan_slots(&s, &spec, &state(5_000, &[]), 6_000);
    assert!(p.decisions.is_empty());
    assert_eq!(p.wake_at_ms, Some(9_000));
}

#[test]
fn forbid_waits_for_the_slot_then_skips_it() {
    let (s, spec) = every5(Concurrency::Forbid, None);
    let p = plan_slots(&s, &spec, &state(5_000, &[3]), 9_500);
    assert!(p.decisions.is_empty(), "not decided before the slot");
    assert_eq!(p.wake_at_ms, Some(10_000));
    let p = plan_slots(&s, &spec, &state(5_000, &[3]), 10_001);
    assert_eq!(
        p.decisions,
        vec![SlotDecision::Skip {
            slot_ms: 10_000,
            reason: SkipReason::Forbidden { run: 3 }
        }]
    );
}

#[test]
fn replace_and_allow_start_beside_a_running_run() {
    let (s, spec) = every5(Concurrency::Replace, None);
    assert!(
        plan_slots(&s, &spec, &state(5_000, &[3]), 9_500)
            .decisions
            .is_empty()
    );
    assert_eq!(
        plan_slots(&s, &spec, &state(5_000, &[3]), 10_000).decisions,
        vec![SlotDecision::Start {
            slot_ms: 10_000,
            replace: true
        }]
    );
    let (s, spec) = every5(Concurrency::Allow, None);
    assert_eq!(
        plan_slots(&s, &spec, &state(5_000, &[3]), 9_500).decisions,
        vec![SlotDecision::Start {
            slot_ms: 10_000,
            replace: false
        }]
    );
}

#[test]
fn after_an_outage_the_latest_slot_runs_and_the_late_ones_are_skipped() {
    let (s, spec) = every5(Concurrency::Forbid, Some(7_000));
    // Last decided: 5 000. Now 21 000: slots 10 000, 15 000, 20 000 are due.
    let p = plan_slots(&s, &spec, &state(5_000, &[]), 21_000);
    assert_eq!(
        p.decisions,
        vec![
            SlotDecision::Skip {
                slot_ms: 10_000,
                reason: SkipReason::MissedDeadline {
                    late_ms: 11_000,
                    deadline_ms: 7_000
                }
            },
            SlotDecision::Skip {
                slot_ms: 15_000,
                reason: SkipReason::Superseded { by_ms: 20_000 }
            },
            SlotDecision::Start {
                slot_ms: 20_000,
                replace: false
            },
        ]
    );
    // Every due slot past the deadline: all skipped, none run.
    let (s, spec) = every5(Concurrency::Forbid, Some(3_000));
    let p = plan_slots(&s, &spec, &state(5_000, &[]), 29_000);
    assert!(p.decisions.iter().all(|d| matches!(
        d,
        SlotDecision::Skip {
            reason: SkipReason::MissedDeadline { .. },
            ..
        }
    )));
    assert_eq!(p.decisions.len(), 4);
}

#[test]
fn a_suspended_job_decides_nothing() {
    let (s, spec) = every5(Concurrency::Allow, None);
    let mut st = state(5_000, &[]);
    st.suspended = true;
    assert_eq!(plan_slots(&s, &spec, &st, 60_000), SlotPlan::default());
}

#[test]
fn a_long_outage_is_caught_up_in_batches() {
    let (s, spec) = every5(Concurrency::Forbid, None);
    let now = 5_000 * (SLOTS_PER_PASS as u64 + 10);
    let p = plan_slots(&s, &spec, &state(0, &[]), now);
    assert_eq!(p.decisions.len(), SLOTS_PER_PASS);
    assert!(
        p.decisions
            .iter()
            .all(|d| matches!(d, SlotDecision::Skip { .. }))
    );
}

fn attempt(id: &str, state: ReplicaState, code: Option<i32>) -> AttemptView {
    AttemptView {
        replica: id.into(),
        desired: DesiredState::Run,
        state,
        exit_code: code,
        created_ms: 0,
        message: String::new(),
    }
}

fn job(completions: u32, parallelism: u32, backoff: u32, deadline: Option<u64>) -> JobSpec {
    JobSpec {
        completions,
        parallelism,
        backoff_limit: backoff,
        deadline: deadline.map(Duration::from_millis),
        ..JobSpec::default()
    }
}

const RUN: RunView = RunView {
    run: 1,
    started_ms: 1_000,
};

#[test]
fn a_run_starts_its_attempts_and_succeeds() {
    let policy = RestartPolicy::default();
    let j = job(3, 2, 0, None);
    assert_eq!(
        plan_run(&j, &policy, &RUN, &[], None, 1_000),
        RunStep::Create { count: 2 }
    );
    let one_done = [
        attempt("a", ReplicaState::Exited, Some(0)),
        attempt("b", ReplicaState::Running, None),
    ];
    assert_eq!(
        plan_run(&j, &policy, &RUN, &one_done, None, 2_000),
        RunStep::Create { count: 1 }
    );
    let done = [
        attempt("a", ReplicaState::Exited, Some(0)),
        attempt("b", ReplicaState::Exited, Some(0)),
        attempt("c", ReplicaState::Exited, Some(0)),
    ];
    assert!(matches!(
        plan_run(&j, &policy, &RUN, &done, None, 3_000),
        RunStep::Finish {
            state: RunState::Succeeded,
            ..
        }
    ));
}

#[test]
fn failed_attempts_are_retried_up_to_the_backoff_limit() {
    let policy = RestartPolicy::default(); // 0, 200 ms, 400 ms …
    let j = job(1, 1, 2, None);
    let f = |n: usize| -> Vec<AttemptView> {
        (0..n)
            .map(|i| attempt(&format!("a{i}"), ReplicaState::Exited, Some(1)))
            .collect()
    };
    // First retry at once.
    assert_eq!(
        plan_run(&j, &policy, &RUN, &f(1), Some(5_000), 5_000),
        RunStep::Create { count: 1 }
    );
    // Second after the back-off.
    assert_eq!(
        plan_run(&j, &policy, &RUN, &f(2), Some(5_000), 5_100),
        RunStep::Wait {
            until_ms: Some(5_200)
        }
    );
    assert_eq!(
        plan_run(&j, &policy, &RUN, &f(2), Some(5_000), 5_200),
        RunStep::Create { count: 1 }
    );
    // Three failures with backoff_limit 2: failed, with the code.
    match plan_run(&j, &policy, &RUN, &f(3), Some(5_000), 9_000) {
        RunStep::Finish {
            state: RunState::Failed,
            exit_code: Some(1),
            message,
        } => assert!(message.contains("3 failed attempts"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_attempt_lost_with_its_node_counts_as_failed() {
    let mut lost = attempt("a", ReplicaState::Running, None);
    lost.desired = DesiredState::Stop;
    assert_eq!(lost.end(), Some(AttemptEnd::Failed));
    // One that ended before its node went keeps its result.
    let mut done = attempt("b", ReplicaState::Exited, Some(0));
    done.desired = DesiredState::Remove;
    assert_eq!(done.end(), Some(AttemptEnd::Succeeded));
    let policy = RestartPolicy::default();
    assert_eq!(
        plan_run(&job(1, 1, 1, None), &policy, &RUN, &[lost], None, 2_000),
        RunStep::Create { count: 1 }
    );
}

#[test]
fn the_deadline_stops_a_run() {
    let policy = RestartPolicy::default();
    let j = job(1, 1, 0, Some(30_000));
    let running = [attempt("a", ReplicaState::Running, None)];
    assert_eq!(
        plan_run(&j, &policy, &RUN, &running, None, 2_000),
        RunStep::Wait {
            until_ms: Some(31_000)
        }
    );
    match plan_run(&j, &policy, &RUN, &running, None, 31_000) {
        RunStep::Finish {
            state: RunState::Failed,
            message,
            ..
        } => assert!(message.contains("deadline 30s"), "{message}"),
        other => panic!("{other:?}"),
    }
}
