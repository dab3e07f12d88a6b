//! The Raft network: openraft's messages between masters over RaftApi (master_api's port,
//! tonic, mutual TLS with this master's certificate, which the CA issued for role master).
//! Requests and answers travel as openraft's own JSON; an answer carries the callee's
//! `Result`, so its Raft errors come back as openraft's remote errors.
//!
//! One lazily connected channel per peer address and lane, shared by every call to it and kept
//! across calls; a channel that failed is dropped and made again on the next call. Raft's own
//! messages (appends, heartbeats, votes) have a lane of their own: their channels are made on
//! Raft's runtime, so their connections are driven there and not queued behind the worker
//! RPCs of the daemon's runtime (see `node`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dash_rpc::proto::RaftMessage;
use dash_rpc::proto::raft_api_client::RaftApiClient;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::{NodeId, TypeConfig};

/// Channels to the other masters, with this master's client identity. Clones share both; a
/// clone for Raft ([`Peers::for_raft`]) keeps channels of its own lane.
#[derive(Clone, Default)]
pub struct Peers {
    inner: Arc<Mutex<PeersInner>>,
    raft_lane: bool,
}

#[derive(Default)]
struct PeersInner {
    tls: Option<ClientTlsConfig>,
    /// By (Raft's lane, address).
    channels: HashMap<(bool, String), Channel>,
}

/// Why a call to another master did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not connected, refused, timed out before an answer: the request may not have arrived.
    #[error("{addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The master answered with an error status.
    #[error("{addr}: {message}")]
    Refused { addr: String, message: String },
}

impl Peers {
    /// The same peers for Raft's own messages: channels of their own, made (and so driven) on
    /// the runtime that first calls through them, Raft's.
    pub fn for_raft(&self) -> Peers {
        Peers {
            inner: Arc::clone(&self.inner),
            raft_lane: true,
        }
    }

    /// This master's client identity (its certificate and the CA), again after a renewal:
    /// channels made with the old one are dropped.
    pub fn set_tls(&self, tls: ClientTlsConfig) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.tls = Some(tls);
            inner.channels.clear();
        }
    }

    /// A RaftApi client to `addr` (host:port).
    pub fn client(&self, addr: &str) -> Result<RaftApiClient<Channel>, String> {
        Ok(RaftApiClient::new(self.channel(addr)?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// The channel to the master at `addr` (host:port), with this master's identity: RaftApi
    /// and master_api share it (one port).
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| "peers lock poisoned".to_string())?;
        let key = (self.raft_lane, addr.to_string());
        let channel = match inner.channels.get(&key) {
            Some(c) => c.clone(),
            None => {
                let tls = inner
                    .tls
                    .clone()
                    .ok_or_else(|| "this master has no certificate yet".to_string())?;
                let endpoint = Endpoint::from_shared(format!("https://{addr}"))
                    .map_err(|e| format!("{addr}: {e}"))?
                    .tls_config(tls)
                    .map_err(|e| format!("{addr}: {e}"))?
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(1))
                    .keep_alive_timeout(Duration::from_secs(2));
                let channel = endpoint.connect_lazy();
                inner.channels.insert(key, channel.clone());
                channel
            }
        };
        drop(inner);
        Ok(channel)
    }

    /// Forgets the channel to `addr` (after a transport error: made again on the next call).
    pub fn forget(&self, addr: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.channels.remove(&(self.raft_lane, addr.to_string()));
        }
    }

    /// Calls `method` of RaftApi at `addr` with `req` as JSON and reads the JSON answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let unreachable = |message: String| CallError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        let mut client = self.client(addr).map_err(unreachable)?;
        let json = serde_json::to_vec(req).map_err(|e| unreachable(e.to_string()))?;
        let mut request = tonic::Request::new(RaftMessage { json });
        request.set_timeout(timeout);
        let answer = match method {
            Method::AppendEntries => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::InstallSnapshot => client.install_snapshot(request).await,
            Method::Propose => client.propose(request).await,
            Method::Status => client.status(request).await,
            Method::RemoveMaster => client.remove_master(request).await,
        };
        match answer {
            Ok(a) => serde_json::from_slice(&a.into_inner().json).map_err(|e| CallError::Refused {
                addr: addr.to_string(),
                message: format!("an answer that is not openraft's JSON: {e}"),
            }),
            Err(status) => {
                let message = dash_rpc::describe(&status);
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
                ) {
                    self.forget(addr);
                    Err(CallError::Unreachable {
                        addr: addr.to_string(),
                        message,
                    })
                } else {
                    Err(CallError::Refused {
                        addr: addr.to_string(),
                        message,
                    })
                }
            }
        }
    }
}

/// The RaftApi calls that carry openraft's JSON.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    Status,
    RemoveMaster,
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            peers: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// openraft's connection to one other master.
pub struct Connection {
    peers: Peers,
    target: NodeId,
    addr: String,
}

impl Connection {
    async fn send<Req, Resp, E>(
        &self,
        method: Method,
        req: Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .peers
            .call(&self.addr, method, &req, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::Refused { .. } => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Method::AppendEntries, req, &option).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Method::InstallSnapshot, req, &option).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Method::Vote, req, &option).await
    }
}
