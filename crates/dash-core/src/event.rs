//! Events: what happened, as the message_queue carries it and `dash events` shows it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ServiceCreated,
    ServiceUpdated,
    ServiceScaled,
    ServiceRemoved,
    ReplicaScheduled,
    ReplicaPending,
    ReplicaStarting,
    ReplicaRunning,
    ReplicaHealthy,
    ReplicaUnhealthy,
    ReplicaExited,
    ReplicaRestarting,
    ReplicaFailed,
    ReplicaStopping,
    ReplicaRemoved,
    ReplicaAdopted,
    ImageImported,
    ImageRemoved,
    NodeReady,
    NodeJoined,
    NodeUnreachable,
    NodeDown,
    NodeRemoved,
    NodeDrained,
    UpdateStarted,
    UpdateCompleted,
    UpdateRolledBack,
}

/// One event. `seq` grows by one per event within a daemon's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
