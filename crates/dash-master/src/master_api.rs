//! master_api: the gRPC service workers call (tonic; contract in `crates/dash-rpc/proto`).
//!
//! Join is the only call without a client certificate (the token authorises it, see
//! node_bouncer); every other call is authorised from the peer's certificate. Heartbeats feed
//! [`Liveness`], which turns silence into `unreachable` and then `down`; the reconciler moves
//! the replicas of down nodes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dash_core::api::NodeState;
use dash_core::command::{Command, NodeRecord, ReplicaStatus};
use dash_core::event::{EventDraft, EventKind};
use dash_core::spec::Resources;
use dash_image::ImageStore;
use dash_rpc::pki::PeerIdentity;
use dash_rpc::proto::master_api_server::MasterApi;
use dash_rpc::proto::*;
use dash_store::{MasterStore, Rejection};
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Notify, mpsc, watch};
use tonic::{Request, Response, Status};

use crate::message_queue::MessageQueue;
use crate::node_bouncer::{BouncerError, NodeBouncer};
use crate::now_ms;
use crate::service_state::ServiceState;
use crate::state_log::StateLog;

/// Timings of node liveness.
#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    /// How often workers send a heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a node is `unreachable` (its replicas stay).
    pub unreachable_after: Duration,
    /// Silence after which a node is `down` and its replicas are started elsewhere.
    pub down_after: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            unreachable_after: Duration::from_millis(1500),
            down_after: Duration::from_secs(3),
        }
    }
}

/// When each node was last heard from (in memory: a restarted or newly leading master gives
/// every node a full `down_after`, and one it has not heard from yet the failover grace too,
/// before judging it).
pub struct Liveness {
    cfg: LivenessConfig,
    seen: Mutex<HashMap<String, Instant>>,
    /// When this master first judged each node it has not heard from yet.
    first_sight: Mutex<HashMap<String, Instant>>,
    /// Nodes this master judged unreachable or down: their next heartbeat reads the state
    /// afresh (the assignment feed's copy may not show the judgment yet).
    judged: Mutex<std::collections::HashSet<String>>,
}

impl Liveness {
    pub fn new(cfg: LivenessConfig) -> Self {
        Self {
            cfg,
            seen: Mutex::new(HashMap::new()),
            first_sight: Mutex::new(HashMap::new()),
            judged: Mutex::new(Default::default()),
        }
    }

