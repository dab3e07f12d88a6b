//! `dash cluster status`: the masters' Raft as the leader sees it: who leads, the term, the
//! commit index, and per master its role, how far it has the log and when it was last heard.

use dash_core::api::{ClusterStatus, MasterStatus};
use dash_store::MasterStore;
use openraft::ServerState;

use super::node::RaftNode;
use super::raft_id;
use crate::master_api::Liveness;

/// This master's view; complete (match index, lag, contact) on the leader.
pub async fn local(
    node: &RaftNode,
    store: &MasterStore,
    liveness: Option<&Liveness>,
    me: &str,
) -> ClusterStatus {
    let m = node.raft.metrics().borrow().clone();
    let names: Vec<String> = store
        .nodes()
        .await
        .map(|n| n.into_iter().map(|n| n.id).collect())
        .unwrap_or_default();
    let name_of = |id: u64| {
        names
            .iter()
            .find(|n| raft_id(n) == id)
            .cloned()
            .unwrap_or_else(|| format!("raft-{id}"))
    };
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    let leading = m.state == ServerState::Leader;
    let masters = membership
        .nodes()
        .map(|(id, n)| {
            let name = name_of(*id);
            let matched = if *id == node.id {
                m.last_log_index
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index)
            };
            let role = if Some(*id) == m.current_leader {
                "leader"
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            };
            let last_contact_ms = match (leading, *id == node.id) {
                (_, true) => Some(0),
                (true, false) => liveness.and_then(|l| l.silence_ms(&name)),
                (false, false) => None,
            };
            MasterStatus {
                name,
                address: n.addr.clone(),
                role: role.into(),
                match_index: matched.filter(|_| leading),
                lag: matched.filter(|_| leading).map(|i| last.saturating_sub(i)),
                last_contact_ms,
            }
        })
        .collect();
    ClusterStatus {
        leader: m.current_leader.map(name_of),
        term: m.current_term,
        commit_index: m.last_applied.map_or(0, |l| l.index),
        answered_by: me.to_string(),
        masters,
    }
}
