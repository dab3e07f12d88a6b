//! master: the master side of `dash server`, composed. The node it runs beside (dash-worker's
//! `Node`) comes in as a [`LocalNode`]: dash-master does not depend on dash-worker, the binary
//! joins the two (server = Master + Node).
//!
//! ```text
//!  MasterConfig (flags, checked before anything is touched)
//!     │ Master::open         data dir, <data>/admin.token, <data>/dash.db
//!     ▼
//!  Master ─ .start(LocalNode, shutdown) ─────────────────────────────────────────────────┐
//!     this node's record ─► state_log ◄─ service_manager ◄─ admin_api (bound on listen)   │
//!     message_queue ─► route feeder ─► LocalNode.routes (the node's proxy)                │
//!     reconciler ─► assignments changed ─► LocalLink ─► the node's agent                  │
//!     service_scaler ◄─ metrics ◄─ measurements (metrics_sink; ReportMetrics)             │
//!     with a cluster: CA + this master's certificate (renewed), master_api (mutual TLS),  │
//!       liveness, peers from the store ─► LocalNode.peers, worker_api clients (logs, exec)│
//!     ▼                                                                                   │
//!  RunningMaster: link(), metrics_sink() for the node; join() ◄──────────────────────────┘
//! ```
//!
//! Every task ends when `shutdown` changes; [`RunningMaster::join`] waits for them.

mod admin;
mod admin_tls;
mod cluster;
mod routes;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{ExecRequest, NodeMetrics, NodeRole, NodeState, RouteEntry};
use dash_core::command::{Command, NodeRecord};
use dash_core::event::{EventDraft, EventKind};
use dash_core::spec::Resources;
use dash_image::ImageStore;
use dash_image::registry::Puller;
use dash_rpc::pki::PkiError;
use dash_store::{Db, StoreError};
use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use admin_tls::AdminCertSource;

use crate::admin_api::{self, AppState, RouteStats};
use crate::leader_election::LeaderWork;
use crate::local_link::LocalLink;
use crate::master_api::SubnetPool;
use crate::message_queue::MessageQueue;
use crate::metrics::Metrics;
use crate::node_bouncer::BouncerError;
use crate::raft::node::{RaftNode, RaftStartError};
use crate::reconciler::Reconciler;
use crate::registry_logins::RegistryLogins;
use crate::service_manager::ServiceManager;
use crate::service_scaler::ServiceScaler;
use crate::service_state::ServiceState;
use crate::state_log::StateLog;
use crate::worker_clients::ExecChannels;

/// A master's settings, from `dash server`'s flags (checked by the binary first).
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// `admin.token`, `dash.db`, `pki/`, upload staging (`tmp/`).
    pub data_dir: PathBuf,
    /// This node's name.
    pub node: String,
    /// The admin API's addresses (`--listen`, repeatable): plain HTTP on loopback, HTTPS
    /// elsewhere.
    pub listen: Vec<admin_api::ListenAddr>,
    /// The HTTPS listeners' certificate.
    pub admin_cert: AdminCertSource,
    /// The OpenID Connect provider people log in with (`--oidc-issuer`).
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// This node's container subnet, recorded as given (`--subnet`).
    pub subnet: String,
    /// A master that runs no replicas (`--no-worker`): its node's role is `master` and the
    /// scheduler skips it.
    pub no_worker: bool,
    pub autoscale_interval: Duration,
    /// Where services' virtual IPs come from (`--service-cidr`; the first master's is the
    /// cluster's).
    pub service_cidr: dash_core::subnet::VipPool,
    /// master_api for other nodes (`--advertise-addr`); None: a single node.
    pub cluster: Option<ClusterConfig>,
}

/// master_api's settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `--advertise-addr` and `--cluster-port`; also this node's address in its record.
    pub listen: SocketAddr,
    /// Where joining nodes' subnets come from (`--cluster-cidr`).
    pub subnets: SubnetPool,
    /// Silence after which a node is down (`--node-down-after`).
    pub down_after: Duration,
    /// Lifetime of the certificates the CA issues (`--cert-validity`).
    pub cert_validity: Duration,
}

/// Starts an exec session in a replica of this process's node (`dash_worker::exec::start`,
/// wrapped by the binary).
pub type LocalExec = Arc<
    dyn Fn(String, ExecRequest) -> BoxFuture<'static, Result<ExecChannels, String>> + Send + Sync,
