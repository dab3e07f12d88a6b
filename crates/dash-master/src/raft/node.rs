//! This master's Raft: opened over `<data>/raft.db` (the log) and `<data>/dash.db` (the
//! state), started as the first member of a new cluster or as a master that joined one, and
//! the write path the state log takes behind it (`propose`, with the leader found and the
//! write forwarded to it when this master is not the leader).
//!
//! ```text
//!  propose(Proposal) ─► raft.client_write ─► committed by a majority, applied here ─► Outcome
//!        │ "forward to leader L"
//!        └─► RaftApi.Propose at L ─► L's client_write ─► Outcome      (retried until a
//!                                                                      deadline while there is
//!                                                                      no leader; then refused)
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dash_store::{Db, StateMachine, StoreError};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::sync::Notify;

use super::log_store::LogStore;
use super::network::{CallError, Method, Peers};
use super::state_machine::StateMachineStore;
use super::{NodeId, Outcome, Proposal, Raft};
use crate::message_queue::MessageQueue;

/// How long a write waits for a leader before it is refused.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a linearizable read waits for a leader's read index.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a write at a follower gets back from the leader's `Propose`.
pub type ProposeAnswer = Result<Outcome, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// This master's Raft and how to reach the others. Clones share everything.
#[derive(Clone)]
pub struct RaftNode {
    pub raft: Raft,
    pub id: NodeId,
    /// This master's master_api address, as the others dial it.
    pub addr: String,
    pub peers: Peers,
    /// Raft's runtime ends when the last clone of this node is dropped.
    _runtime: Arc<RuntimeGuard>,
}

/// Ends Raft's runtime (and every Raft task on it) when dropped.
struct RuntimeGuard(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Why this master's Raft could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error("opening the Raft log {}", path.display())]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("reading the state: {0}")]
    State(#[source] StoreError),
    #[error("starting Raft: {0}")]
    Raft(String),
}

/// Starts Raft on a runtime of its own (two threads named `dash-raft`), which runs until the
/// returned guard is dropped. Its core, replication, heartbeats, elections and the applying of
/// entries are tasks there; on the daemon's runtime they waited in one queue with every worker
/// RPC, and a leader answering the heartbeats of hundreds of workers on two busy cores sent its
/// own heartbeats late: followers started elections and the leadership changed again and again
/// (the e2e scale test saw two masters hold elections for minutes after a failover, and reads
/// that need the leader's read index failed all along). The handle works from any runtime:
/// it talks to the core over channels.
async fn start_on_own_runtime(
    id: NodeId,
    config: openraft::Config,
    peers: Peers,
    log: LogStore,
    sm: StateMachineStore,
) -> Result<(Raft, RuntimeGuard), RaftStartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dash-raft")
        .enable_all()
        .build()
        .map_err(|e| RaftStartError::Raft(format!("starting Raft's runtime: {e}")))?;
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("dash-raft-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let raft = Raft::new(id, Arc::new(config), peers, log, sm).await;
                let ok = raft.is_ok();
                let _ = started_tx.send(raft);
                if ok {
                    // Raft's tasks run on the runtime's worker threads meanwhile.
                    let _ = stopped.await;
                }
            });
            // Outside any async context: the runtime and its tasks end here.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| RaftStartError::Raft(format!("starting Raft's thread: {e}")))?;
    let raft = started
        .await
        .map_err(|_| RaftStartError::Raft("Raft's thread ended while starting".into()))?
        .map_err(|e| RaftStartError::Raft(e.to_string()))?;
    Ok((raft, RuntimeGuard(Some(stop))))
}

/// Whether `<data>/raft.db` holds a Raft log already (this data dir belongs to a cluster of
/// masters, and must not be written to without it).
pub fn has_raft_log(data: &Path) -> bool {
    data.join("raft.db").exists()
}

