//! The masters' Raft log (openraft 0.9, `storage-v2`): the types of its entries and the
//! storage it runs on. Built piece by piece for the HA issue; see
//! docs/decisions/0011-state-log.md for the plan.
//!
//! ```text
//!  state_log.propose(cmd, events) ─► Proposal ─► openraft ─► log_store (raft.db, fsync'd)
//!                                                        └─► state machine (dash.db, applied)
//! ```

pub mod api;
pub mod join;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod status;

use std::io::Cursor;

use dash_core::command::Command;
use dash_core::event::EventDraft;
use serde::{Deserialize, Serialize};

/// A log entry's payload: a command and the events it announces (see `state_log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub cmd: Command,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventDraft>,
}

/// What applying an entry did, as the proposer gets it back (dash_store::Applied, owned).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub index: u64,
    pub version: Option<u64>,
    pub changed: bool,
    pub subnet: Option<String>,
    /// For `StartJobRun`: the run's number.
    #[serde(default)]
    pub run: Option<u64>,
    /// The state's refusal, of its kind (the admin API answers 404, 409 or 400 by it).
    pub rejected: Option<dash_store::Rejection>,
}

impl From<dash_store::Applied> for Outcome {
    fn from(a: dash_store::Applied) -> Self {
        Outcome {
            index: a.index,
            version: a.version,
            changed: a.changed,
            subnet: a.subnet,
            run: a.run,
            rejected: a.rejected,
        }
    }
}

impl From<Outcome> for dash_store::Applied {
    /// The proposer's view: the entry was applied where it was committed (never a replay).
    fn from(o: Outcome) -> Self {
        dash_store::Applied {
            index: o.index,
            version: o.version,
            changed: o.changed,
            subnet: o.subnet,
            run: o.run,
            rejected: o.rejected,
            replayed: false,
        }
    }
}

openraft::declare_raft_types!(
    /// The masters' Raft: entries carry [`Proposal`]s, applying one answers an [`Outcome`];
    /// node ids are u64, nodes are their master_api address (`BasicNode`).
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
);

/// A master's id in the Raft membership.
pub type NodeId = u64;

/// The masters' Raft.
pub type Raft = openraft::Raft<TypeConfig>;

/// A master's Raft id: derived from its node name (the first 63 bits of its SHA-256), so every
/// master computes any other's without asking, and a name is one member.
pub fn raft_id(node: &str) -> NodeId {
    use sha2::Digest;
    let d = sha2::Sha256::digest(node.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) >> 1
}

/// Dash's Raft timers and limits (docs/decisions/0012-raft-masters.md says how they were chosen).
///
/// - heartbeat 100 ms, election timeout 250–400 ms. openraft 0.9 makes a follower that has
///   seen a leader wait the leader lease (= the maximum election timeout, 400 ms) *plus* a
///   random election timeout before it stands: a dead leader is replaced 0.65–0.8 s after its
///   last heartbeat, and a leader keeps its followers through 6–8 missed heartbeats.
///   openraft gives every AppendEntries the heartbeat interval as its whole time (sending,
///   the follower's append and fsync, the answer): at 50 ms a loaded machine (3 masters and
///   500 simulated workers on two cores) timed out every append of a busy log, again and
///   again, and nothing was committed; 100 ms with entries kept small (at most 64 per
///   append, 500 replicas or reports per entry) keeps the log moving.
/// - snapshots: every 5,000 entries, 1,000 kept behind it for followers a little behind; a
///   snapshot install may take 10 s (openraft's 200 ms default is too short for a real file).
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "dash".into(),
        heartbeat_interval: 100,
        election_timeout_min: 250,
        election_timeout_max: 400,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    }
}

/// openraft's storage conformance suite against the log store and the state machine, on real
/// SQLite files (a temp dir per case).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::result_large_err)]
mod suite {
    use std::sync::Arc;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{StorageError, StorageIOError};

    use super::log_store::LogStore;
    use super::state_machine::StateMachineStore;
    use super::{NodeId, TypeConfig};
    use crate::message_queue::MessageQueue;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>>
        {
            let io = |e: dash_store::StoreError| StorageError::from(StorageIOError::write(&e));
            let dir = tempfile::tempdir().unwrap();
            let log = LogStore::new(
                dash_store::open_raft_log(&dir.path().join("raft.db"))
                    .await
                    .map_err(io)?,
            );
            let machine = dash_store::StateMachine::new(
                dash_store::open(&dir.path().join("dash.db"))
                    .await
                    .map_err(io)?,
            );
            let sm = StateMachineStore::new(
                machine,
                Arc::new(MessageQueue::new()),
                dir.path().join("snapshots"),
            );
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
