//! Reconcile planning: what to do to bring one service's replicas to its spec. Pure.
//!
//! ```text
//!   spec (replicas N, version V, update policy) ─┐
//!   replicas (version, state, desired)  ─────────┼─► plan() ─► [Create n | Remove id], status
//!   now, time of the last update batch ──────────┘
//! ```
//!
//! Without an update in flight this is scaling: create the missing, remove the surplus (the
//! least useful first: not ready before ready, newest before oldest). With replicas of an older
//! version left it is a rolling update: `stop-first` replaces `parallelism` replicas per batch
//! once the previous batch is ready and `delay` has passed; `start-first` starts the new ones
//! first and removes old ones only while the ready count stays at or above N.

use crate::api::{DesiredState, ReplicaState};
use crate::spec::{ServiceSpec, UpdateOrder};

/// A replica as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub id: String,
    pub version: u64,
    pub desired: DesiredState,
    pub state: ReplicaState,
    pub created_ms: u64,
    /// On a node being drained: replaced like a replica of an old version, always
    /// start-first (the replacement is ready before this one stops) and all at once.
    pub evict: bool,
    /// Marked for removal and still held by a node that is up (it has not confirmed the stop
    /// yet). False for a replica on a node that is down: nobody will stop it soon, and waiting
    /// for it would hold up its replacement.
    pub stopping: bool,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create this many replicas of the current version (the scheduler places them).
    Create { count: usize },
    /// Stop and remove this replica.
    Remove {
        replica: String,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Whether this plan starts a new update batch (the caller records the time).
    pub batch_started: bool,
    /// Empty when settled; else what the rolling update is doing, for `dash service inspect`.
    pub update_status: String,
}

/// Whether a replica counts toward the service's ready replicas.
pub fn is_ready(state: ReplicaState, has_health: bool) -> bool {
    match state {
        ReplicaState::Healthy => true,
        ReplicaState::Running => !has_health,
        _ => false,
    }
}

