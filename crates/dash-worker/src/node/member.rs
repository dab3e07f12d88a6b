//! member: a node that has joined a cluster (`dash worker`): its link to the masters and the
//! tasks that follow them. The join itself is the caller's (`master_link::join`).
//!
//! ```text
//!  Member::connect(&Node)   GrpcLink: heartbeats and the assignments watch start at once
//!     │                     (the masters count silence from the join on)
//!     │ .subnet() ─► Node::with_network ─► ReadyNode
//!     ▼
//!  Member::start(ReadyNode, store)
//!     Routes every 1 s (when changed) ─► the node's routes feed ─► proxy table
//!     Peers every 2 s ─────────────────► the node's peers feed  ─► routes to peer subnets
//!     measure every 2 s ───────────────► ReportMetrics
//!     worker_api (mutual TLS) on api_addr; at 2/3 of the certificate's life: renew, then a
//!       new worker_api generation on the same socket and the new identity on the link
//!     agent ◄─► GrpcLink
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{RouteEntry, ServiceEndpoints};
use dash_core::link::with_causes;
use dash_net::Ipv4Net;
use dash_runtime::container::ContainerRuntime;
use dash_store::WorkerStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AgentParts, Node, NodeError, NodeParts, NodeTasks, ReadyNode};
use crate::master_link::{self, GrpcLink, Identity, Membership};

/// What a joined node knows: its membership and TLS identity (kept in the data dir), and
/// where it serves worker_api.
pub struct MemberConfig {
    pub membership: Membership,
    pub identity: Identity,
    /// worker_api's address: the node's advertised IP and `--worker-port`.
    pub api_addr: SocketAddr,
}

/// A joined node, connected to its masters.
pub struct Member {
    cfg: MemberConfig,
    data_dir: PathBuf,
    link: Arc<GrpcLink>,
}

