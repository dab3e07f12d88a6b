//! The masters' Raft log (openraft 0.9, `storage-v2`): the types of its entries and the
//! storage it runs on. Built piece by piece for the HA issue; see
//! docs/decisions/0011-state-log.md for the plan.
//!
//! ```text
//!  state_log.propose(cmd, events) ─► Proposal ─► openraft ─► log_store (raft.db, fsync'd)
//!                                                        └─► state machine (dash.db, applied)
//! ```

pub mod log_store;
pub mod state_machine;

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
    /// The state's refusal, in its words.
    pub rejected: Option<String>,
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