impl RaftNode {
    /// Opens the log and the state machine and starts Raft (not yet a member of anything if
    /// the log is new: `bootstrap` or a leader's `AddMaster` makes it one). `on_change` is
    /// called after every applied entry that changed the state.
    pub async fn open(
        data: &Path,
        node: &str,
        addr: String,
        db: Db,
        mq: Arc<MessageQueue>,
        on_change: Arc<Notify>,
    ) -> Result<RaftNode, RaftStartError> {
        let path = data.join("raft.db");
        let log = dash_store::open_raft_log(&path)
            .await
            .map_err(|source| RaftStartError::Log { path, source })?;
        let sm = StateMachineStore::new(StateMachine::new(db), mq, data.join("snapshots"))
            .on_change(on_change);
        let peers = Peers::default();
        let id = super::raft_id(node);
        let config = super::config()
            .validate()
            .map_err(|e| RaftStartError::Raft(e.to_string()))?;
        let (raft, runtime) =
            start_on_own_runtime(id, config, peers.for_raft(), LogStore::new(log), sm).await?;
        Ok(RaftNode {
            raft,
            id,
            addr,
            peers,
            _runtime: Arc::new(runtime),
        })
    }

    /// Makes this master the only member of a new cluster, once: a log that has a membership
    /// already is left alone. A state older than the log (a single-master data dir, upgraded in
    /// place) becomes the snapshot the log starts after, so that a master joining later gets it
    /// whole instead of the log's entries alone.
    pub async fn bootstrap(&self, machine: &StateMachine) -> Result<(), RaftStartError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| RaftStartError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let (before, log_id) = machine
            .applied_log_id()
            .await
            .map_err(RaftStartError::State)?;
        let upgraded = log_id.is_none() && before > 0;
        let members = BTreeMap::from([(self.id, BasicNode::new(&self.addr))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| RaftStartError::Raft(e.to_string()))?;
        if upgraded {
            // The membership entry applied, then a snapshot of everything, then the log up to
            // it dropped.
            let m = self
                .raft
                .wait(Some(Duration::from_secs(10)))
                .state(ServerState::Leader, "one-member cluster elects itself")
                .await
                .map_err(|e| RaftStartError::Raft(e.to_string()))?;
            let upto = m.last_log_index.unwrap_or(0);
            self.raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(upto), "membership applied")
                .await
                .map_err(|e| RaftStartError::Raft(e.to_string()))?;
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| RaftStartError::Raft(e.to_string()))?;
            // A snapshot covering `upto` (the metrics read above may predate the leader's
            // blank entry: wait for the index, not for one exact log id).
            self.raft
                .wait(Some(Duration::from_secs(30)))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= upto),
                    "the upgraded state's snapshot",
                )
                .await
                .map_err(|e| RaftStartError::Raft(e.to_string()))?;
            self.raft
                .trigger()
                .purge_log(upto)
                .await
                .map_err(|e| RaftStartError::Raft(e.to_string()))?;
            tracing::info!(
                applied_before = before,
                "a single-master state became a one-member Raft cluster"
            );
        } else {
            tracing::info!(id = self.id, addr = %self.addr, "a new one-member Raft cluster");
        }
        Ok(())
    }

    /// The leader this master knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Whether this master is the leader now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// A linearizable read's barrier (read index): the leader confirms it still leads (a
    /// heartbeat round to a majority) and names its commit index; this master waits until it
    /// has applied that far. A read of the local state after it sees every write acknowledged
    /// before it began. Fails (saying why) when no leader answers within [`READ_TIMEOUT`].
    pub async fn read_barrier(&self) -> Result<(), String> {
        let deadline = Instant::now() + READ_TIMEOUT;
        let index = loop {
            let asked = if self.is_leader() {
                match tokio::time::timeout(READ_TIMEOUT, self.raft.ensure_linearizable()).await {
                    Ok(Ok(id)) => Ok(id.map_or(0, |l| l.index)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("leadership not confirmed in time".to_string()),
                }
            } else if let Some((_, leader)) = self.leader() {
                self.leader_read_index(&leader).await
            } else {
                Err("no leader elected".to_string())
            };
            match asked {
                Ok(index) => break index,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "no leader confirmed a read index within {} s ({e})",
                        READ_TIMEOUT.as_secs()
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left.max(Duration::from_millis(100))))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|e| format!("this master did not apply up to the read index {index}: {e}"))
    }

    async fn leader_read_index(&self, leader: &str) -> Result<u64, String> {
        let mut client = self.peers.client(leader)?;
        let mut req = tonic::Request::new(dash_rpc::proto::ReadIndexRequest {});
        req.set_timeout(READ_TIMEOUT);
        match client.read_index(req).await {
            Ok(r) => Ok(r.into_inner().index),
            Err(status) => {
                if status.code() == tonic::Code::Unavailable
                    || status.code() == tonic::Code::Unknown
                {
                    self.peers.forget(leader);
                }
                Err(format!("{leader}: {}", status.message()))
            }
        }
    }

    /// `node`'s place in this master's view of the membership: "leader", "follower",
    /// "learner", or None (not a member: a worker, or a removed master).
    pub fn role_of(&self, node: &str) -> Option<&'static str> {
        let id = super::raft_id(node);
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        if m.current_leader == Some(id) {
            Some("leader")
        } else if membership.voter_ids().any(|v| v == id) {
            Some("follower")
        } else if membership.get_node(&id).is_some() {
            Some("learner")
        } else {
            None
        }
    }

    /// Removes master `node` from the membership, through the leader (`dash node rm`).
    pub async fn remove_master(&self, node: &str) -> Result<(), String> {
        let id = super::raft_id(node);
        if self.is_leader() {
            return super::api::remove_master(self, id).await;
        }
        let (_, leader) = self
            .leader()
            .ok_or("no leader is elected now; a majority of the masters must be up")?;
        let answer: Result<Result<(), String>, CallError> = self
            .peers
            .call(
                &leader,
                Method::RemoveMaster,
                &id,
                WRITE_TIMEOUT + Duration::from_secs(1),
            )
            .await;
        answer.map_err(|e| e.to_string())?
    }

    /// Every member and learner: (id, master_api address).
    pub fn masters(&self) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Proposes `p` and waits until it is committed and applied: here if this master leads,
    /// else at the leader it names. While there is no leader (an election, a lost majority)
    /// it tries again for up to [`WRITE_TIMEOUT`], then fails saying which masters it tried.
    /// A write that timed out at a leader may still be committed later; it was not
    /// acknowledged.
    pub async fn propose(&self, p: Proposal) -> Result<Outcome, StoreError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut last_error = String::from("no leader elected");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let masters: Vec<String> = self.masters().into_iter().map(|(_, a)| a).collect();
                return Err(StoreError::Unavailable(format!(
                    "no leader took the write within {} s ({last_error}); masters: {}; a majority \
                     of them must be up and reach each other",
                    WRITE_TIMEOUT.as_secs(),
                    masters.join(", ")
                )));
            }
            match tokio::time::timeout(left, self.raft.client_write(p.clone())).await {
                Err(_) => last_error = "the leader did not commit it in time".into(),
                Ok(Ok(r)) => return Ok(r.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    match f.leader_node {
                        None => last_error = "no leader elected".into(),
                        Some(leader) => match self.forward(&leader.addr, &p, left).await {
                            Ok(Ok(outcome)) => return Ok(outcome),
                            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                                last_error = format!("{} is no longer the leader", leader.addr)
                            }
                            Ok(Err(e)) => {
                                return Err(StoreError::Unavailable(format!(
                                    "the leader at {} refused the write: {e}",
                                    leader.addr
                                )));
                            }
                            Err(e @ CallError::Unreachable { .. }) => last_error = e.to_string(),
                            Err(e @ CallError::Refused { .. }) => {
                                return Err(StoreError::Unavailable(format!(
                                    "forwarding the write to the leader: {e}"
                                )));
                            }
                        },
                    }
                }
                Ok(Err(RaftError::APIError(e))) => {
                    return Err(StoreError::Unavailable(format!(
                        "the log refused the write: {e}"
                    )));
                }
                Ok(Err(RaftError::Fatal(e))) => {
                    return Err(StoreError::Unavailable(format!(
                        "this master's Raft has stopped ({e}); restart it"
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn forward(
        &self,
        leader: &str,
        p: &Proposal,
        left: Duration,
    ) -> Result<ProposeAnswer, CallError> {
        self.peers
            .call(leader, Method::Propose, p, left.min(Duration::from_secs(5)))
            .await
    }
}
