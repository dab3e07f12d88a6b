//! leader_election: the work only the leader does, started when this master becomes the
//! leader and stopped when it stops being it.
//!
//! ```text
//!  raft metrics (openraft elects; this module only follows) ─┬─ leader now ──► liveness reset
//!                                                            │                 work(term) started:
//!                                                            │                 reconciler, scheduler,
//!                                                            │                 service_scaler, liveness
//!                                                            └─ not leader ──► work(term) stopped;
//!                                                                              this master's node
//!                                                                              beats to the leader
//! ```
//!
//! A master alone (no cluster) leads from start to shutdown. A new leader gives every node a
//! full `--node-down-after` before judging it (workers are moving their heartbeats to it),
//! as Nomad resets every node's heartbeat timer on a new leader.

use std::sync::Arc;
use std::time::Duration;

use dash_rpc::proto::BeatRequest;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::master_api::Liveness;
use crate::raft::node::RaftNode;

/// Starts the leader's tasks; they end when the receiver changes.
pub type LeaderWork = Box<dyn Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>> + Send + Sync>;

/// Runs `work` while this master leads, until `shutdown`. Without Raft: from now until
/// shutdown. With Raft, a follower sends a beat for its own node to the leader every
/// `beat` (a master's node does not heartbeat over master_api).
pub async fn run(
    raft: Option<RaftNode>,
    liveness: Option<Arc<Liveness>>,
    beat: Duration,
    work: LeaderWork,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(node) = raft else {
        let tasks = work(shutdown.clone());
        let _ = shutdown.changed().await;
        join(tasks).await;
        return;
    };
    let mut metrics = node.raft.metrics();
    let mut term: Option<(watch::Sender<bool>, Vec<JoinHandle<()>>)> = None;
    let mut ticker = tokio::time::interval(beat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let leading = node.is_leader();
        match (leading, term.is_some()) {
            (true, false) => {
                let t = metrics.borrow().current_term;
                tracing::info!(term = t, "this master is the leader; leader work started");
                if let Some(l) = &liveness {
                    l.reset();
                }
                let (tx, rx) = watch::channel(false);
                term = Some((tx, work(rx)));
            }
            (false, true) => {
                if let Some((tx, tasks)) = term.take() {
                    let _ = tx.send(true);
                    join(tasks).await;
                }
                tracing::info!(leader = ?node.leader(), "this master is no longer the leader; leader work stopped");
            }
            _ => {}
        }
        tokio::select! {
            r = metrics.changed() => if r.is_err() { break },
            _ = ticker.tick() => {
                if !leading && let Some((_, addr)) = node.leader() {
                    beat_leader(&node, &addr).await;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    if let Some((tx, tasks)) = term.take() {
        let _ = tx.send(true);
        join(tasks).await;
    }
}

async fn join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Tells the leader this master's node is alive; a failure is only logged (the next beat
/// goes to whichever master leads then).
async fn beat_leader(node: &RaftNode, addr: &str) {
    let Ok(mut client) = node.peers.client(addr) else {
        return;
    };
    let mut req = tonic::Request::new(BeatRequest {});
    req.set_timeout(Duration::from_millis(500));
    if let Err(e) = client.beat(req).await {
        tracing::debug!(leader = %addr, error = %dash_rpc::describe(&e), "beat to the leader");
        node.peers.forget(addr);
    }
}
