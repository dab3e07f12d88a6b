//! service_state: aggregates what workers report about their replicas into the master's state,
//! and turns changes into events.

pub mod history;

use std::sync::Arc;

use dash_core::api::ReplicaState;
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

#[derive(Default)]
struct Group {
    waiting: Vec<Waiting>,
    /// A caller is writing a group now; the waiting ones go in its next.
    writing: bool,
}

struct Waiting {
    status: ReplicaStatus,
    events: Vec<EventDraft>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The most reports one entry carries.
const MAX_GROUP: usize = 2000;

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

    /// Writes `status` with its events in the next group and waits until it is applied.
    async fn write_grouped(
        &self,
        status: ReplicaStatus,
        events: Vec<EventDraft>,
    ) -> Result<(), StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut g = self.group.lock().unwrap_or_else(|e| e.into_inner());
            g.waiting.push(Waiting {
                status,
                events,
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
            let mut statuses = Vec::with_capacity(batch.len());
            let mut events = Vec::new();
            let mut waiters = Vec::with_capacity(batch.len());
            for w in batch {
                statuses.push(w.status);
                events.extend(w.events);
                waiters.push(w.done);
            }
            let cmd = if statuses.len() == 1 {
                Command::ReportReplica {
                    status: statuses.remove(0),
                    at_ms: now_ms(),
                }
            } else {
                Command::ReportReplicas {
                    statuses,
                    at_ms: now_ms(),
                }
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

    /// Records a replica's status; publishes an event when its state or restart count changed.
    pub async fn report(&self, node: &str, status: ReplicaStatus) -> Result<(), StoreError> {
        let Some(before) = self.store.replica(&status.id).await? else {
            tracing::debug!(replica = %status.id, node, "status for an unknown replica ignored");
            return Ok(());
        };
        if before.state == status.state
            && before.restarts == status.restarts
            && before.ip == status.ip
            && before.message == status.message
        {
            return Ok(());
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
        self.write_grouped(status, events).await
    }

    /// A worker released everything of a replica: forget it.
    pub async fn removed(&self, replica: &str) -> Result<(), StoreError> {
        let before = self.store.replica(replica).await?;
        let events = before
            .iter()
            .map(|b| EventDraft::service(EventKind::ReplicaRemoved, &b.service, Some(replica), ""))
            .collect();
        self.log
            .propose_with(
                Command::DeleteReplica {
                    id: replica.into(),
                    at_ms: crate::now_ms(),
                },
                events,
            )
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}