/// Plans one reconcile step for a service at `version`.
pub fn plan(
    spec: &ServiceSpec,
    version: u64,
    replicas: &[ReplicaView],
    now_ms: u64,
    last_batch_ms: u64,
) -> Plan {
    let has_health = spec.health.is_some();
    let ready = |r: &ReplicaView| is_ready(r.state, has_health);
    let n = spec.replicas as usize;
    let live: Vec<&ReplicaView> = replicas
        .iter()
        .filter(|r| r.desired == DesiredState::Run)
        .collect();
    let (current, old): (Vec<&ReplicaView>, Vec<&ReplicaView>) =
        live.iter().partition(|r| r.version >= version && !r.evict);
    let evicting = old.iter().filter(|r| r.evict).count();
    // Stop-first means stopped first: replicas an update removed and a node is still stopping
    // (they may hold a published port, memory, a lock) are gone before their replacements
    // start, as Swarm and Docker do. Others being removed (scaled down, on a lost node) do not
    // hold anything up.
    let update_stopping = replicas
        .iter()
        .filter(|r| r.desired == DesiredState::Remove && r.stopping && r.version < version)
        .count();
    let stop_first = spec.update.order == UpdateOrder::StopFirst && evicting == 0;
    let mut plan = Plan::default();

    // Worst first: not ready before ready, then newest first.
    let worst_first = |v: &mut Vec<&ReplicaView>| {
        v.sort_by(|a, b| {
            ready(a)
                .cmp(&ready(b))
                .then(b.created_ms.cmp(&a.created_ms))
                .then(a.id.cmp(&b.id))
        });
    };

    if old.is_empty() {
        if live.len() > n {
            let mut victims = current.clone();
            worst_first(&mut victims);
            for r in victims.into_iter().take(live.len() - n) {
                plan.actions.push(Action::Remove {
                    replica: r.id.clone(),
                    reason: "scale down",
                });
            }
        } else if live.len() < n {
            if stop_first && update_stopping > 0 {
                plan.update_status =
                    format!("updating: waiting for {update_stopping} old replicas to stop");
            } else {
                plan.actions.push(Action::Create {
                    count: n - live.len(),
                });
            }
        }
        return plan;
    }

    let parallelism = (spec.update.parallelism.max(1) as usize)
        .max(evicting)
        .min(old.len());
    let in_flight = current.iter().filter(|r| !ready(r)).count();
    let ready_count = live.iter().filter(|r| ready(r)).count();
    let delay_ms = spec.update.delay.as_millis() as u64;
    let delay_passed = last_batch_ms == 0 || now_ms >= last_batch_ms.saturating_add(delay_ms);
    let mut olds = old.clone();
    worst_first(&mut olds);

    plan.update_status = format!(
        "updating: {} of {} replicas at version {version}",
        current.len().min(n),
        n
    );
    let order = if evicting > 0 {
        plan.update_status = format!("draining: {evicting} replicas moving off drained nodes");
        UpdateOrder::StartFirst
    } else {
        spec.update.order
    };
    match order {
        UpdateOrder::StopFirst => {
            if live.len() > n {
                for r in olds.iter().take(live.len() - n) {
                    plan.actions.push(Action::Remove {
                        replica: r.id.clone(),
                        reason: "scale down",
                    });
                }
            } else if live.len() < n {
                if update_stopping > 0 {
                    plan.update_status.push_str(&format!(
                        ", waiting for {update_stopping} old replicas to stop"
                    ));
                } else {
                    plan.actions.push(Action::Create {
                        count: n - live.len(),
                    });
                }
            } else if in_flight > 0 {
                plan.update_status.push_str(&format!(
                    ", waiting for {in_flight} new replicas to be ready"
                ));
            } else if delay_passed {
                // The batch's replacements are created once these have stopped (above).
                for r in olds.iter().take(parallelism) {
                    plan.actions.push(Action::Remove {
                        replica: r.id.clone(),
                        reason: "rolling update",
                    });
                }
                plan.batch_started = true;
            }
        }
        UpdateOrder::StartFirst => {
            let surplus = live.len().saturating_sub(n);
            // Remove old replicas while the ready count stays at or above N.
            let mut removable = surplus.min(ready_count.saturating_sub(n));
            let mut removed = 0;
            for r in &olds {
                if removed == surplus {
                    break;
                }
                if !ready(r) || removable > 0 {
                    if ready(r) {
                        removable -= 1;
                    }
                    plan.actions.push(Action::Remove {
                        replica: r.id.clone(),
                        reason: "rolling update",
                    });
                    removed += 1;
                }
            }
            let remaining_surplus = surplus - removed;
            if live.len() - removed < n {
                plan.actions.push(Action::Create {
                    count: n - (live.len() - removed),
                });
            } else if in_flight == 0 && remaining_surplus == 0 && delay_passed {
                plan.actions.push(Action::Create { count: parallelism });
                plan.batch_started = true;
            } else if in_flight > 0 {
                plan.update_status.push_str(&format!(
                    ", waiting for {in_flight} new replicas to be ready"
                ));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config_parser::parse_service;

    fn spec(replicas: u32, order: &str, parallelism: u32) -> ServiceSpec {
        parse_service(
            "t.toml",
            &format!("name = \"w\"\nimage = \"b\"\nreplicas = {replicas}\n[update]\norder = \"{order}\"\nparallelism = {parallelism}\n"),
        )
        .unwrap()
    }

    fn r(id: &str, version: u64, state: ReplicaState, created_ms: u64) -> ReplicaView {
        ReplicaView {
            id: id.into(),
            version,
            desired: DesiredState::Run,
            state,
            created_ms,
            evict: false,
            stopping: false,
        }
    }

    use ReplicaState::*;

    #[test]
    fn creates_missing() {
        let p = plan(
            &spec(3, "stop-first", 1),
            1,
            &[r("a", 1, Running, 1)],
            10,
            0,
        );
        assert_eq!(p.actions, vec![Action::Create { count: 2 }]);
    }

    #[test]
    fn settled_is_empty() {
        let reps = [r("a", 1, Running, 1), r("b", 1, Running, 2)];
        assert_eq!(
            plan(&spec(2, "stop-first", 1), 1, &reps, 10, 0),
            Plan::default()
        );
    }

    #[test]
    fn scale_down_removes_worst_first() {
        let reps = [
            r("a", 1, Running, 1),
            r("b", 1, Running, 3),
            r("c", 1, Exited, 2),
        ];
        let p = plan(&spec(1, "stop-first", 1), 1, &reps, 10, 0);
        let removed: Vec<_> = p
            .actions
            .iter()
            .map(|a| match a {
                Action::Remove { replica, .. } => replica.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(removed, ["c", "b"]);
    }

    #[test]
    fn ignores_replicas_being_removed() {
        let mut gone = r("x", 1, Stopping, 5);
        gone.desired = DesiredState::Remove;
        let p = plan(&spec(1, "stop-first", 1), 1, &[gone], 10, 0);
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
    }

    #[test]
    fn stop_first_replaces_one_batch_at_a_time() {
        let reps = [
            r("a", 1, Running, 1),
            r("b", 1, Running, 2),
            r("c", 1, Running, 3),
        ];
        let p = plan(&spec(3, "stop-first", 1), 2, &reps, 10, 0);
        assert_eq!(p.actions.len(), 1);
        assert!(matches!(p.actions[0], Action::Remove { .. }));
        assert!(p.batch_started);
        // Next pass: the old one is still stopping on its node: its replacement waits.
        let mut c = r("c", 1, Stopping, 3);
        c.desired = DesiredState::Remove;
        c.stopping = true;
        let reps_stopping = [r("a", 1, Running, 1), r("b", 1, Running, 2), c.clone()];
        let p = plan(&spec(3, "stop-first", 1), 2, &reps_stopping, 15, 10);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(
            p.update_status
                .contains("waiting for 1 old replicas to stop"),
            "{}",
            p.update_status
        );
        // Stopped (gone): the replacement is created.
        let reps_gone = [r("a", 1, Running, 1), r("b", 1, Running, 2)];
        let p = plan(&spec(3, "stop-first", 1), 2, &reps_gone, 16, 10);
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
        // A replica on a lost node (not stopping) holds nothing up.
        c.stopping = false;
        let reps_lost = [r("a", 1, Running, 1), r("b", 1, Running, 2), c];
        let p = plan(&spec(3, "stop-first", 1), 2, &reps_lost, 16, 10);
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
        // Next pass: the new one is still starting: wait.
        let reps = [
            r("a", 1, Running, 1),
            r("b", 1, Running, 2),
            r("n", 2, Starting, 4),
        ];
        let p = plan(&spec(3, "stop-first", 1), 2, &reps, 20, 10);
        assert!(p.actions.is_empty());
        assert!(
            p.update_status.contains("waiting for 1"),
            "{}",
            p.update_status
        );
    }

    #[test]
    fn stop_first_honours_delay() {
        let mut s = spec(2, "stop-first", 1);
        s.update.delay = Duration::from_secs(5);
        let reps = [r("a", 1, Running, 1), r("n", 2, Running, 4)];
        assert!(plan(&s, 2, &reps, 3_000, 1_000).actions.is_empty());
        assert_eq!(plan(&s, 2, &reps, 6_000, 1_000).actions.len(), 1);
    }

    #[test]
    fn start_first_keeps_ready_count() {
        let s = spec(2, "start-first", 1);
        let reps = [r("a", 1, Running, 1), r("b", 1, Running, 2)];
        let p = plan(&s, 2, &reps, 10, 0);
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
        // New one not ready: nothing removed.
        let reps = [
            r("a", 1, Running, 1),
            r("b", 1, Running, 2),
            r("n", 2, Starting, 3),
        ];
        assert!(plan(&s, 2, &reps, 20, 10).actions.is_empty());
        // New one ready: one old goes and the next batch starts.
        let reps = [
            r("a", 1, Running, 1),
            r("b", 1, Running, 2),
            r("n", 2, Running, 3),
        ];
        let p = plan(&s, 2, &reps, 30, 10);
        assert_eq!(
            p.actions,
            vec![
                Action::Remove {
                    replica: "b".into(),
                    reason: "rolling update"
                },
                Action::Create { count: 1 }
            ]
        );
        // An old replica that is not ready goes at once, without waiting.
        let reps = [
            r("a", 1, Exited, 1),
            r("b", 1, Running, 2),
            r("n", 2, Starting, 3),
        ];
        let p = plan(&s, 2, &reps, 40, 30);
        assert_eq!(
            p.actions,
            vec![Action::Remove {
                replica: "a".into(),
                reason: "rolling update"
            }]
        );
    }

    #[test]
    fn evicted_replicas_are_replaced_start_first_all_at_once() {
        let sp = spec(3, "stop-first", 1);
        let mut reps = vec![
            r("a", 1, Running, 1),
            r("b", 1, Running, 2),
            r("c", 1, Running, 3),
        ];
        reps[0].evict = true;
        reps[1].evict = true;
        // First the replacements, both at once, nothing removed.
        let p = plan(&sp, 1, &reps, 10, 0);
        assert_eq!(p.actions, vec![Action::Create { count: 2 }]);
        assert!(
            p.update_status.starts_with("draining"),
            "{}",
            p.update_status
        );
        // Replacements starting: still nothing removed.
        reps.push(r("d", 1, Starting, 11));
        reps.push(r("e", 1, Starting, 11));
        let p = plan(&sp, 1, &reps, 12, 10);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        // Ready: the evicted ones go.
        reps[3].state = Running;
        reps[4].state = Running;
        let p = plan(&sp, 1, &reps, 13, 10);
        let mut removed: Vec<&str> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove { replica, .. } => Some(replica.as_str()),
                _ => None,
            })
            .collect();
        removed.sort_unstable();
        assert_eq!(removed, vec!["a", "b"]);
    }
}
