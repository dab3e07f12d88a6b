//! service_state: aggregates what workers report about their replicas into the master's state,
//! and turns changes into events.

pub mod history;

use std::sync::Arc;

use dash_core::api::{ReplicaInfo, ReplicaState};
use dash_core::command::{Command, ReplicaStatus};
use dash_core::event::{EventDraft, EventKind};
use dash_store::{MasterStore, StoreError};
use tokio::sync::Notify;

use crate::now_ms;
use crate::state_log::StateLog;

#[derive(Clone)]
pub struct ServiceState {
    log: StateLog,
    store: MasterStore,
    wake: Arc<Notify>,
    /// Reports waiting for the log, written as one entry by whichever caller finds no group
    /// being written (group commit: one entry per round trip of the log, however many nodes
    /// report meanwhile).
    group: Arc<std::sync::Mutex<Group>>,
}

/// What a node said of one replica.
enum Report {
    Status(ReplicaStatus),
    /// It released everything of the replica.
    Removed(String),
}

#[derive(Default)]
struct Group {
    waiting: Vec<Waiting>,
    /// A caller is writing a group now; the waiting ones go in its next.
    writing: bool,
}

struct Waiting {
    node: String,
    what: Report,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The most reports one entry carries (an entry a follower takes within Raft's heartbeat).
const MAX_GROUP: usize = 500;

impl ServiceState {
    pub fn new(log: StateLog, wake: Arc<Notify>) -> Self {
        let store = log.store().clone();
        Self {
            log,
            store,
            wake,
            group: Default::default(),
        }
    }

    /// Writes what `node` said in the next group and waits until it is applied.
    async fn write_grouped(&self, node: &str, what: Report) -> Result<(), StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut g = self.group.lock().unwrap_or_else(|e| e.into_inner());
            g.waiting.push(Waiting {
                node: node.to_string(),
                what,
                done,
            });
            !std::mem::replace(&mut g.writing, true)
        };
        if lead {
            // A task of its own: a caller that goes away (its RPC cancelled) must not leave
            // the group unwritten and `writing` set.
            let this = self.clone();
            tokio::spawn(async move { this.write_groups().await });
        }
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(StoreError::Unavailable(why)),
            Err(_) => Err(StoreError::Unavailable(
                "the report's group was dropped before it was written".into(),
            )),
        }
    }

    /// Writes groups until none is waiting (started by the report that found no writer).
    async fn write_groups(&self) {
        loop {
            let batch: Vec<Waiting> = {
                let mut g = self.group.lock().unwrap_or_else(|e| e.into_inner());
                if g.waiting.is_empty() {
                    g.writing = false;
                    return;
                }
                let n = g.waiting.len().min(MAX_GROUP);
                g.waiting.drain(..n).collect()
            };
            // A caller that went away (its RPC cancelled) is not written for: its node sends
            // again, and a late write could overwrite a newer status sent elsewhere meanwhile.
            let batch: Vec<Waiting> = batch.into_iter().filter(|w| !w.done.is_closed()).collect();
            if batch.is_empty() {
                continue;
            }
            let ids: Vec<&str> = batch
                .iter()
                .map(|w| match &w.what {
                    Report::Status(s) => s.id.as_str(),
                    Report::Removed(id) => id.as_str(),
                })
                .collect();
            let mut befores = match self.store.replicas_by_id(&ids).await {
                Ok(b) => b,
                Err(e) => {
                    let why = dash_core::link::with_causes(&e);
                    for w in batch {
                        let _ = w.done.send(Err(why.clone()));
                    }
                    continue;
                }
            };
            let mut statuses = Vec::with_capacity(batch.len());
            let mut removed = Vec::new();
            let mut events = Vec::new();
            let mut waiters = Vec::with_capacity(batch.len());
            for w in batch {
                waiters.push(w.done);
                match w.what {
                    Report::Status(s) => {
                        let Some(before) = befores
                            .get(&s.id)
                            .filter(|b| b.node.as_deref() == Some(w.node.as_str()))
                        else {
                            tracing::debug!(node = %w.node, replica = %s.id, "report for a replica not assigned to the node ignored");
                            continue;
                        };
                        if let Some(e) = events_of(before, &s) {
                            events.extend(e);
                            // A later report of the same replica in this group is weighed
                            // against this one, as it will be applied after it.
                            if let Some(b) = befores.get_mut(&s.id) {
                                b.state = s.state;
                                b.restarts = s.restarts;
                                b.ip = s.ip.clone();
                                b.exit_code = s.exit_code;
                                b.message = s.message.clone();
                            }
                            statuses.push(s);
                        }
                    }
                    Report::Removed(id) => {
                        if let Some(b) = befores
                            .get(&id)
                            .filter(|b| b.node.as_deref() == Some(w.node.as_str()))
                        {
                            events.push(EventDraft::service(
                                EventKind::ReplicaRemoved,
                                &b.service,
                                Some(&id),
                                "",
                            ));
                            befores.remove(&id);
                            removed.push(id);
                        }
                    }
                }
            }
            if statuses.is_empty() && removed.is_empty() {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
                continue;
            }
            let at_ms = now_ms();
            // One alone goes as the command it always was.
            let cmd = match (statuses.len(), removed.len()) {
                (1, 0) => Command::ReportReplica {
                    status: statuses.remove(0),
                    at_ms,
                },
                (0, 1) => Command::DeleteReplica {
                    id: removed.remove(0),
                    at_ms,
                },
                _ => Command::ReplicaReports {
                    statuses,
                    removed,
                    at_ms,
                },
            };
            let result = self
                .log
                .propose_with(cmd, events)
                .await
                .map(|_| ())
                .map_err(|e| dash_core::link::with_causes(&e));
            self.wake.notify_one();
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// Records a replica's status, as `node` reported it; publishes an event when its state
    /// or restart count changed. A report about a replica the state does not hold on `node`
    /// (removed meanwhile, moved elsewhere) is dropped. Written in the next group: the reads
    /// it needs (the replica as it was) are done for the whole group at once.
    pub async fn report(&self, node: &str, status: ReplicaStatus) -> Result<(), StoreError> {
        self.write_grouped(node, Report::Status(status)).await
    }

    /// `node` released everything of a replica: forget it (if it was `node`'s).
    pub async fn removed(&self, node: &str, replica: &str) -> Result<(), StoreError> {
        self.write_grouped(node, Report::Removed(replica.to_string()))
            .await
    }
}

/// The events a status announces against the replica as it was (None: nothing changed).
fn events_of(before: &ReplicaInfo, status: &ReplicaStatus) -> Option<Vec<EventDraft>> {
    if before.state == status.state
        && before.restarts == status.restarts
        && before.ip == status.ip
        && before.message == status.message
    {
        return None;
    }
    let service = before.service.as_str();
    let replica = Some(status.id.as_str());
    let mut events = Vec::new();
    if status.restarts > before.restarts {
        events.push(EventDraft::service(
            EventKind::ReplicaRestarting,
            service,
            replica,
            format!(
                "restart {} after exit code {}",
                status.restarts,
                before.exit_code.or(status.exit_code).unwrap_or(-1)
            ),
        ));
    }
    if status.state != before.state {
        let kind = match status.state {
            ReplicaState::Pending => EventKind::ReplicaPending,
            ReplicaState::Starting => EventKind::ReplicaStarting,
            ReplicaState::Running => EventKind::ReplicaRunning,
            ReplicaState::Healthy => EventKind::ReplicaHealthy,
            ReplicaState::Unhealthy => EventKind::ReplicaUnhealthy,
            ReplicaState::Exited => EventKind::ReplicaExited,
            ReplicaState::Failed => EventKind::ReplicaFailed,
            ReplicaState::Stopping => EventKind::ReplicaStopping,
        };
        let mut message = match (status.state, status.exit_code) {
            (ReplicaState::Exited | ReplicaState::Failed, Some(code)) => {
                format!("exit code {code}")
            }
            _ => String::new(),
        };
        if !status.message.is_empty() {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&status.message);
        }
        if let Some(ip) = &status.ip
            && status.state == ReplicaState::Running
            && before.ip.is_none()
        {
            message = format!("ip {ip}");
        }
        events.push(EventDraft::service(kind, service, replica, message));
    }
    Some(events)
}
