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
    /// A run of a job was recorded (and its attempts are being placed).
    JobRunStarted,
    JobRunSucceeded,
    /// With the exit code and the attempt.
    JobRunFailed,
    /// Replaced by a newer run (`concurrency = "replace"`).
    JobRunStopped,
    /// A slot of a schedule was not run, and why.
    JobSlotSkipped,
    JobSuspended,
    JobResumed,
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

/// An event a log entry announces: it travels in the entry with its command and is published
/// by every master once the entry is applied there, and only if the command changed the state.
/// So a follower's `dash events` sees what the leader's does, and a command that changed
/// nothing (a replay, a refusal, a report that repeats the last) announces nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDraft {
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

impl EventDraft {
    /// An event about a service (and one of its replicas).
    pub fn service(
        kind: EventKind,
        service: &str,
        replica: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        EventDraft {
            kind,
            service: Some(service.to_string()),
            replica: replica.map(str::to_string),
            node: None,
            message: message.into(),
        }
    }

    /// An event about a node.
    pub fn node(kind: EventKind, node: &str, message: impl Into<String>) -> Self {
        EventDraft {
            kind,
            service: None,
            replica: None,
            node: Some(node.to_string()),
            message: message.into(),
        }
    }
}
