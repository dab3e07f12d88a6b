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
//! An entry carries the events its command announces (`propose_with`): every master publishes
//! them once the entry is applied there, if it changed the state, so that every master's
//! `dash events` shows the same history. Events that do not come from a change of the state
//! (image imports, an update seen complete) are published where they happen: they are soft,
//! lost with the master that saw them.
//!
//! With one master and no cluster the log is this process's order of proposals: each command
//! gets the next index and is applied at once. A master of a cluster (`--advertise-addr`)
//! runs the Raft log (`crate::raft`) instead, without the callers changing: `propose` then
//! means "committed by a majority of the masters and applied", by the leader (a follower
//! forwards the proposal to it), and every master applies the entry and publishes its events.
//!
//! A command the state refuses (a service being removed, a subnet already taken, a name not
//! found) is not an error of the log: it is applied as a refusal, the same on every master and
//! every replay, and comes back in [`Applied::rejected`]; [`Applied::accepted`] turns it into
//! an error where the caller cannot go on.
//!
//! [`Applied::rejected`]: dash_store::Applied::rejected
//! [`Applied::accepted`]: dash_store::Applied::accepted

use std::sync::Arc;

use dash_core::command::Command;
use dash_core::event::EventDraft;
use dash_store::{Applied, Db, MasterStore, StateMachine, StoreError};

use crate::message_queue::MessageQueue;
use crate::raft::Proposal;
use crate::raft::node::RaftNode;

/// The write path of the master's state, and its read side.
#[derive(Clone)]
pub struct StateLog {
    backend: Backend,
    store: MasterStore,
    db: Db,
    /// Where applied entries' events go.
    mq: Arc<MessageQueue>,
}

#[derive(Clone)]
enum Backend {
    /// One master: proposals are applied in this process's order.
    Local(StateMachine),
    /// The masters' Raft log.
    Raft(RaftNode),
}

impl StateLog {
    /// The log of a master alone, over its database; applied entries' events go to `mq`.
    pub fn new(db: Db, mq: Arc<MessageQueue>) -> Self {
        StateLog {
            backend: Backend::Local(StateMachine::new(db.clone())),
            store: MasterStore::new(db.clone()),
            db,
            mq,
        }
    }

    /// The log of a master of a cluster: its Raft (which applies entries to `db` and
    /// publishes their events itself).
    pub fn with_raft(db: Db, node: RaftNode, mq: Arc<MessageQueue>) -> Self {
        StateLog {
            backend: Backend::Raft(node),
            store: MasterStore::new(db.clone()),
            db,
            mq,
        }
    }

    /// This master's Raft, if it is one of a cluster.
    pub fn raft(&self) -> Option<&RaftNode> {
        match &self.backend {
            Backend::Raft(n) => Some(n),
            Backend::Local(_) => None,
        }
    }

    /// Whether this master leads (a master alone always does).
    pub fn is_leader(&self) -> bool {
        self.raft().is_none_or(RaftNode::is_leader)
    }

    /// A consistent copy of the whole state in the new file `path` (a backup), with what it
    /// has applied: the index of the last entry.
    pub async fn snapshot_to(&self, path: &std::path::Path) -> Result<u64, StoreError> {
        let machine = StateMachine::new(self.db.clone());
        machine.snapshot_to(path).await?;
        let copy = dash_store::open(path).await?;
        let index = StateMachine::new(copy.clone()).last_applied().await;
        copy.close().await;
        index
    }

    /// The read side of the state.
    pub fn store(&self) -> &MasterStore {
        &self.store
    }

    /// Proposes `cmd` and waits until it is applied. A refusal by the state is a result
    /// (`Applied::rejected`), not an error; the error is the storage's. (Behind Raft, a
    /// proposal can also fail for want of a leader: that error joins this one then.)
    pub async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
        self.propose_with(cmd, Vec::new()).await
    }

    /// Proposes `cmd` with the events it announces: published once it is applied, if it
    /// changed the state (on every master, from the applied log).
    pub async fn propose_with(
        &self,
        cmd: Command,
        events: Vec<EventDraft>,
    ) -> Result<Applied, StoreError> {
        let began = std::time::Instant::now();
        let applied = match &self.backend {
            Backend::Local(machine) => {
                let applied = machine.apply(&cmd).await?;
                announce(&self.mq, &applied, events);
                applied
            }
            Backend::Raft(node) => node.propose(Proposal { cmd, events }).await?.into(),
        };
        crate::telemetry::instruments().proposal_applied(began.elapsed().as_secs_f64());
        Ok(applied)
    }
}

/// What every master does with an applied entry's events: publishes them if the entry changed
/// the state, with `{version}` and `{subnet}` in a message replaced by what the entry made (the
/// state machine's values, the same on every master, whatever the proposer read before).
pub(crate) fn announce(mq: &MessageQueue, applied: &Applied, events: Vec<EventDraft>) {
    if !applied.publishes() {
        return;
    }
    for mut e in events {
        if let Some(v) = applied.version {
            e.message = e.message.replace("{version}", &v.to_string());
        }
        if let Some(subnet) = &applied.subnet {
            e.message = e.message.replace("{subnet}", subnet);
        }
        if let Some(run) = applied.run {
            e.message = e.message.replace("{run}", &run.to_string());
        }
        mq.publish_draft(e);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dash_core::config_parser::parse_service;
    use dash_core::event::EventKind;

    use super::*;

    #[tokio::test]
    async fn an_entrys_events_are_published_only_when_it_changed_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mq = Arc::new(MessageQueue::new());
        let log = StateLog::new(
            dash_store::open(&dir.path().join("dash.db")).await.unwrap(),
            mq.clone(),
        );
        let spec = parse_service("w.toml", "name = \"web\"\nimage = \"busybox\"\n").unwrap();
        let put = || Command::PutService {
            spec: Box::new(spec.clone()),
            at_ms: 1,
        };
        let created = || {
            vec![EventDraft::service(
                EventKind::ServiceCreated,
                "web",
                None,
                "version {version}",
            )]
        };
        let a = log.propose_with(put(), created()).await.unwrap();
        assert!(a.changed);
        // The same spec again changes nothing: its events are not published.
        let b = log.propose_with(put(), created()).await.unwrap();
        assert!(!b.changed);
        // A refusal publishes nothing either.
        let r = log
            .propose_with(
                Command::RemoveService {
                    name: "nope".into(),
                    at_ms: 2,
                },
                vec![EventDraft::service(
                    EventKind::ServiceRemoved,
                    "nope",
                    None,
                    "",
                )],
            )
            .await
            .unwrap();
        assert!(r.rejected.is_some());
        let events = mq.recent(0);
        let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.service.clone())).collect();
        assert_eq!(kinds, vec![(EventKind::ServiceCreated, Some("web".into()))]);
        assert_eq!(events[0].message, "version 1");
    }
}
