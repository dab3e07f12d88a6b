//! node: the node side of a daemon, composed. `dash server` runs one beside its master,
//! `dash worker` one that has joined a cluster ([`member`]). Built in stages, because a worker
//! needs its runtime before it joins (the join reports the runtime's kind) and gets its subnet,
//! hence its network, only from the join:
//!
//! ```text
//!  NodeConfig (the daemon's flags, checked before anything is touched)
//!     │ Node::open         data dir, <data>/images + registry puller, container runtime
//!     ▼
//!  Node ── runtime kind, capacity ──► the join (worker) / this node's record (server)
//!     │ .with_network(subnet)   bridge, nft table, netns dir; the proxy bound on its address
//!     ▼
//!  ReadyNode ◄── routes: watch<Vec<RouteEntry>> ── the master's feeder / Routes from the masters
//!     │      ◄── peers:  watch<Vec<(subnet, addr)>> ── the master's store / Peers from the masters
//!     │      ──► route_stats(): the proxy's counters per route (admin API, on a master)
//!     │ .start(NodeParts { name, agent }, metrics sink, shutdown)
//!     ▼
//!  NodeTasks: proxy ◄─ table(routes) │ peer routes │ measure every 2 s ─► sink
//!             agent ◄─► MasterLink (LocalLink in process, GrpcLink over master_api)
//! ```
//!
//! Every task ends when `shutdown` changes; [`NodeTasks::join`] waits for them. Containers
//! keep running: they outlive the daemon.

mod measure;
pub mod member;
mod peers;
mod routes;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dash_core::api::{NodeMetrics, RouteEntry, RouteInfo, ServiceEndpoints};
use dash_core::link::MasterLink;
use dash_core::spec::Resources;
use dash_dns::server::Dns;
use dash_image::registry::{PullError, Puller, RegistryConfig};
use dash_image::{ImageError, ImageStore};
use dash_net::{Ipv4Net, NetConfig, NetError, Network};
use dash_proxy::{Proxy, ProxyConfig};
use dash_runtime::RuntimeError;
use dash_runtime::container::{ContainerRuntime, RuntimeConfig, RuntimeKind};
use dash_store::{StoreError, WorkerStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::master_link::MasterLinkError;
use crate::{Agent, AgentConfig};

pub use measure::{host_capacity, measure_node};
pub use member::{Member, MemberConfig};
pub use peers::set_peer_routes;
pub use routes::{route_infos, table};

/// A node daemon's settings, from its flags (the binary checks them, and that the monitor
/// binary exists, before anything is opened or created).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// State, images, containers' bundles and logs.
    pub data_dir: PathBuf,
    /// The OCI runtime's state (`<run>/runtime`) and pinned network namespaces (`<run>/netns`).
    pub run_dir: PathBuf,
    pub bridge: String,
    pub nft_table: String,
    /// Containers' cgroups go under `<daemon's cgroup>/<cgroup_parent>/<replica>`.
    pub cgroup_parent: String,
    /// crun or runc; None: crun if it works here, else runc.
    pub runtime: Option<RuntimeKind>,
    /// The `dash-monitor` binary started for each container.
    pub monitor_bin: PathBuf,
    /// Registries (`host:port`) that may be reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Where the built-in proxy listens.
    pub proxy_listen: SocketAddr,
    /// Where the cluster's DNS sends names outside the cluster (`--dns-upstream`; by default
    /// the name servers of the host's /etc/resolv.conf).
    pub dns_upstreams: Vec<SocketAddr>,
    /// Replicas get a user namespace unless their service says otherwise (`--default-userns`).
    pub default_userns: bool,
}

impl NodeConfig {
    /// This node's network with `subnet`: what [`Node::with_network`] sets up, and what the
    /// binary validates (`NetConfig::validate`) before anything is created.
    pub fn net_config(&self, subnet: Ipv4Net) -> NetConfig {
        NetConfig {
            bridge: self.bridge.clone(),
            subnet,
            nft_table: self.nft_table.clone(),
            netns_dir: self.run_dir.join("netns"),
        }
    }
}