impl Member {
    /// Starts the link to the masters (heartbeats first: the masters count silence from the
    /// join on, and setting up the network can take a while). Its loops end with `shutdown`.
    pub fn connect(
        node: &Node,
        cfg: MemberConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Member, NodeError> {
        let link = GrpcLink::start(
            (Some(node.data_dir().join("cluster.json")), &cfg.membership),
            cfg.identity.clone(),
            cfg.membership.node.clone(),
            node.capacity(),
            node.images().clone(),
            shutdown,
        )
        .map_err(NodeError::MasterLink)?;
        Ok(Member {
            cfg,
            data_dir: node.data_dir().to_path_buf(),
            link,
        })
    }

    /// This node's name, as the masters know it.
    pub fn node_name(&self) -> String {
        self.cfg.membership.node.clone()
    }

    /// The container subnet the masters gave this node.
    pub fn subnet(&self) -> Result<Ipv4Net, NodeError> {
        let subnet = &self.cfg.membership.subnet;
        subnet.parse().map_err(|source| NodeError::Subnet {
            subnet: subnet.clone(),
            source,
        })
    }

    /// Runs the node on the masters: their routes and peers feed it, it reports its
    /// measurements, serves worker_api (renewing its certificate), and its agent follows
    /// the assignments.
    pub fn start(
        self,
        node: ReadyNode,
        store: WorkerStore,
        shutdown: watch::Receiver<bool>,
    ) -> NodeTasks {
        let Member {
            cfg,
            data_dir,
            link,
        } = self;
        let runtime = node.node().runtime().clone();
        // What the start created (its store, its identity) is private too.
        if let Err(e) = dash_store::data_dir::ensure_private(&data_dir) {
            tracing::warn!(error = %e, "making the data dir private");
        }
        let own: Vec<JoinHandle<()>> = vec![
            tokio::spawn(routes_from_masters(
                link.clone(),
                node.routes(),
                node.endpoints(),
                shutdown.clone(),
            )),
            tokio::spawn(peers_from_masters(
                link.clone(),
                node.peers(),
                shutdown.clone(),
            )),
            tokio::spawn(serve_and_rotate(
                Rotation {
                    link: link.clone(),
                    data: data_dir,
                    node: cfg.membership.node.clone(),
                    runtime: runtime.clone(),
                    api_addr: cfg.api_addr,
                },
                cfg.identity,
                shutdown.clone(),
            )),
        ];
        tracing::info!(node = %cfg.membership.node, master = %cfg.membership.master, runtime = %runtime.kind(), "dash worker ready");
        let report = link.clone();
        let mut tasks = node.start(
            NodeParts {
                name: cfg.membership.node,
                agent: Some(AgentParts { link, store }),
            },
            move |m| {
                let link = report.clone();
                async move { link.report_metrics(&m).await }
            },
            shutdown,
        );
        tasks.extend(NodeTasks(own));
        tasks
    }
}

/// Keeps this node's proxy, DNS and virtual IPs on the masters' routing table and endpoints:
/// a long poll (the master answers as soon as they differ from `version`, or after 5 s), so
/// a change reaches the node within milliseconds; tables are only rebuilt when they changed.
async fn routes_from_masters(
    link: Arc<GrpcLink>,
    routes: watch::Sender<Vec<RouteEntry>>,
    endpoints: watch::Sender<Vec<ServiceEndpoints>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut last, mut last_endpoints) = (String::new(), String::new());
    let mut version = String::new();
    loop {
        let mut client = link.client();
        let asked = tokio::time::Instant::now();
        let mut waited = false;
        match client
            .routes(dash_rpc::proto::RoutesRequest {
                known: version.clone(),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                // A master that waits for changes answers with a version; ask again at
                // once. An older one answers at once: ask again in a second.
                waited = !r.version.is_empty();
                version = r.version;
                if r.endpoints_json != last_endpoints {
                    match serde_json::from_str::<Vec<ServiceEndpoints>>(&r.endpoints_json) {
                        Ok(list) => {
                            endpoints.send_replace(list);
                            last_endpoints = r.endpoints_json;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "service endpoints from the masters unreadable")
                        }
                    }
                }
                let json = r.entries_json;
                if json != last {
                    match serde_json::from_str::<Vec<RouteEntry>>(&json) {
                        Ok(entries) => {
                            routes.send_replace(entries);
                            last = json;
                        }
                        Err(e) => tracing::warn!(error = %e, "routes from the masters unreadable"),
                    }
                }
            }
            Err(s) => {
                version.clear();
                tracing::debug!(error = %s.message(), "fetching routes");
            }
        }
        // At most one call a second when the master did not wait (an error, an older master).
        let next = if waited {
            asked + Duration::from_millis(20)
        } else {
            asked + Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Hands the other nodes' subnets and addresses to the node every 2 s.
async fn peers_from_masters(
    link: Arc<GrpcLink>,
    peers: watch::Sender<Vec<(String, String)>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut client = link.client();
        match client.peers(dash_rpc::proto::PeersRequest {}).await {
            Ok(r) => {
                let list: Vec<(String, String)> = r
                    .into_inner()
                    .peers
                    .into_iter()
                    .map(|p| (p.subnet, p.address))
                    .collect();
                peers.send_replace(list);
            }
            Err(s) => tracing::debug!(error = %s.message(), "listing peers"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

struct Rotation {
    link: Arc<GrpcLink>,
    data: PathBuf,
    node: String,
    runtime: Arc<ContainerRuntime>,
    api_addr: SocketAddr,
}

/// Serves worker_api with the node's certificate and renews the certificate at two thirds of
/// its lifetime: the new identity goes to the master channel and to a new worker_api server
/// (the old one stops once the new one listens), without restarting the daemon.
async fn serve_and_rotate(
    r: Rotation,
    mut identity: Identity,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::bind(r.api_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, addr = %r.api_addr, "binding worker_api");
            return;
        }
    };
    let (acceptor, mut incoming) = dash_rpc::acceptor::Acceptor::start(listener);
    loop {
        let server = match start_worker_api(&r, &identity, incoming, shutdown.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "worker_api");
                return;
            }
        };
        let now = (dash_core::clock::now_ms() / 1000) as i64;
        let wait = (master_link::renew_at(&identity.cert_pem) - now).max(1) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = shutdown.changed() => {
                let _ = server.await;
                return;
            }
        }
        // Retried every second: the certificate may have little time left (a renewal can
        // fail when the master switches its own certificate at the same moment).
        loop {
            match master_link::renew(&r.link, &r.data, &r.node, &identity).await {
                Ok(new) => {
                    if let Err(e) = r.link.set_identity(new.clone()) {
                        tracing::error!(error = %with_causes(&e), "channel with the renewed certificate");
                    }
                    identity = new;
                    tracing::info!(node = %r.node, "certificate renewed");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %with_causes(&e), "certificate renewal failed; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {
                            let _ = server.await;
                            return;
                        }
                    }
                }
            }
        }
        // New connections go to the next generation; the old one ends with its streams.
        incoming = acceptor.next_generation();
        drop(server);
    }
}

fn start_worker_api(
    r: &Rotation,
    id: &Identity,
    incoming: dash_rpc::acceptor::Incoming,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, NodeError> {
    let chain = format!("{}{}", id.cert_pem, id.ca_pem);
    let server = tonic::transport::Server::builder()
        .tls_config(dash_rpc::tls::server_tls(
            &chain,
            &id.key_pem,
            &id.ca_pem,
            true,
        ))
        .map_err(NodeError::WorkerApiTls)?
        .add_service(dash_rpc::proto::worker_api_server::WorkerApiServer::new(
            crate::worker_api::WorkerApiService {
                runtime: r.runtime.clone(),
            },
        ))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.changed().await;
        });
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "worker_api stopped");
        }
    }))
}
