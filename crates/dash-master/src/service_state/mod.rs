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
}

impl ServiceState {
    pub fn new(log: StateLog, wake: Arc<Notify>) -> Self {
        let store = log.store().clone();
        Self { log, store, wake }
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
        self.log
            .propose_with(
                Command::ReportReplica {
                    status: status.clone(),
                    at_ms: now_ms(),
                },
                events,
            )
            .await?;
        self.wake.notify_one();
        Ok(())
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