/// Why a node could not be set up. The messages are what the daemon prints (with the causes).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("creating {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the image store")]
    Images(#[source] ImageError),
    #[error("setting up registry pulls")]
    Puller(#[source] PullError),
    #[error("setting up the container runtime")]
    Runtime(#[source] RuntimeError),
    #[error("setting up the node network")]
    Network(#[source] NetError),
    #[error("binding the proxy on {addr}")]
    BindProxy {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the store")]
    Store(#[source] StoreError),
    /// The channel to the masters could not be set up.
    #[error("connecting to the masters")]
    MasterLink(#[source] MasterLinkError),
    #[error("subnet {subnet:?} from the masters")]
    Subnet {
        subnet: String,
        #[source]
        source: NetError,
    },
    #[error("worker_api TLS")]
    WorkerApiTls(#[source] tonic::transport::Error),
}

/// Stage 1: the image store, the registry puller and the container runtime. Enough for a
/// worker to join (the masters record the runtime's kind).
pub struct Node {
    cfg: NodeConfig,
    images: Arc<ImageStore>,
    puller: Arc<Puller>,
    runtime: Arc<ContainerRuntime>,
    capacity: Resources,
}

impl Node {
    /// Creates the data dir (0700: see `dash_store::data_dir`), opens `<data>/images` and the puller (credentials in
    /// `<data>/registries.json`), and the container runtime (bundles in `<data>/containers`,
    /// the OCI runtime's root in `<run>/runtime`). Measures the host's capacity.
    pub fn open(cfg: NodeConfig) -> Result<Node, NodeError> {
        let data = &cfg.data_dir;
        dash_store::data_dir::ensure_private(data).map_err(|source| NodeError::CreateDir {
            path: data.clone(),
            source,
        })?;
        let images = Arc::new(ImageStore::open(&data.join("images")).map_err(NodeError::Images)?);
        let mut registry = RegistryConfig::new(data.join("registries.json"));
        registry.insecure = cfg.insecure_registries.clone();
        let puller = Arc::new(Puller::new(images.clone(), registry).map_err(NodeError::Puller)?);
        let runtime = Arc::new(
            ContainerRuntime::new(RuntimeConfig {
                state_dir: data.join("containers"),
                runtime_root: cfg.run_dir.join("runtime"),
                monitor_bin: cfg.monitor_bin.clone(),
                prefer: cfg.runtime,
                cgroup_parent: cfg.cgroup_parent.clone(),
            })
            .map_err(NodeError::Runtime)?,
        );
        Ok(Node {
            cfg,
            images,
            puller,
            runtime,
            capacity: host_capacity(),
        })
    }

    pub fn runtime(&self) -> &Arc<ContainerRuntime> {
        &self.runtime
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    pub fn puller(&self) -> &Arc<Puller> {
        &self.puller
    }

    /// The host's CPUs and memory, as the scheduler counts them.
    pub fn capacity(&self) -> Resources {
        self.capacity
    }

    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// The node's own records (`<data>/node.db`: its containers and addresses), on workers and
    /// servers alike; copied once from `<data>/dash.db` on a data dir of a version before it.
    pub async fn open_store(&self) -> Result<WorkerStore, NodeError> {
        let data = &self.cfg.data_dir;
        let pool = dash_store::open_node(&data.join("node.db"), &data.join("dash.db"))
            .await
            .map_err(NodeError::Store)?;
        Ok(WorkerStore::new(pool))
    }

    /// Stage 2: the node's network on `subnet` (bridge, nftables table, netns dir) and the
    /// proxy bound on its address (a taken port fails the start here, before any task runs).
    pub async fn with_network(self, subnet: Ipv4Net) -> Result<ReadyNode, NodeError> {
        let net = Arc::new(
            Network::init(self.cfg.net_config(subnet))
                .await
                .map_err(NodeError::Network)?,
        );
        let listen = self.cfg.proxy_listen;
        let proxy = Proxy::bind(ProxyConfig {
            listen,
            ..ProxyConfig::default()
        })
        .await
        .map_err(|source| NodeError::BindProxy {
            addr: listen,
            source,
        })?;
        // The receivers made with the channels count the initial (empty) values as seen: the
        // proxy and the peer routes change only with what a feeder sends, never to "nothing"
        // at start (a restarted worker keeps its routes until the masters answer).
        let (routes, routes_rx) = watch::channel(Vec::new());
        let (peers, peers_rx) = watch::channel(Vec::new());
        let (endpoints, endpoints_rx) = watch::channel(Vec::new());
        let dns = Dns::new(self.cfg.dns_upstreams.clone());
        let dns_sockets = bind_dns(net.gateway()).await;
        Ok(ReadyNode {
            node: self,
            subnet,
            net,
            proxy,
            routes,
            routes_rx,
            peers,
            peers_rx,
            endpoints,
            endpoints_rx,
            dns,
            dns_sockets,
        })
    }
}

/// Stage 2: the network is up and the proxy bound; [`ReadyNode::start`] runs the node.
pub struct ReadyNode {
    node: Node,
    subnet: Ipv4Net,
    net: Arc<Network>,
    proxy: Proxy,
    routes: watch::Sender<Vec<RouteEntry>>,
    routes_rx: watch::Receiver<Vec<RouteEntry>>,
    peers: watch::Sender<Vec<(String, String)>>,
    peers_rx: watch::Receiver<Vec<(String, String)>>,
    endpoints: watch::Sender<Vec<ServiceEndpoints>>,
    endpoints_rx: watch::Receiver<Vec<ServiceEndpoints>>,
    dns: Dns,
    /// The cluster DNS's sockets on the gateway address (None: port 53 was taken there).
    dns_sockets: Option<(tokio::net::UdpSocket, tokio::net::TcpListener)>,
}

/// The cluster's DNS on `gateway`, port 53, UDP and TCP. A failure is logged and the node
/// runs without it (its replicas get the host's name servers).
async fn bind_dns(
    gateway: std::net::Ipv4Addr,
) -> Option<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let addr = SocketAddr::from((gateway, DNS_PORT));
    let bound = async {
        Ok::<_, std::io::Error>((
            tokio::net::UdpSocket::bind(addr).await?,
            tokio::net::TcpListener::bind(addr).await?,
        ))
    };
    match bound.await {
        Ok(sockets) => Some(sockets),
        Err(e) => {
            tracing::error!(%addr, error = %e, "the cluster's DNS cannot listen; replicas get the host's name servers");
            None
        }
    }
}

/// The cluster DNS's port.
pub const DNS_PORT: u16 = 53;

/// The name servers of a resolv.conf's text, port 53 (the cluster DNS's default upstreams).
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect()
}

/// What [`ReadyNode::start`] runs besides the proxy, the feeds and the measurements.
pub struct NodeParts<L> {
    /// This node's name, as the masters know it.
    pub name: String,
    /// None: the node runs no replicas (a master with `--no-worker`); it still serves the
    /// proxy and measures it.
    pub agent: Option<AgentParts<L>>,
}

/// The agent's link to the masters and the store of its local replicas.
pub struct AgentParts<L> {
    pub link: Arc<L>,
    pub store: WorkerStore,
}

impl ReadyNode {
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The feed of this node's routing table (the masters' routes): the proxy follows what
    /// is sent here.
    pub fn routes(&self) -> watch::Sender<Vec<RouteEntry>> {
        self.routes.clone()
    }

    /// The feed of the other nodes' container subnets, `(subnet, node address)`: routes to them
    /// are set at every send (a feeder sends every 2 s, which also restores a deleted route).
    pub fn peers(&self) -> watch::Sender<Vec<(String, String)>> {
        self.peers.clone()
    }

    /// The feed of the cluster's services for this node's DNS.
    pub fn endpoints(&self) -> watch::Sender<Vec<ServiceEndpoints>> {
        self.endpoints.clone()
    }

    /// The proxy's routes with their live counters (`GET /v1/routes` on a master). The type
    /// is dash-master's `admin_api::RouteStats`.
    pub fn route_stats(&self) -> Arc<dyn Fn() -> Vec<RouteInfo> + Send + Sync> {
        let proxy = self.proxy.handle();
        let routes = self.routes_rx.clone();
        Arc::new(move || {
            let entries = routes.borrow().clone();
            route_infos(&proxy, &entries)
        })
    }

    /// This node's /metrics series; its replicas' only with `store` (a node that runs them).
    pub fn telemetry(&self, name: &str, store: Option<WorkerStore>) -> Arc<telemetry::Telemetry> {
        Arc::new(telemetry::Telemetry::new(
            name.to_string(),
            store.as_ref().map(|_| self.node.runtime.clone()),
            store,
            self.proxy.handle(),
        ))
    }

    /// Stage 3: serves the proxy on the routes feed, keeps the peer routes, measures every
    /// 2 s into `metrics` (replicas only with an agent), and runs the agent if any.
    pub fn start<L, M, Fut>(
        self,
        parts: NodeParts<L>,
        metrics: M,
        shutdown: watch::Receiver<bool>,
    ) -> NodeTasks
    where
        L: MasterLink,
        M: FnMut(NodeMetrics) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let ReadyNode {
            node,
            subnet,
            net,
            proxy,
            routes_rx,
            peers_rx,
            endpoints_rx,
            dns,
            dns_sockets,
            ..
        } = self;
        let cluster_dns = dns_sockets.is_some().then(|| net.gateway());
        let default_userns = node.cfg.default_userns;
        let handle = proxy.handle();
        let mut tasks = vec![
            tokio::spawn(routes::follow(routes_rx, handle.clone(), shutdown.clone())),
            tokio::spawn(peers::follow(peers_rx, net.clone(), shutdown.clone())),
            tokio::spawn(measure_node(
                parts.agent.as_ref().map(|_| node.runtime.clone()),
                handle,
                shutdown.clone(),
                metrics,
            )),
        ];
        if let Some((udp, tcp)) = dns_sockets {
            tasks.push(tokio::spawn(dns.clone().serve_udp(udp, shutdown.clone())));
            tasks.push(tokio::spawn(dns.clone().serve_tcp(tcp, shutdown.clone())));
        }
        tasks.push(tokio::spawn(follow_endpoints(
            endpoints_rx,
            dns,
            net.clone(),
            shutdown.clone(),
        )));
        let mut proxy_stop = shutdown.clone();
        tasks.push(tokio::spawn(proxy.serve(async move {
            let _ = proxy_stop.changed().await;
        })));
        if let Some(AgentParts { link, store }) = parts.agent {
            let agent = Agent::new(
                AgentConfig {
                    node: parts.name,
                    subnet: (subnet.addr(), subnet.prefix()),
                    dns: cluster_dns,
                    default_userns,
                },
                link,
                store,
                node.runtime,
                node.images,
                node.puller,
                net,
            );
            tasks.push(tokio::spawn(agent.run(shutdown)));
        }
        NodeTasks(tasks)
    }
}

/// Keeps the DNS's directory and the isolation of networks equal to the feed of the
/// cluster's services.
async fn follow_endpoints(
    mut feed: watch::Receiver<Vec<ServiceEndpoints>>,
    dns: Dns,
    net: Arc<Network>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let endpoints = feed.borrow_and_update().clone();
        dns.set_endpoints(&endpoints);
        let mut networks: std::collections::BTreeMap<String, Vec<std::net::Ipv4Addr>> =
            Default::default();
        for e in &endpoints {
            let members: Vec<std::net::Ipv4Addr> =
                e.members.iter().filter_map(|a| a.parse().ok()).collect();
            for n in &e.networks {
                networks.entry(n.clone()).or_default().extend(&members);
            }
        }
        for members in networks.values_mut() {
            members.sort();
            members.dedup();
        }
        // One network (or none): every replica may reach every other, so there is nothing
        // to filter and no set to keep up to date: no nft run as each replica comes and goes.
        if networks.len() <= 1 {
            networks.clear();
        }
        if let Err(e) = net.set_isolation(&networks).await {
            tracing::error!(error = %e, "keeping replicas to their networks");
        }
        if let Err(e) = net.set_vips(&vip_ports(&endpoints)).await {
            tracing::error!(error = %e, "leading virtual IPs to replicas");
        }
        tokio::select! {
            r = feed.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Every port of every service's virtual IP with the service's ready replicas, in order.
fn vip_ports(endpoints: &[ServiceEndpoints]) -> Vec<dash_net::VipPort> {
    let mut out = Vec::new();
    for e in endpoints {
        let Some(vip) = e.vip.as_deref().and_then(|v| v.parse().ok()) else {
            continue;
        };
        let mut backends: Vec<std::net::Ipv4Addr> =
            e.ready.iter().filter_map(|a| a.parse().ok()).collect();
        backends.sort();
        for p in &e.ports {
            out.push(dash_net::VipPort {
                vip,
                protocol: match p.protocol {
                    dash_core::spec::Protocol::Tcp => dash_net::Protocol::Tcp,
                    dash_core::spec::Protocol::Udp => dash_net::Protocol::Udp,
                },
                port: p.container,
                backends: backends.clone(),
            });
        }
    }
    out.sort();
    out
}

/// The tasks of a running node (or of a worker's membership); each ends at the shutdown
/// signal.
#[must_use = "join the tasks after sending the shutdown signal"]
pub struct NodeTasks(Vec<JoinHandle<()>>);

impl NodeTasks {
    /// Waits for every task (after the shutdown signal was sent).
    pub async fn join(self) {
        for task in self.0 {
            let _ = task.await;
        }
    }

    fn extend(&mut self, more: NodeTasks) {
        self.0.extend(more.0);
    }
}