    /// Forgets every beat: each node gets a full `down_after` from now, and the failover grace
    /// beyond it until it is heard (see [`Liveness::failover_grace`]). A master that has just
    /// become the leader does this (workers are moving their heartbeats to it; Nomad resets
    /// every node's heartbeat timer on a new leader the same way).
    pub fn reset(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.clear();
        }
        if let Ok(mut s) = self.first_sight.lock() {
            s.clear();
        }
    }

    /// Milliseconds since `node` was last heard from (None: never, since this master leads).
    pub fn silence_ms(&self, node: &str) -> Option<u64> {
        let s = self.seen.lock().ok()?;
        s.get(node).map(|t| t.elapsed().as_millis() as u64)
    }

    pub fn config(&self) -> LivenessConfig {
        self.cfg
    }

    /// Whether this master judged `node` since its last heartbeat (and forgets it).
    fn take_judged(&self, node: &str) -> bool {
        self.judged.lock().is_ok_and(|mut j| j.remove(node))
    }

    /// `node` was heard from (a worker's heartbeat, a master's beat): the beat is recorded,
    /// and a node judged unreachable or down is made ready again. `known` is its state as the
    /// caller last saw it; it is read afresh when unknown, or when this master judged the
    /// node since its last beat (the caller's copy may not show the judgment yet). None: the
    /// state has no such node.
    pub async fn heard(
        &self,
        node: &str,
        known: Option<NodeState>,
        log: &StateLog,
        wake: &Notify,
    ) -> Result<Option<NodeState>, dash_store::StoreError> {
        self.beat(node);
        let judged = self.take_judged(node);
        let state = match known {
            Some(s) if !judged => s,
            _ => match log.store().node_state(node).await? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        if !matches!(state, NodeState::Unreachable | NodeState::Down) {
            return Ok(Some(state));
        }
        log.propose_with(
            Command::SetNodeState {
                id: node.to_string(),
                state: NodeState::Ready,
                at_ms: now_ms(),
                from: None,
            },
            vec![EventDraft::node(
                EventKind::NodeReady,
                node,
                "heartbeats again",
            )],
        )
        .await?;
        wake.notify_one();
        Ok(Some(NodeState::Ready))
    }

    /// Forgets nodes the state no longer has (removed, or simulated ones gone).
    fn forget_gone(&self, nodes: &[(String, NodeState)]) {
        let known: std::collections::HashSet<&str> =
            nodes.iter().map(|(id, _)| id.as_str()).collect();
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|id, _| known.contains(id.as_str()));
        }
        if let Ok(mut s) = self.first_sight.lock() {
            s.retain(|id, _| known.contains(id.as_str()));
        }
        if let Ok(mut s) = self.judged.lock() {
            s.retain(|id| known.contains(id.as_str()));
        }
    }

    pub fn beat(&self, node: &str) {
        if let Ok(mut s) = self.seen.lock()
            && s.insert(node.to_string(), Instant::now()).is_none()
            && let Ok(mut first) = self.first_sight.lock()
        {
            first.remove(node);
        }
    }

    /// How much longer than its thresholds a node this master has not heard from yet is given:
    /// `down_after`, at least 10 s. After a failover (or a master's restart) every worker
    /// reconnects to the new leader at once, mutual TLS handshakes and all; under load (the
    /// e2e scale test's 500 workers on two cores) some took more than `down_after`, were judged
    /// down and had their replicas moved, where a failover must change nothing but a pause.
    /// Nomad gives nodes a failover heartbeat TTL for the same reason.
    pub fn failover_grace(&self) -> Duration {
        self.cfg.down_after.max(Duration::from_secs(10))
    }

    /// Time since `node` was last heard from. A node never heard from (since this master
    /// leads) counts from the moment this master first judged it, less the failover grace: a
    /// worker that has just joined is recorded before its first heartbeat, and counting from
    /// the leader's start judged it down at once.
    fn silence(&self, node: &str) -> Duration {
        if let Some(t) = self.seen.lock().ok().and_then(|s| s.get(node).copied()) {
            return t.elapsed();
        }
        let Ok(mut first) = self.first_sight.lock() else {
            return Duration::ZERO;
        };
        first
            .entry(node.to_string())
            .or_insert_with(Instant::now)
            .elapsed()
            .saturating_sub(self.failover_grace())
    }

    /// Judges every joined node every 100 ms until `shutdown`; `local` (the master's own node)
    /// is never judged.
    pub async fn run(
        self: Arc<Self>,
        log: StateLog,
        wake: Arc<Notify>,
        local: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let store = log.store().clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.changed() => return,
            }
            let Ok(nodes) = store.node_states().await else {
                continue;
            };
            self.forget_gone(&nodes);
            // Every judgment of this round proposed at once: the log takes them in one go
            // (a thousand nodes going silent together are judged in one round, not one by one).
            let mut judgments = Vec::new();
            let judged_set = &self.judged;
            for (id, state) in nodes.iter().filter(|(id, _)| *id != local) {
                let silence = self.silence(id);
                let judged = if silence >= self.cfg.down_after {
                    NodeState::Down
                } else if silence >= self.cfg.unreachable_after {
                    NodeState::Unreachable
                } else {
                    continue;
                };
                // Silence only makes things worse: a down node is not "unreachable" again,
                // and a drained node keeps its state (its replicas are gone already).
                let worse = matches!(
                    (*state, judged),
                    (NodeState::Ready, _) | (NodeState::Unreachable, NodeState::Down)
                );
                // A heartbeat may have come while the store was read.
                if !worse || self.silence(id) < self.cfg.unreachable_after {
                    continue;
                }
                let cmd = Command::SetNodeState {
                    id: id.clone(),
                    state: judged,
                    at_ms: now_ms(),
                    // ...or while this was decided: then the heartbeat's Ready stands.
                    from: Some(*state),
                };
                let kind = if judged == NodeState::Down {
                    EventKind::NodeDown
                } else {
                    EventKind::NodeUnreachable
                };
                let event = EventDraft::node(
                    kind,
                    id,
                    format!("no heartbeat for {} ms", silence.as_millis()),
                );
                let log = &log;
                judgments.push(async move {
                    let changed = log
                        .propose_with(cmd, vec![event])
                        .await
                        .is_ok_and(|a| a.changed);
                    if changed {
                        if let Ok(mut j) = judged_set.lock() {
                            j.insert(id.clone());
                        }
                        tracing::warn!(node = %id, state = judged.as_str(), silence_ms = silence.as_millis() as u64, "node judged");
                    }
                    changed
                });
            }
            if futures::future::join_all(judgments)
                .await
                .into_iter()
                .any(|changed| changed)
            {
                wake.notify_one();
            }
        }
    }
}

