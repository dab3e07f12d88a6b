//! RaftApi, the masters' side of master_api's port: openraft's messages, writes forwarded by
//! followers, read indexes, masters joining, and the cluster secrets a new master needs.
//!
//! Only masters may call it: the peer's certificate (verified by TLS against the cluster CA)
//! must be of role master, and, if this master's state knows the peer's node, be the
//! certificate the state recorded for it (a removed master's is refused). A master that has
//! just joined knows nobody yet: it takes the calls of the leader that added it.

use std::sync::Arc;
use std::time::Duration;

use dash_rpc::pki::{self, PeerIdentity, Role};
use dash_rpc::proto::raft_api_server::RaftApi;
use dash_rpc::proto::*;
use dash_store::MasterStore;
use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::node::{ProposeAnswer, RaftNode};
use super::{NodeId, Proposal};
use crate::master_api::Liveness;

/// The RaftApi service of one master.
#[derive(Clone)]
pub struct RaftApiService {
    pub node: RaftNode,
    pub store: MasterStore,
    /// The cluster CA (certificate, key) and the admin token, for masters that join.
    pub secrets: Arc<(String, String, String)>,
    /// Beats of other masters' own nodes (judged by the leader).
    pub liveness: Arc<Liveness>,
    /// Where a beat that makes a judged master ready again is written, and who is woken.
    pub log: crate::state_log::StateLog,
    pub wake: Arc<tokio::sync::Notify>,
    /// Masters whose beat is being turned into "ready" (one proposal at a time each).
    pub reviving: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Metadata key of the leader's address in a "not the leader" refusal.
pub const LEADER_KEY: &str = "dash-leader";

fn decode<T: DeserializeOwned>(m: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&m.json)
        .map_err(|e| Status::invalid_argument(format!("not openraft's JSON: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(RaftMessage { json }))
        .map_err(|e| Status::internal(e.to_string()))
}

impl RaftApiService {
    async fn master<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        let certs = req.peer_certs();
        let der = certs
            .as_ref()
            .and_then(|c| c.first())
            .ok_or_else(|| Status::unauthenticated("RaftApi needs a master's certificate"))?;
        let id = pki::identity(der.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))?;
        if id.role != Role::Master {
            return Err(Status::permission_denied(format!(
                "node {} is a {}; only masters call RaftApi",
                id.node,
                id.role.as_str()
            )));
        }
        match self
            .store
            .node_cert_serials(&id.node)
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        {
            None => {
                // Unknown to the state: a master that joined after the entries this one has
                // applied, or one that was removed (and is out of the membership then). A
                // master that is not a voter yet (it is joining) takes the calls of the
                // leader that adds it.
                let members = self.node.raft.metrics().borrow().membership_config.clone();
                let membership = members.membership();
                let in_membership = membership.get_node(&super::raft_id(&id.node)).is_some();
                let self_voter = membership.voter_ids().any(|v| v == self.node.id);
                if in_membership || !self_voter {
                    Ok(id)
                } else {
                    Err(Status::permission_denied(format!(
                        "master {} is not part of this cluster",
                        id.node
                    )))
                }
            }
            Some(serials) if crate::node_bouncer::is_recorded(&serials, &id) => Ok(id),
            Some(_) => Err(Status::permission_denied(format!(
                "certificate {} of master {} was replaced",
                id.serial, id.node
            ))),
        }
    }

    /// "Not the leader": the leader's address in the message and in metadata.
    fn not_leader(&self) -> Status {
        let leader = self.node.leader().map(|(_, a)| a).unwrap_or_default();
        let mut s = Status::failed_precondition(if leader.is_empty() {
            "this master is not the leader, and no leader is elected".to_string()
        } else {
            format!("this master is not the leader; the leader is {leader}")
        });
        if let Ok(v) = leader.parse() {
            s.metadata_mut().insert(LEADER_KEY, v);
        }
        s
    }
}

#[tonic::async_trait]
impl RaftApi for RaftApiService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.master(&req).await?;
        let r = self.node.raft.append_entries(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.master(&req).await?;
        let r = self.node.raft.vote(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.master(&req).await?;
        let r = self
            .node
            .raft
            .install_snapshot(decode(req.get_ref())?)
            .await;
        encode(&r)
    }

    async fn propose(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.master(&req).await?;
        let p: Proposal = decode(req.get_ref())?;
        // The leader's own wait: a leader cut off from its majority never commits; the caller
        // then tries again (elsewhere, once a new leader is known).
        let answer: ProposeAnswer =
            match tokio::time::timeout(super::node::WRITE_TIMEOUT, self.node.raft.client_write(p))
                .await
            {
                Ok(r) => r.map(|r| r.data),
                Err(_) => return Err(Status::unavailable("not committed in time")),
            };
        encode(&answer)
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.master(&req).await?;
        match self.node.raft.ensure_linearizable().await {
            Ok(id) => Ok(Response::new(ReadIndexResponse {
                index: id.map_or(0, |l| l.index),
            })),
            Err(RaftError::APIError(_)) => Err(self.not_leader()),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn add_master(
        &self,
        req: Request<AddMasterRequest>,
    ) -> Result<Response<AddMasterResponse>, Status> {
        let peer = self.master(&req).await?;
        let AddMasterRequest { raft_id, addr } = req.into_inner();
        if raft_id != super::raft_id(&peer.node) {
            return Err(Status::invalid_argument(format!(
                "raft_id {raft_id} is not master {}'s",
                peer.node
            )));
        }
        if !self.node.is_leader() {
            return Err(self.not_leader());
        }
        add_master(&self.node, raft_id, &addr).await?;
        tracing::info!(master = %peer.node, %addr, "master added to the membership");
        Ok(Response::new(AddMasterResponse {}))
    }

    async fn cluster_secrets(
        &self,
        req: Request<SecretsRequest>,
    ) -> Result<Response<SecretsResponse>, Status> {
        let peer = self.master(&req).await?;
        tracing::info!(master = %peer.node, "cluster secrets sent to a master");
        let (ca_cert_pem, ca_key_pem, admin_token) = (*self.secrets).clone();
        Ok(Response::new(SecretsResponse {
            ca_cert_pem,
            ca_key_pem,
            admin_token,
        }))
    }

    async fn status(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.master(&req).await?;
        if !self.node.is_leader() {
            return Err(self.not_leader());
        }
        let me = self
            .store
            .nodes()
            .await
            .ok()
            .and_then(|n| {
                n.into_iter()
                    .find(|n| super::raft_id(&n.id) == self.node.id)
            })
            .map(|n| n.id)
            .unwrap_or_default();
        encode(&super::status::local(&self.node, &self.store, Some(&self.liveness), &me).await)
    }

    async fn remove_master(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let peer = self.master(&req).await?;
        let id: NodeId = decode(req.get_ref())?;
        if !self.node.is_leader() {
            return Err(self.not_leader());
        }
        let r = remove_master(&self.node, id).await;
        if r.is_ok() {
            tracing::info!(asked_by = %peer.node, raft_id = id, "master removed from the membership");
        }
        encode(&r)
    }

    async fn beat(&self, req: Request<BeatRequest>) -> Result<Response<Ack>, Status> {
        let peer = self.master(&req).await?;
        if !self.node.is_leader() {
            // A beat sent to a master that no longer leads: recorded, nothing proposed (the
            // leader, which judges, did not hear it; a Ready from here would flap with its
            // judgment).
            self.liveness.beat(&peer.node);
            return Ok(Response::new(Ack {}));
        }
        // A master judged while it was silent (joining, or stalled on its disk) is ready
        // again with its next beat, as a worker is with its next heartbeat. The beat is
        // answered at once; the proposal runs apart, one at a time per master.
        self.liveness.beat(&peer.node);
        let claimed = self
            .reviving
            .lock()
            .is_ok_and(|mut r| r.insert(peer.node.clone()));
        if claimed {
            let (liveness, log, wake, reviving) = (
                self.liveness.clone(),
                self.log.clone(),
                self.wake.clone(),
                self.reviving.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = liveness.heard(&peer.node, None, &log, &wake).await {
                    tracing::warn!(master = %peer.node, error = %e, "making a master ready again");
                }
                if let Ok(mut r) = reviving.lock() {
                    r.remove(&peer.node);
                }
            });
        }
        Ok(Response::new(Ack {}))
    }
}

/// Adds a master: a learner first (it receives the log, or a snapshot, until it is caught
/// up), then a voter by joint consensus. Again for a master already in: nothing changes.
pub async fn add_master(node: &RaftNode, id: NodeId, addr: &str) -> Result<(), Status> {
    let err = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Status::failed_precondition("leadership moved while adding the master; try again")
        }
        other => Status::unavailable(other.to_string()),
    };
    let voters: std::collections::BTreeSet<NodeId> = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    if voters.contains(&id) {
        return Ok(());
    }
    tokio::time::timeout(
        Duration::from_secs(60),
        node.raft.add_learner(id, BasicNode::new(addr), true),
    )
    .await
    .map_err(|_| Status::deadline_exceeded("the new master did not catch up within 60 s"))?
    .map_err(err)?;
    let mut members = voters;
    members.insert(id);
    node.raft
        .change_membership(members, false)
        .await
        .map_err(err)?;
    Ok(())
}

/// Removes a master from the membership (by joint consensus; a learner just goes), at the
/// leader. Nothing changes for an id that is not a member. The leader itself is not removed
/// this way: its replacement must be elected first (stop it, then remove it).
pub async fn remove_master(node: &RaftNode, id: NodeId) -> Result<(), String> {
    if id == node.id {
        return Err(
            "it is the leader; stop it first (another master is elected), then remove it".into(),
        );
    }
    let membership = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    if membership.get_node(&id).is_none() {
        return Ok(());
    }
    let voters: std::collections::BTreeSet<NodeId> =
        membership.voter_ids().filter(|v| *v != id).collect();
    if voters.is_empty() {
        return Err("it is the last voter".into());
    }
    match tokio::time::timeout(
        super::node::WRITE_TIMEOUT,
        node.raft.change_membership(voters, false),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the membership without it was not committed within {} s: a majority of the \
             masters must be up",
            super::node::WRITE_TIMEOUT.as_secs()
        )),
    }
}
