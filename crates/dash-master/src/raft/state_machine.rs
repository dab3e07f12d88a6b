//! The Raft state machine: openraft's `RaftStateMachine` over `dash_store::StateMachine`
//! (`dash.db`). An entry is applied in one transaction that also records its log id (and, for a
//! membership entry, the membership), so the state and what it has applied never disagree; a
//! replayed entry does nothing. A proposal's events are published by every master that applies
//! it, if it changed the state.
//!
//! Snapshots are the whole state: `VACUUM INTO` a file (applies wait for the copy), sent as its
//! bytes; installing one copies its tables into `dash.db` in one transaction. The current
//! snapshot is kept in memory (it is rebuilt from the state when needed); a snapshot being
//! built never replaces a newer one installed meanwhile.

#![allow(
    clippy::result_large_err,
    reason = "openraft's trait methods return its StorageError by value"
)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use dash_store::{Applied, StateMachine};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use tokio::sync::Mutex;

use super::{NodeId, Outcome, TypeConfig};
use crate::message_queue::MessageQueue;

/// The last snapshot built or installed.
#[derive(Debug, Clone)]
struct Stored {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The state machine of one master. Clones share everything.
#[derive(Clone)]
pub struct StateMachineStore {
    machine: StateMachine,
    mq: Arc<MessageQueue>,
    /// Where snapshot files are made and received (`<data>/snapshots/`).
    dir: PathBuf,
    current: Arc<Mutex<Option<Stored>>>,
    built: Arc<std::sync::atomic::AtomicU64>,
    /// Told after every entry that changed the state (the reconciler, the watches).
    changed: Option<Arc<tokio::sync::Notify>>,
}

impl StateMachineStore {
    pub fn new(machine: StateMachine, mq: Arc<MessageQueue>, dir: PathBuf) -> Self {
        StateMachineStore {
            machine,
            mq,
            dir,
            current: Arc::default(),
            built: Arc::default(),
            changed: None,
        }
    }

    /// `notify` is told after every applied entry that changed the state.
    pub fn on_change(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.changed = Some(notify);
        self
    }

    async fn applied(
        &self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let (_, log_id) = self.machine.applied_log_id().await.map_err(sm_read)?;
        let log_id = match log_id {
            Some(text) => serde_json::from_str(&text).map_err(sm_read)?,
            None => None,
        };
        let membership = match self.machine.applied_membership().await.map_err(sm_read)? {
            Some(text) => serde_json::from_str(&text).map_err(sm_read)?,
            None => StoredMembership::default(),
        };
        Ok((log_id, membership))
    }

