//! state_log: the log in front of the master's state. Every write of the master's state is a
//! [`Command`] proposed here, and [`StateLog::propose`] returns once the command is applied:
//!
//! ```text
//!  service_manager, service_state, reconciler, node_bouncer, master_api, admin_api (nodes)
//!        │ propose(Command)
//!        ▼
//!  StateLog ──► log entry n ──► StateMachine::apply_at(n, cmd) ──► Applied { index, changed,
//!        ▲                      (one SQLite transaction, n recorded     version, rejected }
//!        │                       with the changes; a replay skipped)
//!  reads: MasterStore (the read side)
//! ```
//!
//! With one master the log is this process's order of proposals: each command gets the next
//! index and is applied at once. The Raft log (openraft, the HA issue) takes this place
//! without the callers changing: `propose` then means "committed by a majority and applied
//! here".
//!
//! A command the state refuses (a service being removed, a subnet already taken, a name not
//! found) is not an error of the log: it is applied as a refusal, the same on every master and
//! every replay, and comes back in [`Applied::rejected`]; [`Applied::accepted`] turns it into
//! an error where the caller cannot go on.
//!
//! [`Applied::rejected`]: dash_store::Applied::rejected
//! [`Applied::accepted`]: dash_store::Applied::accepted

use dash_core::command::Command;
use dash_store::{Applied, Db, MasterStore, StateMachine, StoreError};

/// The write path of the master's state, and its read side.
#[derive(Clone)]
pub struct StateLog {
    machine: StateMachine,
    store: MasterStore,
}

impl StateLog {
    /// The log over the master's database.
    pub fn new(db: Db) -> Self {
        StateLog {
            machine: StateMachine::new(db.clone()),
            store: MasterStore::new(db),
        }
    }

    /// The read side of the state.
    pub fn store(&self) -> &MasterStore {
        &self.store
    }

    /// Proposes `cmd` and waits until it is applied. A refusal by the state is a result
    /// (`Applied::rejected`), not an error; the error is the storage's. (Behind Raft, a
    /// proposal can also fail for want of a leader: that error joins this one then.)
    pub async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
        self.machine.apply(&cmd).await
    }
}
