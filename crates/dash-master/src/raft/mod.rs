//! The masters' Raft log (openraft 0.9, `storage-v2`): the types of its entries and the
//! storage it runs on. Built piece by piece for the HA issue; see
//! docs/decisions/0011-state-log.md for the plan.
//!
//! ```text
//!  state_log.propose(cmd, events) ─► Proposal ─► openraft ─► log_store (raft.db, fsync'd)
//!                                                        └─► state machine (dash.db, applied)
//! ```

pub mod log_store;

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