    /// A fresh path in the snapshot dir.
    fn scratch(&self, what: &str) -> Result<PathBuf, StorageError<NodeId>> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let n = self
            .built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("{what}-{}-{n}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Ok(path)
    }
}

/// Removes an SQLite file and the journal files SQLite may have made beside it.
fn remove_db_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn outcome(a: Applied) -> Outcome {
    Outcome::from(a)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let path = self.scratch("build")?;
        let (log_id, membership) = self.machine.snapshot_to(&path).await.map_err(sm_read)?;
        let data = std::fs::read(&path).map_err(sm_read);
        remove_db_files(&path);
        let data = data?;
        let last_log_id: Option<LogId<NodeId>> = match log_id {
            Some(text) => serde_json::from_str(&text).map_err(sm_read)?,
            None => None,
        };
        let last_membership = match membership {
            Some(text) => serde_json::from_str(&text).map_err(sm_read)?,
            None => StoredMembership::default(),
        };
        let n = self
            .built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{n}", id.leader_id, id.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        {
            let mut current = self.current.lock().await;
            if current
                .as_ref()
                .is_none_or(|c| c.meta.last_log_id <= meta.last_log_id)
            {
                *current = Some(Stored {
                    meta: meta.clone(),
                    data: data.clone(),
                });
            }
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        self.applied().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // Everything openraft hands over at once is applied in one transaction.
        struct Prepared {
            index: u64,
            log_id: String,
            membership: Option<String>,
            proposal: Option<super::Proposal>,
        }
        let mut prepared = Vec::new();
        for entry in entries {
            let log_id = serde_json::to_string(&Some(entry.log_id)).map_err(sm_write)?;
            let index = entry.log_id.index;
            let (membership, proposal) = match entry.payload {
                EntryPayload::Blank => (None, None),
                EntryPayload::Normal(p) => (None, Some(p)),
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    (
                        Some(serde_json::to_string(&stored).map_err(sm_write)?),
                        None,
                    )
                }
            };
            prepared.push(Prepared {
                index,
                log_id,
                membership,
                proposal,
            });
        }
        let batch: Vec<dash_store::LogEntry<'_>> = prepared
            .iter()
            .map(|p| dash_store::LogEntry {
                index: p.index,
                cmd: p.proposal.as_ref().map(|p| &p.cmd),
                log_id: &p.log_id,
                membership: p.membership.as_deref(),
            })
            .collect();
        let applied = self
            .machine
            .apply_log_entries(&batch)
            .await
            .map_err(sm_write)?;
        drop(batch);
        let mut out = Vec::with_capacity(applied.len());
        let mut changed = false;
        for (a, p) in applied.into_iter().zip(prepared) {
            if let Some(proposal) = p.proposal {
                crate::state_log::announce(&self.mq, &a, proposal.events);
            }
            changed |= a.publishes();
            out.push(outcome(a));
        }
        if changed && let Some(n) = &self.changed {
            n.notify_one();
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let path = self.scratch("install")?;
        let signature = meta.signature();
        std::fs::write(&path, &data)
            .map_err(|e| StorageIOError::read_snapshot(Some(signature.clone()), &e))?;
        let installed = self.machine.install_from(&path).await;
        remove_db_files(&path);
        installed.map_err(|e| StorageIOError::read_snapshot(Some(signature), &e))?;
        if let Some(n) = &self.changed {
            n.notify_one();
        }
        *self.current.lock().await = Some(Stored {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.current.lock().await.clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dash_core::command::Command;
    use dash_core::config_parser::parse_service;
    use dash_core::event::{EventDraft, EventKind};
    use openraft::testing::log_id;

    use super::super::Proposal;
    use super::*;

    async fn store(dir: &std::path::Path) -> (StateMachineStore, Arc<MessageQueue>) {
        let mq = Arc::new(MessageQueue::new());
        let db = dash_store::open(&dir.join("dash.db")).await.unwrap();
        let sm = StateMachineStore::new(StateMachine::new(db), mq.clone(), dir.join("snapshots"));
        (sm, mq)
    }

    fn put(name: &str, index: u64) -> Entry<TypeConfig> {
        let spec = parse_service(
            "s.toml",
            &format!("name = \"{name}\"\nimage = \"busybox\"\n"),
        )
        .unwrap();
        Entry {
            log_id: log_id(1, 0, index),
            payload: EntryPayload::Normal(Proposal {
                cmd: Command::PutService {
                    spec: Box::new(spec),
                    at_ms: 1,
                },
                events: vec![EventDraft::service(
                    EventKind::ServiceCreated,
                    name,
                    None,
                    "version 1",
                )],
            }),
        }
    }

    #[tokio::test]
    async fn entries_apply_once_publish_their_events_and_travel_in_snapshots() {
        let a = tempfile::tempdir().unwrap();
        let (mut sm, mq) = store(a.path()).await;
        let out = sm.apply([put("web", 1), put("api", 2)]).await.unwrap();
        assert!(out.iter().all(|o| o.changed && o.rejected.is_none()));
        assert_eq!(
            mq.recent(0).len(),
            2,
            "one event per entry that changed the state"
        );
        // A replay (openraft re-applies from its last known id after a restart) does nothing.
        let again = sm.apply([put("web", 2)]).await.unwrap();
        assert!(!again[0].changed);
        assert_eq!(mq.recent(0).len(), 2);
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 0, 2)));

        // The whole state travels in a snapshot and replaces another master's.
        let snap = sm.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 0, 2)));
        let b = tempfile::tempdir().unwrap();
        let (mut other, _) = store(b.path()).await;
        other.apply([put("stale", 1)]).await.unwrap();
        other
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let read = dash_store::MasterStore::new(
            dash_store::open(&b.path().join("dash.db")).await.unwrap(),
        );
        let mut names: Vec<String> = read
            .services()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.spec.name.to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["api", "web"],
            "the installed state, nothing of the old"
        );
        assert_eq!(
            other.applied_state().await.unwrap().0,
            Some(log_id(1, 0, 2))
        );
        assert!(other.get_current_snapshot().await.unwrap().is_some());
        // No snapshot file is left behind.
        let left: Vec<_> = std::fs::read_dir(a.path().join("snapshots"))
            .unwrap()
            .chain(std::fs::read_dir(b.path().join("snapshots")).unwrap())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
