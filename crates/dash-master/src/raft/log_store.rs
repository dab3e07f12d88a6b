//! The Raft log storage: openraft's `RaftLogStorage` over `dash_store::RaftLogDb`
//! (`<data>/raft.db`). Entries and the vote are JSON; every write is one SQLite transaction
//! with `synchronous = FULL`, so an append of a batch of entries costs one fsync and is on
//! disk before openraft is told (`LogFlushed`), and a vote is on disk before it is returned.

#![allow(
    clippy::result_large_err,
    reason = "openraft's trait methods return its StorageError by value"
)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use dash_store::RaftLogDb;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};

use super::{NodeId, TypeConfig};

/// Keys of the values kept beside the log.
const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";

/// How many of the latest entries are kept in memory besides the file.
const RECENT: usize = 4096;

/// The log of one master. Cheap to clone: clones share the file and the recent entries (a
/// clone is the log reader openraft's replication tasks use).
#[derive(Clone)]
pub struct LogStore {
    db: RaftLogDb,
    /// The entries appended since this master started, the latest [`RECENT`] of them: one
    /// run of consecutive indexes (Raft appends in order; a truncation or a purge cuts the
    /// run at one end). openraft reads each entry back to apply and to replicate it; these
    /// are served from here instead of the file (and its JSON).
    recent: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Entry<TypeConfig>>>>,
}

impl LogStore {
    pub fn new(db: RaftLogDb) -> Self {
        LogStore {
            db,
            recent: Default::default(),
        }
    }

    fn recent(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Entry<TypeConfig>>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entries with `from <= index < to` if the recent ones hold all there are: every
    /// entry from the first recent one on was appended through them.
    fn recent_range(&self, from: u64, to: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let recent = self.recent();
        let first = *recent.keys().next()?;
        (from >= first).then(|| recent.range(from..to).map(|(_, e)| e.clone()).collect())
    }

    async fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let Some(text) = self.db.meta(key).await.map_err(read_err)? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(read_err)
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

fn parse(entries: Vec<String>) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
    entries
        .iter()
        .map(|e| serde_json::from_str(e).map_err(read_err))
        .collect()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.recent_range(from, to) {
            return Ok(entries);
        }
        parse(self.db.range(from, to).await.map_err(read_err)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.meta(LAST_PURGED).await?;
        let last = match self.db.last().await.map_err(read_err)? {
            Some(text) => {
                let entry: Entry<TypeConfig> = serde_json::from_str(&text).map_err(read_err)?;
                Some(*entry.get_log_id())
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let text = serde_json::to_string(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.db
            .set_meta(VOTE, &text)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let Some(text) = self
            .db
            .meta(VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(&e))?
        else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    // `save_committed` / `read_committed`: openraft's defaults (not kept). The state machine
    // records what it applied in the same transaction as the change, so a restarted master
    // knows its applied index; keeping the commit index too would cost one more fsync per
    // commit on every write.

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let rows = entries
            .iter()
            .map(|e| Ok((e.get_log_id().index, serde_json::to_string(e)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(write_err)?;
        // One transaction for the whole batch: on disk (synchronous = FULL) when it returns.
        let result = self.db.append(&rows).await;
        match result {
            Ok(()) => {
                let mut recent = self.recent();
                for e in entries {
                    let index = e.get_log_id().index;
                    // Not the next of the run (a follower's log overwritten past a gap):
                    // start the run again here.
                    if recent
                        .keys()
                        .next_back()
                        .is_some_and(|last| index != last + 1 && !recent.contains_key(&index))
                    {
                        recent.clear();
                    }
                    recent.insert(index, e);
                }
                while recent.len() > RECENT {
                    recent.pop_first();
                }
                drop(recent);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.recent().retain(|i, _| *i < log_id.index);
        self.db.truncate_from(log_id.index).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let text = serde_json::to_string(&log_id).map_err(write_err)?;
        self.recent().retain(|i, _| *i > log_id.index);
        self.db
            .purge_to(log_id.index, &text)
            .await
            .map_err(write_err)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{blank_ent, log_id};

    use super::*;

    async fn open(dir: &std::path::Path) -> LogStore {
        LogStore::new(
            dash_store::open_raft_log(&dir.join("raft.db"))
                .await
                .unwrap(),
        )
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.get_log_id().index).collect()
    }

    #[tokio::test]
    async fn the_log_keeps_entries_votes_and_purges_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path()).await;
        let state = log.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
        assert_eq!(log.read_vote().await.unwrap(), None);

        let batch: Vec<_> = (1..=5).map(|i| blank_ent::<TypeConfig>(1, 0, i)).collect();
        log.blocking_append(batch).await.unwrap();
        assert_eq!(
            indexes(&log.try_get_log_entries(2..4).await.unwrap()),
            [2, 3]
        );
        assert_eq!(
            indexes(&log.try_get_log_entries(..).await.unwrap()),
            [1, 2, 3, 4, 5]
        );
        // A conflicting suffix goes; the new leader's entries take its place.
        log.truncate(log_id(1, 0, 4)).await.unwrap();
        log.blocking_append([blank_ent::<TypeConfig>(2, 1, 4)])
            .await
            .unwrap();
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(2, 1, 4))
        );
        log.purge(log_id(1, 0, 2)).await.unwrap();
        let vote = Vote::new(2, 1);
        log.save_vote(&vote).await.unwrap();
        drop(log);

        let mut log = open(dir.path()).await;
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 0, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));
        assert_eq!(indexes(&log.try_get_log_entries(..).await.unwrap()), [3, 4]);
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        // Everything purged: the last log id is the last purged one.
        log.purge(log_id(2, 1, 4)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 4)));
        assert!(log.try_get_log_entries(..).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn entries_carry_proposals_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path()).await;
        let proposal = super::super::Proposal {
            cmd: dash_core::command::Command::RevokeToken {
                id: "t1".into(),
                at_ms: 7,
            },
            events: vec![],
        };
        let entry = Entry::<TypeConfig> {
            log_id: log_id(1, 0, 1),
            payload: openraft::EntryPayload::Normal(proposal.clone()),
        };
        log.blocking_append([entry]).await.unwrap();
        let back = log.try_get_log_entries(1..2).await.unwrap();
        match &back[0].payload {
            openraft::EntryPayload::Normal(p) => assert_eq!(p, &proposal),
            other => panic!("{other:?}"),
        }
    }
}