/// The version of an assignment list: the first 8 bytes of the SHA-256 of its JSON. A worker
/// resumes its watch with the version it holds; nothing is sent until the list differs.
pub fn assignments_version(json: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(json.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

pub use dash_core::subnet::SubnetPool;

#[derive(Clone)]
pub struct MasterApiService {
    pub log: StateLog,
    pub store: MasterStore,
    pub bouncer: NodeBouncer,
    pub state: ServiceState,
    pub mq: Arc<MessageQueue>,
    pub wake: Arc<Notify>,
    pub liveness: Arc<Liveness>,
    /// Every node's assignment list, computed once per change for all the watches.
    pub assignments: crate::assignment_feed::Feed,
    pub images: Arc<ImageStore>,
    pub subnets: SubnetPool,
    /// Where nodes' measurements go (`dash stats`, the service_scaler).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This master's master_api address (host:port).
    pub addr: String,
    /// The routes and endpoints feeds of this master (rebuilt after every event), which the
    /// Routes long poll waits on.
    pub feeds: RouteFeeds,
    /// Secrets and configs, opened for the node that runs a replica listing them.
    pub secrets: crate::secrets::Secrets,
}

/// Receivers of the master's routes and endpoints feeds (see `master::routes::feed`).
#[derive(Clone)]
pub struct RouteFeeds {
    pub routes: watch::Receiver<Vec<dash_core::api::RouteEntry>>,
    pub endpoints: watch::Receiver<Vec<dash_core::api::ServiceEndpoints>>,
}

/// The longest a Routes call waits for a change before it answers with what the store holds.
const ROUTES_WAIT: Duration = Duration::from_secs(5);

/// A fingerprint of a Routes answer (SipHash of both documents, in hex).
fn routes_version(entries_json: &str, endpoints_json: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries_json.hash(&mut h);
    endpoints_json.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn routes_response(entries_json: String, endpoints_json: String) -> RoutesResponse {
    RoutesResponse {
        version: routes_version(&entries_json, &endpoints_json),
        entries_json,
        endpoints_json,
    }
}

fn status_of(e: BouncerError) -> Status {
    match e {
        BouncerError::Refused(m) => Status::unauthenticated(m),
        BouncerError::Invalid { field, message } => {
            Status::invalid_argument(format!("{field}: {message}"))
        }
        BouncerError::NotFound(m) => Status::not_found(m),
        BouncerError::Pki(e @ dash_rpc::pki::PkiError::Invalid { .. }) => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn valid_node_name(name: &str) -> bool {
    dash_core::NodeId::new(name).is_ok()
}

impl MasterApiService {
    /// Every master's master_api address (this one's alone without HA).
    fn masters(&self) -> Vec<String> {
        match self.log.raft() {
            Some(r) => r.masters().into_iter().map(|(_, a)| a).collect(),
            None => vec![self.addr.clone()],
        }
    }

    /// The leader's master_api address ("" while none is known).
    fn leader(&self) -> String {
        match self.log.raft() {
            Some(r) => r.leader().map(|(_, a)| a).unwrap_or_default(),
            None => self.addr.clone(),
        }
    }

    /// With masters replicated, certificates are signed at the leader only: its master_api
    /// address when this master is not it (None: sign here). No leader known: `unavailable`.
    fn signing_leader(&self) -> Result<Option<String>, Status> {
        let Some(raft) = self.log.raft() else {
            return Ok(None);
        };
        if raft.is_leader() {
            return Ok(None);
        }
        match raft.leader() {
            Some((_, addr)) => Ok(Some(addr)),
            None => Err(Status::unavailable(
                "no leader among the masters now (an election is running); try again in a moment",
            )),
        }
    }

    async fn peer<T>(&self, req: &Request<T>) -> Result<PeerIdentity, Status> {
        let certs = req.peer_certs();
        let der = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        self.bouncer.authorize(der).await.map_err(status_of)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl MasterApi for MasterApiService {
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let r = req.into_inner();
        if let Some(leader) = self.signing_leader()? {
            // The leader checks the token, signs and records the node; the joining node
            // does not notice (it may only know this master).
            let raft = self.log.raft().ok_or_else(|| Status::internal("no raft"))?;
            let channel = raft.peers.channel(&leader).map_err(Status::unavailable)?;
            tracing::info!(node = %r.node, %leader, "join forwarded to the leader");
            return dash_rpc::proto::master_api_client::MasterApiClient::new(channel)
                .join(Request::new(r))
                .await;
        }
        let role = self.bouncer.check_token(&r.token).await.map_err(|e| {
            tracing::warn!(node = %r.node, error = %e, "join refused");
            status_of(e)
        })?;
        let wanted = if r.master {
            dash_rpc::pki::Role::Master
        } else {
            dash_rpc::pki::Role::Worker
        };
        if role != wanted {
            tracing::warn!(node = %r.node, token = role.as_str(), "join refused: wrong role");
            return Err(Status::permission_denied(match wanted {
                dash_rpc::pki::Role::Master => "join refused: the token is of role worker and cannot make a master; create one with `dash token create --role master`".to_string(),
                dash_rpc::pki::Role::Worker => "join refused: the token is of role master; a worker joins with a token of `dash token create --role worker`".to_string(),
            }));
        }
        if !valid_node_name(&r.node) {
            return Err(Status::invalid_argument(format!(
                "node name {:?}: use 1 to 63 letters, digits and '-' (--node-name)",
                r.node
            )));
        }
        let addr: std::net::SocketAddr = r.advertise_addr.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "advertise address {:?}: not an IP:port (--advertise-addr)",
                r.advertise_addr
            ))
        })?;
        let capacity: Resources = serde_json::from_str(&r.capacity_json)
            .map_err(|e| Status::invalid_argument(format!("capacity: {e}")))?;
        let labels: std::collections::BTreeMap<String, String> = if r.labels_json.is_empty() {
            Default::default()
        } else {
            serde_json::from_str(&r.labels_json)
                .map_err(|e| Status::invalid_argument(format!("labels: {e}")))?
        };
        // A friendlier refusal than the state's for the name of a master; the state machine
        // checks it again (and picks the subnet) when it applies the join.
        if let Some(role) = self.store.node_role(&r.node).await.map_err(internal)?
            && role.is_master()
        {
            return Err(Status::already_exists(format!(
                "node name {:?} is the master's; give this node another --node-name",
                r.node
            )));
        }
        // Signed before anything is recorded: a bad CSR leaves no half-joined node behind.
        let issued = self
            .bouncer
            .sign(&r.node, role, &r.csr_pem)
            .map_err(status_of)?;
        let record = NodeRecord {
            id: r.node.clone(),
            address: addr.to_string(),
            role: match role {
                dash_rpc::pki::Role::Worker => dash_core::api::NodeRole::Worker,
                dash_rpc::pki::Role::Master if r.no_worker => dash_core::api::NodeRole::Master,
                dash_rpc::pki::Role::Master => dash_core::api::NodeRole::Server,
            },
            state: NodeState::Ready,
            labels,
            capacity,
            subnet: String::new(),
            runtime: r.runtime.clone(),
        };
        let joined = EventDraft::node(
            EventKind::NodeJoined,
            &r.node,
            // `{subnet}`: the one the state machine picks (see state_log::announce).
            format!("{} at {addr}, subnet {{subnet}}", role.as_str()),
        );
        let applied = self
            .log
            .propose_with(
                Command::JoinNode {
                    node: Box::new(record),
                    pool: self.subnets,
                    serial: issued.serial.clone(),
                    at_ms: now_ms(),
                },
                vec![joined],
            )
            .await
            .map_err(internal)?;
        let subnet = match applied.rejected {
            Some(r @ Rejection::Exhausted(_)) => {
                return Err(Status::resource_exhausted(r.to_string()));
            }
            Some(r @ Rejection::Conflict(_)) => return Err(Status::already_exists(r.to_string())),
            Some(r) => return Err(Status::failed_precondition(r.to_string())),
            None => applied.subnet.unwrap_or_default(),
        };
        self.liveness.beat(&r.node);
        self.wake.notify_one();
        tracing::info!(node = %r.node, %addr, %subnet, "node joined");
        Ok(Response::new(JoinResponse {
            cert_pem: issued.pem,
            ca_pem: self.bouncer.ca_pem().to_string(),
            subnet,
            masters: self.masters(),
        }))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let peer = self.peer(&req).await?;
        if let Some(leader) = self.signing_leader()? {
            // Not forwarded: the leader must see the node's own certificate. The node moves
            // to the leader with its next heartbeat and tries again.
            return Err(Status::unavailable(format!(
                "this master is not the leader: certificates are renewed at the leader ({leader})"
            )));
        }
        let issued = self
            .bouncer
            .issue(&peer.node, peer.role, &req.get_ref().csr_pem)
            .await
            .map_err(status_of)?;
        tracing::info!(node = %peer.node, serial = %issued.serial, "certificate renewed");
        Ok(Response::new(RenewResponse {
            cert_pem: issued.pem,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let peer = self.peer(&req).await?;
        // The state as the assignment feed last read it (at most a moment old) when it says
        // ready; read afresh otherwise (a node it does not know yet, or one judged).
        let known = self
            .assignments
            .latest()
            .node_state(&peer.node)
            .filter(|s| *s == NodeState::Ready);
        let state = self
            .liveness
            .heard(&peer.node, known, &self.log, &self.wake)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found("node removed"))?;
        Ok(Response::new(HeartbeatResponse {
            state: state.as_str().to_string(),
            interval_ms: self.liveness.cfg.heartbeat.as_millis() as u64,
            masters: self.masters(),
            leader: self.leader(),
        }))
    }

    async fn report_metrics(&self, req: Request<MetricsRequest>) -> Result<Response<Ack>, Status> {
        let peer = self.peer(&req).await?;
        let metrics: dash_core::api::NodeMetrics =
            serde_json::from_str(&req.get_ref().metrics_json)
                .map_err(|e| Status::invalid_argument(format!("metrics_json: {e}")))?;
        self.metrics.record(&peer.node, metrics, now_ms());
        Ok(Response::new(Ack {}))
    }

    async fn report(&self, req: Request<ReportRequest>) -> Result<Response<Ack>, Status> {
        let peer = self.peer(&req).await?;
        let status: ReplicaStatus = serde_json::from_str(&req.get_ref().status_json)
            .map_err(|e| Status::invalid_argument(format!("status_json: {e}")))?;
        // Dropped there if the replica is not the node's (removed meanwhile, moved elsewhere).
        self.state
            .report(&peer.node, status)
            .await
            .map_err(internal)?;
        Ok(Response::new(Ack {}))
    }

    async fn replica_files(
        &self,
        req: Request<ReplicaFilesRequest>,
    ) -> Result<Response<ReplicaFilesResponse>, Status> {
        let peer = self.peer(&req).await?;
        let replica = &req.get_ref().replica;
        let files =
            crate::local_link::replica_files_of(&self.store, &self.secrets, &peer.node, replica)
                .await
                .map_err(|e| {
                    tracing::warn!(node = %peer.node, replica, error = %e, "replica files refused");
                    Status::permission_denied(e)
                })?;
        Ok(Response::new(ReplicaFilesResponse {
            files: files
                .into_iter()
                .map(|f| dash_rpc::proto::ReplicaFile {
                    kind: f.kind.as_str().to_string(),
                    name: f.name,
                    version: f.version,
                    data: f.data,
                })
                .collect(),
        }))
    }

    async fn removed(&self, req: Request<RemovedRequest>) -> Result<Response<Ack>, Status> {
        let peer = self.peer(&req).await?;
        let id = &req.get_ref().replica;
        self.state.removed(&peer.node, id).await.map_err(internal)?;
        Ok(Response::new(Ack {}))
    }

    type WatchStream = BoxStream<Assignments>;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let peer = self.peer(&req).await?;
        let after = req.get_ref().after_version;
        let (tx, rx) = mpsc::channel(4);
        let mut feed = self.assignments.attach();
        tokio::spawn(async move {
            let mut held = after;
            loop {
                let list = feed.rx.borrow_and_update().of(&peer.node);
                if let Some(list) = list
                    && list.version != held
                {
                    crate::telemetry::instruments().watch_sent(list.json.len());
                    let msg = Assignments {
                        version: list.version,
                        assignments_json: list.json.clone(),
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    held = list.version;
                }
                tokio::select! {
                    r = feed.rx.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn peers(&self, req: Request<PeersRequest>) -> Result<Response<PeersResponse>, Status> {
        self.peer(&req).await?;
        let peers = self
            .store
            .nodes()
            .await
            .map_err(internal)?
            .into_iter()
            // A simulated node (`dash sim`) has no data path: no route goes to it.
            .filter(|n| n.runtime != dash_core::sim::SIMULATED_RUNTIME)
            .map(|n| Peer {
                address: node_ip(&n.address)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                node: n.id,
                subnet: n.subnet,
            })
            .collect();
        Ok(Response::new(PeersResponse { peers }))
    }

    async fn routes(
        &self,
        req: Request<RoutesRequest>,
    ) -> Result<Response<RoutesResponse>, Status> {
        self.peer(&req).await?;
        let known = req.into_inner().known;
        if !known.is_empty() {
            // Wait on the feeds (rebuilt after every event) until they differ from what the
            // node holds: a change reaches every node within milliseconds, not a poll period.
            let (mut routes, mut endpoints) =
                (self.feeds.routes.clone(), self.feeds.endpoints.clone());
            let deadline = tokio::time::Instant::now() + ROUTES_WAIT;
            loop {
                let answer = routes_response(
                    serde_json::to_string(&*routes.borrow_and_update()).map_err(internal)?,
                    serde_json::to_string(&*endpoints.borrow_and_update()).map_err(internal)?,
                );
                if answer.version != known {
                    return Ok(Response::new(answer));
                }
                tokio::select! {
                    r = routes.changed() => if r.is_err() { break },
                    r = endpoints.changed() => if r.is_err() { break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        // At once, or after the wait: what the store holds now.
        let entries = crate::route_table::build(&self.store)
            .await
            .map_err(internal)?;
        let endpoints = crate::route_table::endpoints(&self.store)
            .await
            .map_err(internal)?;
        Ok(Response::new(routes_response(
            serde_json::to_string(&entries).map_err(internal)?,
            serde_json::to_string(&endpoints).map_err(internal)?,
        )))
    }

    async fn image_manifest(
        &self,
        req: Request<ImageRequest>,
    ) -> Result<Response<ImageManifestResponse>, Status> {
        self.peer(&req).await?;
        let images = self.images.clone();
        let reference = req.get_ref().reference.clone();
        let export = tokio::task::spawn_blocking(move || images.export(&reference))
            .await
            .map_err(internal)?
            .map_err(|e| match e {
                dash_image::ImageError::NotFound { .. } => Status::not_found(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        Ok(Response::new(ImageManifestResponse {
            manifest_json: String::from_utf8_lossy(&export.manifest).into_owned(),
            config_json: String::from_utf8_lossy(&export.config).into_owned(),
            digest: export.manifest_digest,
        }))
    }

    type FetchBlobStream = BoxStream<BlobChunk>;

    async fn fetch_blob(
        &self,
        req: Request<BlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        self.peer(&req).await?;
        let BlobRequest { digest, offset } = req.into_inner();
        let path = self
            .images
            .blob_file(&digest)
            .map_err(|e| Status::not_found(e.to_string()))?;
        let mut file = tokio::fs::File::open(&path).await.map_err(internal)?;
        let size = file.metadata().await.map_err(internal)?.len();
        if offset > size {
            return Err(Status::out_of_range(format!(
                "offset {offset} is past the end of {digest} ({size} bytes)"
            )));
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(internal)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = BlobChunk {
                            data: buf[..n].to_vec(),
                            size,
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(internal(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The IP of a node's address (`10.0.0.2:7072` or `10.0.0.2`).
pub fn node_ip(address: &str) -> Option<IpAddr> {
    address
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| address.parse::<IpAddr>())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_not_heard_since_the_lead_began_gets_the_failover_grace_and_one_heard_does_not() {
        let liveness = Liveness::new(LivenessConfig {
            heartbeat: Duration::from_millis(10),
            unreachable_after: Duration::from_millis(20),
            down_after: Duration::from_millis(40),
        });
        assert_eq!(liveness.failover_grace(), Duration::from_secs(10));
        liveness.beat("heard");
        liveness.reset();
        liveness.beat("heard-again");
        assert_eq!(liveness.silence("not-yet"), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(60));
        // Past down_after for the node heard since the reset; within the grace for the others
        // (the one heard before the reset included: its beat was forgotten).
        assert!(liveness.silence("heard-again") >= Duration::from_millis(40));
        assert_eq!(liveness.silence("not-yet"), Duration::ZERO);
        assert_eq!(liveness.silence("heard"), Duration::ZERO);
        // A longer down_after is its own grace.
        let slow = Liveness::new(LivenessConfig {
            down_after: Duration::from_secs(30),
            ..LivenessConfig::default()
        });
        assert_eq!(slow.failover_grace(), Duration::from_secs(30));
    }

    #[test]
    fn versions_follow_content() {
        assert_eq!(assignments_version("[]"), assignments_version("[]"));
        assert_ne!(assignments_version("[]"), assignments_version("[1]"));
    }

    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn a_bad_csr_leaves_no_half_joined_node_and_a_good_one_joins() {
        let dir = tempfile::tempdir().unwrap();
        let mq = Arc::new(MessageQueue::new());
        let log = StateLog::new(
            dash_store::open(&dir.path().join("dash.db")).await.unwrap(),
            mq.clone(),
        );
        let store = log.store().clone();
        let ca = crate::node_bouncer::load_or_create_ca(&dir.path().join("pki"), "t").unwrap();
        let bouncer = NodeBouncer::new(log.clone(), ca, Duration::from_secs(3600)).unwrap();
        let (token, _) = bouncer
            .tokens()
            .create(&dash_core::api::TokenRequest {
                role: "worker".into(),
                ttl_s: None,
            })
            .await
            .unwrap();
        let wake = Arc::new(Notify::new());
        let svc = MasterApiService {
            log: log.clone(),
            store: store.clone(),
            bouncer,
            state: ServiceState::new(log.clone(), wake.clone()),
            mq,
            wake,
            liveness: Arc::new(Liveness::new(LivenessConfig::default())),
            assignments: crate::assignment_feed::Feed::fixed(Default::default()),
            images: Arc::new(ImageStore::open(&dir.path().join("images")).unwrap()),
            subnets: SubnetPool {
                base: std::net::Ipv4Addr::new(10, 89, 0, 0),
                prefix: 16,
            },
            metrics: Arc::default(),
            addr: "127.0.0.1:7071".into(),
            feeds: RouteFeeds {
                routes: watch::channel(Vec::new()).1,
                endpoints: watch::channel(Vec::new()).1,
            },
            secrets: crate::secrets::Secrets::new(
                log.clone(),
                Arc::new(crate::sealing::DataKey::from_ca_key("test").unwrap()),
            ),
        };
        let req = |csr: &str| {
            Request::new(JoinRequest {
                token: token.to_string(),
                node: "w1".into(),
                advertise_addr: "10.0.0.2:7072".into(),
                csr_pem: csr.into(),
                capacity_json: "{}".into(),
                labels_json: String::new(),
                runtime: "crun".into(),
                no_worker: false,
                master: false,
            })
        };
        let err = svc.join(req("not a CSR")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.message().contains("csr_pem"), "{err}");
        assert!(store.nodes().await.unwrap().is_empty(), "nothing recorded");

        let (_key, csr) = dash_rpc::pki::new_csr("w1").unwrap();
        let ok = svc.join(req(&csr)).await.unwrap().into_inner();
        assert_eq!(ok.subnet, "10.89.0.0/24");
        let nodes = store.nodes().await.unwrap();
        assert_eq!((nodes.len(), nodes[0].id.as_str()), (1, "w1"));
        let (serial, _) = store.node_cert_serials("w1").await.unwrap().unwrap();
        assert!(!serial.is_empty());
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("w-1"));
        for bad in ["", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }
}