>;

/// Reads this node's log of a replica from a byte offset: `(bytes, offset after them)`
/// (`ContainerRuntime::read_log`, wrapped by the binary). Blocking: called on the blocking pool.
pub type LocalLogs = Arc<dyn Fn(&str, u64) -> (Vec<u8>, u64) + Send + Sync>;

/// What the master uses of the node in its own process (dash-worker's `ReadyNode`). The
/// master knows the node's container runtime only through these: its name and two closures.
pub struct LocalNode {
    /// The OCI runtime's name (`crun`, `runc`), recorded in this node's record.
    pub runtime: String,
    /// Local replicas' logs.
    pub logs: LocalLogs,
    pub capacity: Resources,
    /// Shared with the admin API (imports, pulls) and master_api (images shipped to workers).
    pub images: Arc<ImageStore>,
    pub puller: Arc<Puller>,
    /// The node's proxy follows this feed; the master sends its routes after every event.
    pub routes: watch::Sender<Vec<RouteEntry>>,
    /// The node's DNS follows this feed (sent with the routes).
    pub endpoints: watch::Sender<Vec<dash_core::api::ServiceEndpoints>>,
    /// With a cluster, the master sends every node's `(subnet, address)` here every 2 s.
    pub peers: watch::Sender<Vec<(String, String)>>,
    /// The node's proxy counters, for `GET /v1/routes`.
    pub route_stats: RouteStats,
    pub exec: LocalExec,
    /// The node's series for /metrics (its replicas and proxy).
    pub series: crate::telemetry::NodeSeries,
}

/// How long the admin API lets requests in flight finish once the daemon stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs an admin API server (which stops taking connections at `shutdown`) and, once
/// `shutdown` comes, lets what is in flight finish for [`SHUTDOWN_GRACE`]: answers that never
/// end (`dash events`, `dash logs -f`, an open portal) are cut then, or a stop would wait for
/// them for ever.
async fn with_grace<F, E>(serve: F, mut shutdown: watch::Receiver<bool>)
where
    F: std::future::Future<Output = Result<(), E>>,
{
    tokio::select! {
        _ = serve => {}
        _ = async {
            let _ = shutdown.changed().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("admin API: streams still open after {SHUTDOWN_GRACE:?} closed");
        }
    }
}

/// Why a master could not start. The messages are what the daemon prints (with the causes).
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("creating {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the admin token")]
    AdminToken(#[source] std::io::Error),
    #[error("opening the store")]
    Store(#[source] StoreError),
    #[error("registering this node")]
    RegisterNode(#[source] StoreError),
    #[error("starting this master's Raft")]
    Raft(#[source] RaftStartError),
    #[error(
        "{} holds the Raft log of a cluster of masters: start this master with --advertise-addr \
         (as before), or restore a backup into a new data dir",
        .0.display()
    )]
    RaftWithoutCluster(PathBuf),
    #[error("joining the masters: {0}")]
    Join(String),
    #[error("registering this node: the cluster's state refused it")]
    NodeRefused(#[source] dash_store::Rejection),
    #[error("creating the cluster CA")]
    Ca(#[source] std::io::Error),
    #[error(transparent)]
    Bouncer(BouncerError),
    #[error(transparent)]
    Csr(PkiError),
    #[error("issuing this master's certificate")]
    IssueCert(#[source] BouncerError),
    #[error("binding master_api on {addr}")]
    BindMasterApi {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin API's HTTPS certificate: {0}")]
    AdminTls(String),
    #[error("binding {addr}")]
    BindAdmin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Stage 1: the data dir, the admin token and the store are open.
pub struct Master {
    cfg: MasterConfig,
    token: String,
    db: Db,
}

impl Master {
    /// Creates the data dir (0700: see `dash_store::data_dir`), loads or creates `<data>/admin.token`, opens `<data>/dash.db`.
    pub async fn open(cfg: MasterConfig) -> Result<Master, MasterError> {
        let data = &cfg.data_dir;
        dash_store::data_dir::ensure_private(data).map_err(|source| MasterError::CreateDir {
            path: data.clone(),
            source,
        })?;
        let token = admin_api::load_or_create_token(&data.join("admin.token"))
            .map_err(MasterError::AdminToken)?;
        let pool = dash_store::open(&data.join("dash.db"))
            .await
            .map_err(MasterError::Store)?;
        Ok(Master {
            cfg,
            token,
            db: pool,
        })
    }

    /// Stage 2: with a cluster, this master's Raft (a new one-member cluster the first time,
    /// or the membership it joined); registers this node, starts master_api with a cluster,
    /// the route feeder, the leader's work (reconciler, service_scaler, liveness: on the leader
    /// only, see leader_election) and the admin API (bound here: a taken port fails the start).
    pub async fn start(
        self,
        node: LocalNode,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RunningMaster, MasterError> {
        let Master { cfg, token, db } = self;
        let mq = Arc::new(MessageQueue::new());
        let wake = Arc::new(Notify::new());
        let (changes_tx, changes_rx) = watch::channel(0u64);
        let kind = node.runtime.clone();
        let mut tasks = Vec::new();

        let applied = Arc::new(Notify::new());
        let (log, alone) = match &cfg.cluster {
            Some(c) => {
                let raft = RaftNode::open(
                    &cfg.data_dir,
                    &cfg.node,
                    c.listen.to_string(),
                    db.clone(),
                    mq.clone(),
                    applied.clone(),
                )
                .await
                .map_err(MasterError::Raft)?;
                let joining = crate::raft::join::pending(&cfg.data_dir).is_some();
                let initialized = raft
                    .raft
                    .is_initialized()
                    .await
                    .map_err(|e| MasterError::Raft(RaftStartError::Raft(e.to_string())))?;
                if !initialized && !joining {
                    raft.bootstrap(&dash_store::StateMachine::new(db.clone()))
                        .await
                        .map_err(MasterError::Raft)?;
                }
                let alone = !joining && raft.masters().len() <= 1;
                (StateLog::with_raft(db, raft, mq.clone()), alone)
            }
            None => {
                if crate::raft::node::has_raft_log(&cfg.data_dir) {
                    return Err(MasterError::RaftWithoutCluster(cfg.data_dir.clone()));
                }
                (StateLog::new(db, mq.clone()), true)
            }
        };
        let store = log.store().clone();
        if let Some(raft) = log.raft() {
            tasks.push(tokio::spawn(crate::image_sync::run(
                raft.clone(),
                store.clone(),
                node.images.clone(),
                shutdown.clone(),
            )));
            tasks.push(tokio::spawn(crate::telemetry::watch_leader(
                raft.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(follow_applied(
            applied,
            wake.clone(),
            changes_tx.clone(),
            shutdown.clone(),
        )));

        let record = NodeRecord {
            id: cfg.node.clone(),
            address: cfg.cluster.as_ref().map_or_else(
                || {
                    cfg.listen
                        .first()
                        .map_or_else(|| "127.0.0.1".to_string(), |l| l.addr.ip().to_string())
                },
                |c| c.listen.ip().to_string(),
            ),
            // "master": a master that runs no replicas (--no-worker); the scheduler skips it.
            role: if cfg.no_worker {
                NodeRole::Master
            } else {
                NodeRole::Server
            },
            state: NodeState::Ready,
            labels: Default::default(),
            capacity: node.capacity,
            subnet: cfg.subnet.clone(),
            runtime: kind.clone(),
        };
        if alone {
            // Registered before anything serves: this master is the whole cluster.
            register(&log, &record, cfg.service_cidr).await?;
        } else {
            // One of several masters: registered once a leader takes it (the leader may be
            // elected only after this master serves RaftApi).
            let (log, cidr) = (log.clone(), cfg.service_cidr);
            let mut stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match register(&log, &record, cidr).await {
                        Ok(()) => return,
                        Err(e) => tracing::warn!(error = %e, "registering this node; retrying"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }));
        }

        // The CA (made at the first start, with a cluster or not): it signs nodes'
        // certificates, and the cluster's data key is derived from its key.
        let ca = crate::node_bouncer::load_or_create_ca(&cfg.data_dir.join("pki"), &cfg.node)
            .map_err(MasterError::Ca)?;
        let ca_pems: Arc<(String, String)> =
            Arc::new((ca.cert_pem.clone(), ca.key_pem().to_string()));
        let admin_ca = dash_rpc::pki::Ca::load(ca.cert_pem.clone(), ca.key_pem().to_string())
            .map_err(|e| MasterError::Ca(std::io::Error::other(e)))?;
        let tokens = crate::tokens::Tokens::new(
            log.clone(),
            &ca.fingerprint()
                .map_err(|e| MasterError::Ca(std::io::Error::other(e)))?,
        );
        let data_key = crate::sealing::DataKey::from_ca_key(ca.key_pem())
            .map_err(|e| MasterError::Ca(std::io::Error::other(e)))?;
        let data_key = Arc::new(data_key);
        let secrets = crate::secrets::Secrets::new(log.clone(), data_key.clone());
        let registry_logins = RegistryLogins::new(log.clone(), data_key);
        node.puller
            .use_credential_store(Arc::new(registry_logins.clone()));
        tasks.push(tokio::spawn(crate::registry_logins::adopt_file(
            registry_logins.clone(),
            node.puller.clone(),
            shutdown.clone(),
        )));

        let metrics = Arc::new(Metrics::new());
        let manager = ServiceManager::new(log.clone(), wake.clone());
        let state = ServiceState::new(log.clone(), wake.clone());
        let (bouncer, worker_clients, liveness) = match &cfg.cluster {
            None => (None, None, None),
            Some(c) => {
                let started = cluster::start(
                    c,
                    &cfg.data_dir,
                    &cfg.node,
                    cluster::Parts {
                        ca,
                        log: log.clone(),
                        state: state.clone(),
                        mq: mq.clone(),
                        wake: wake.clone(),
                        changes: changes_rx.clone(),
                        images: node.images.clone(),
                        peers: node.peers,
                        metrics: metrics.clone(),
                        admin_token: token.clone(),
                        feeds: crate::master_api::RouteFeeds {
                            routes: node.routes.subscribe(),
                            endpoints: node.endpoints.subscribe(),
                        },
                        secrets: secrets.clone(),
                    },
                    shutdown.clone(),
                )
                .await?;
                tasks.extend(started.tasks);
                (
                    Some(started.bouncer),
                    Some(started.clients),
                    Some(started.liveness),
                )
            }
        };
        let link = Arc::new(LocalLink::new(
            store.clone(),
            state,
            secrets.clone(),
            changes_rx,
        ));

        tasks.push(tokio::spawn(routes::feed(
            store.clone(),
            mq.clone(),
            node.routes,
            node.endpoints,
            shutdown.clone(),
        )));
        let logs = admin::log_reader(node.logs, cfg.node.clone(), worker_clients.clone());
        let exec = admin::exec_starter(node.exec, cfg.node.clone(), worker_clients);
        let app = admin_api::router(AppState {
            manager: manager.clone(),
            mq: mq.clone(),
            images: node.images,
            puller: node.puller,
            token: token.into(),
            tokens,
            secrets: secrets.clone(),
            oidc: cfg
                .oidc
                .clone()
                .map(|c| Arc::new(crate::oidc::Oidc::new(c))),
            upload_dir: cfg.data_dir.join("tmp"),
            logs,
            exec,
            route_stats: node.route_stats,
            node: cfg.node.clone(),
            metrics: metrics.clone(),
            node_series: Some(node.series),
            bouncer,
            liveness: liveness.clone(),
            registry_logins,
            ca: ca_pems,
        });
        let mut listeners = Vec::new();
        for l in &cfg.listen {
            let tcp = tokio::net::TcpListener::bind(l.addr)
                .await
                .map_err(|source| MasterError::BindAdmin {
                    addr: l.addr,
                    source,
                })?;
            listeners.push((*l, tcp));
        }
        let tls = match cfg.listen.iter().any(|l| l.tls) {
            false => None,
            true => {
                let (config, renewal) =
                    admin_tls::start(&cfg.admin_cert, &admin_ca, &cfg.node, shutdown.clone())
                        .map_err(MasterError::AdminTls)?;
                tasks.extend(renewal);
                Some(config)
            }
        };
        // What the start created (the state, the raft log, the CA) is private too.
        if let Err(e) = dash_store::data_dir::ensure_private(&cfg.data_dir) {
            tracing::warn!(error = %e, data_dir = %cfg.data_dir.display(), "making the data dir private");
        }
        let listen: Vec<String> = cfg.listen.iter().map(ToString::to_string).collect();
        tracing::info!(listen = %listen.join(","), data_dir = %cfg.data_dir.display(), runtime = %kind, node = %cfg.node, "dash server ready");

        // The leader's work, started and stopped by leader_election.
        let work: LeaderWork = {
            let (log, mq, wake, metrics) = (log.clone(), mq.clone(), wake.clone(), metrics.clone());
            let (liveness, local) = (liveness.clone(), cfg.node.clone());
            let interval = cfg.autoscale_interval;
            Box::new(move |term: watch::Receiver<bool>| {
                let reconciler =
                    Reconciler::new(log.clone(), mq.clone(), wake.clone(), changes_tx.clone());
                let scaler = ServiceScaler::new(manager.clone(), metrics.clone(), interval);
                let mut t = vec![
                    tokio::spawn(reconciler.run(term.clone())),
                    tokio::spawn(scaler.run(term.clone())),
                ];
                if let Some(l) = &liveness {
                    t.push(tokio::spawn(l.clone().run(
                        log.clone(),
                        wake.clone(),
                        local.clone(),
                        term.clone(),
                    )));
                }
                t
            })
        };
        let beat = liveness
            .as_ref()
            .map_or(Duration::from_millis(500), |l| l.config().heartbeat);
        tasks.push(tokio::spawn(crate::leader_election::run(
            log.raft().cloned(),
            liveness,
            beat,
            work,
            shutdown.clone(),
        )));
        for (l, tcp) in listeners {
            let app = app
                .clone()
                .into_make_service_with_connect_info::<admin_api::Peer>();
            let mut stop = shutdown.clone();
            let stopped = async move {
                let _ = stop.changed().await;
            };
            let server = match (&tls, l.tls) {
                (Some(config), true) => {
                    let tls = admin_api::TlsListener::start(tcp, config.clone(), shutdown.clone())
                        .map_err(|source| MasterError::BindAdmin {
                            addr: l.addr,
                            source,
                        })?;
                    let serve = axum::serve(tls, app).with_graceful_shutdown(stopped);
                    tokio::spawn(with_grace(serve.into_future(), shutdown.clone()))
                }
                _ => {
                    let serve = axum::serve(tcp, app).with_graceful_shutdown(stopped);
                    tokio::spawn(with_grace(serve.into_future(), shutdown.clone()))
                }
            };
            tasks.push(server);
        }
        Ok(RunningMaster {
            node: cfg.node,
            link,
            metrics,
            tasks,
        })
    }
}

/// Records this node (and announces it ready), and this master's `--service-cidr` if the
/// cluster has none recorded yet.
async fn register(
    log: &StateLog,
    record: &NodeRecord,
    service_cidr: dash_core::subnet::VipPool,
) -> Result<(), MasterError> {
    log.propose_with(
        Command::UpsertNode {
            node: Box::new(record.clone()),
            at_ms: crate::now_ms(),
        },
        vec![EventDraft::node(
            EventKind::NodeReady,
            &record.id,
            format!("{} ({})", record.id, record.runtime),
        )],
    )
    .await
    .map_err(MasterError::RegisterNode)?
    .accepted()
    .map_err(MasterError::NodeRefused)?;
    let cidr = Command::SetServiceCidr { cidr: service_cidr };
    if let Some(r) = log
        .propose(cidr)
        .await
        .map_err(MasterError::RegisterNode)?
        .rejected
    {
        tracing::warn!(reason = %r, "services with ports from before virtual IPs could not all get one");
    }
    Ok(())
}

/// Every entry that changed the state (applied here, whoever proposed it) wakes the
/// reconciler and the assignment watches.
async fn follow_applied(
    applied: Arc<Notify>,
    wake: Arc<Notify>,
    changes: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = applied.notified() => {
                wake.notify_one();
                changes.send_modify(|v| *v += 1);
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// A started master: what its node needs from it, and its tasks.
#[must_use = "join the master's tasks after sending the shutdown signal"]
pub struct RunningMaster {
    node: String,
    link: Arc<LocalLink>,
    metrics: Arc<Metrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningMaster {
    /// The in-process MasterLink for this node's agent.
    pub fn link(&self) -> Arc<LocalLink> {
        self.link.clone()
    }

    /// Where this node's measurements go: straight into the service_scaler's metrics.
    pub fn metrics_sink(
        &self,
    ) -> impl FnMut(NodeMetrics) -> std::future::Ready<()> + Send + 'static {
        let metrics = self.metrics.clone();
        let node = self.node.clone();
        move |m| {
            metrics.record(&node, m, crate::now_ms());
            std::future::ready(())
        }
    }

    /// Waits for every task (after the shutdown signal was sent).
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
