//! `dash server`: master and worker in one process on one node.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use dash_cli::ServerArgs;
use dash_core::api::{NodeState, RouteEntry, RouteInfo, UpstreamInfo};
use dash_core::command::{Command, NodeRecord};
use dash_core::event::EventKind;
use dash_core::spec::Resources;
use dash_master::admin_api::{self, AppState};
use dash_master::local_link::LocalLink;
use dash_master::message_queue::MessageQueue;
use dash_master::node_bouncer::{self, NodeBouncer};
use dash_master::reconciler::Reconciler;
use dash_master::route_table;
use dash_master::service_manager::ServiceManager;
use dash_master::service_state::ServiceState;
use dash_net::{NetConfig, Network};
use dash_proxy::{Proxy, ProxyConfig, ProxyHandle, Route, RouteTable, Upstream};
use dash_runtime::container::{ContainerRuntime, RuntimeConfig, RuntimeKind};
use dash_runtime::image::ImageStore;
use dash_runtime::registry::{Puller, RegistryConfig};
use dash_store::{MasterStore, WorkerStore};
use dash_worker::{Agent, AgentConfig};
use tokio::sync::{Notify, watch};

pub enum ServerError {
    /// Bad flags or environment: exit 64 before anything is touched.
    Config(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for ServerError {
    fn from(e: anyhow::Error) -> Self {
        ServerError::Other(e)
    }
}

struct Validated {
    autoscale_interval: std::time::Duration,
    cluster: Option<ClusterFlags>,
    listen: SocketAddr,
    proxy_listen: SocketAddr,
    subnet: (Ipv4Addr, u8),
    runtime: Option<RuntimeKind>,
    node: String,
}

fn validate(args: &ServerArgs) -> Result<Validated, ServerError> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        ServerError::Config(format!(
            "--listen {:?}: not an address; use e.g. 127.0.0.1:7070",
            args.listen
        ))
    })?;
    let proxy_listen: SocketAddr = args.node.proxy_listen.parse().map_err(|_| {
        ServerError::Config(format!(
            "--proxy-listen {:?}: not an address; use e.g. 127.0.0.1:8080",
            args.node.proxy_listen
        ))
    })?;
    if proxy_listen == listen {
        return Err(ServerError::Config(format!(
            "--proxy-listen {proxy_listen} is also --listen; give them different ports"
        )));
    }
    let (net, prefix) = ipv4_net(&args.subnet, 8..=30).ok_or_else(|| {
        ServerError::Config(format!(
            "--subnet {:?}: not an IPv4 subnet with a prefix of 8 to 30; use e.g. 10.88.0.0/24",
            args.subnet
        ))
    })?;
    let subnet = dash_net::Ipv4Net::new(net, prefix)
        .map_err(|e| ServerError::Config(format!("--subnet {:?}: {e}", args.subnet)))?;
    let runtime = runtime_flag(args.node.runtime.as_deref())?;
    check_node_flags(&args.node, subnet)?;
    let node = match &args.node.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node1".into()),
    };
    let cluster = match &args.advertise_addr {
        None => None,
        Some(a) => {
            let ip: std::net::IpAddr = a.parse().map_err(|_| {
                ServerError::Config(format!(
                    "--advertise-addr {a:?}: not an IP address; use this machine's address other nodes reach, e.g. 10.0.0.1"
                ))
            })?;
            let (base, prefix) = ipv4_net(&args.cluster_cidr, 8..=24).ok_or_else(|| {
                ServerError::Config(format!(
                    "--cluster-cidr {:?}: not an IPv4 network with a prefix of 8 to 24; use e.g. 10.89.0.0/16",
                    args.cluster_cidr
                ))
            })?;
            let down_after = duration_flag(
                "--node-down-after",
                &args.node_down_after,
                std::time::Duration::from_secs(1),
                "3s",
            )?;
            let cert_validity = duration_flag(
                "--cert-validity",
                &args.cert_validity,
                std::time::Duration::from_secs(3),
                "168h",
            )?;
            Some(ClusterFlags {
                cert_validity,
                listen: SocketAddr::new(ip, args.cluster_port),
                subnets: dash_master::master_api::SubnetPool { base, prefix },
                down_after,
            })
        }
    };
    let autoscale_interval = duration_flag(
        "--autoscale-interval",
        &args.autoscale_interval,
        std::time::Duration::from_millis(200),
        "5s",
    )?;
    Ok(Validated {
        autoscale_interval,
        cluster,
        listen,
        proxy_listen,
        subnet: (net, prefix),
        runtime,
        node,
    })
}

/// The flags every node daemon shares, checked before anything is opened or created: the
/// network names (they end up in netlink requests and nft scripts), the directories, and the
/// monitor binary the runtime needs.
pub(crate) fn check_node_flags(
    node: &dash_cli::NodeArgs,
    subnet: dash_net::Ipv4Net,
) -> Result<(), ServerError> {
    let net = NetConfig {
        bridge: node.bridge.clone(),
        subnet,
        nft_table: node.nft_table.clone(),
        netns_dir: node.run_dir.join("netns"),
    };
    net.validate().map_err(|e| {
        ServerError::Config(match e {
            dash_net::NetError::Config {
                field,
                value,
                reason,
            } => {
                let flag = match field {
                    "nft_table" => "--nft-table",
                    "netns_dir" => "--run-dir",
                    "bridge" => "--bridge",
                    _ => "--subnet",
                };
                format!("{flag} {value:?}: {reason}")
            }
            other => other.to_string(),
        })
    })?;
    for (flag, dir) in [("--data-dir", &node.data_dir), ("--run-dir", &node.run_dir)] {
        if !dir.is_absolute() {
            return Err(ServerError::Config(format!(
                "{flag} {:?}: must be an absolute path, e.g. /var/lib/dash",
                dir.display().to_string()
            )));
        }
    }
    if let Some(name) = &node.node_name
        && let Err(e) = dash_core::NodeId::new(name.clone())
    {
        return Err(ServerError::Config(format!("--node-name {name:?}: {e}")));
    }
    dash_runtime::container::validate_cgroup_parent(&node.cgroup_parent).map_err(|_| {
        ServerError::Config(format!(
            "--cgroup-parent {:?}: use relative name segments of letters, digits, '_', '.' and \
             '-', e.g. dash or dash/node1",
            node.cgroup_parent
        ))
    })?;
    monitor_path().map_err(|e| ServerError::Config(format!("{e:#}")))?;
    Ok(())
}

/// `A.B.C.D/N` with N in `prefixes`.
fn ipv4_net(text: &str, prefixes: std::ops::RangeInclusive<u8>) -> Option<(Ipv4Addr, u8)> {
    text.split_once('/')
        .and_then(|(a, p)| Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?)))
        .filter(|(_, p)| prefixes.contains(p))
}

/// A duration flag of at least `min`; the error names the flag, the value and an example.
fn duration_flag(
    flag: &str,
    value: &str,
    min: std::time::Duration,
    example: &str,
) -> Result<std::time::Duration, ServerError> {
    dash_core::units::parse_duration(value)
        .ok()
        .filter(|d| *d >= min)
        .ok_or_else(|| {
            ServerError::Config(format!(
                "{flag} {value:?}: a duration of at least {min:?}, e.g. {example}"
            ))
        })
}

struct ClusterFlags {
    cert_validity: std::time::Duration,
    listen: SocketAddr,
    subnets: dash_master::master_api::SubnetPool,
    down_after: std::time::Duration,
}

pub(crate) fn host_capacity() -> Resources {
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: mem_kib * 1024,
    }
}

/// `--runtime`: crun, runc, or None for "crun if it works here, else runc".
pub(crate) fn runtime_flag(value: Option<&str>) -> Result<Option<RuntimeKind>, ServerError> {
    match value {
        None => Ok(None),
        Some("crun") => Ok(Some(RuntimeKind::Crun)),
        Some("runc") => Ok(Some(RuntimeKind::Runc)),
        Some(other) => Err(ServerError::Config(format!(
            "--runtime {other:?}: use crun or runc"
        ))),
    }
}

/// The node's image store and registry puller (`<data>/images`, `<data>/registries.json`).
pub(crate) fn open_images(
    data: &Path,
    insecure: &[String],
) -> Result<(Arc<ImageStore>, Arc<Puller>), ServerError> {
    let images =
        Arc::new(ImageStore::open(&data.join("images")).context("opening the image store")?);
    let mut registry_cfg = RegistryConfig::new(data.join("registries.json"));
    registry_cfg.insecure = insecure.to_vec();
    let puller =
        Arc::new(Puller::new(images.clone(), registry_cfg).context("setting up registry pulls")?);
    Ok((images, puller))
}

/// The container runtime: state in `<data>/containers`, the OCI runtime's root in the run dir.
pub(crate) fn open_runtime(
    node: &dash_cli::NodeArgs,
    prefer: Option<RuntimeKind>,
) -> Result<Arc<ContainerRuntime>, ServerError> {
    Ok(Arc::new(
        ContainerRuntime::new(RuntimeConfig {
            state_dir: node.data_dir.join("containers"),
            runtime_root: node.run_dir.join("runtime"),
            monitor_bin: monitor_path()?,
            prefer,
            cgroup_parent: node.cgroup_parent.clone(),
        })
        .context("setting up the container runtime")?,
    ))
}

/// The node's bridge, nftables table and netns dir.
pub(crate) async fn open_network(
    bridge: &str,
    subnet: dash_net::Ipv4Net,
    nft_table: &str,
    run_dir: &Path,
) -> Result<Arc<Network>, ServerError> {
    Ok(Arc::new(
        Network::init(NetConfig {
            bridge: bridge.to_string(),
            subnet,
            nft_table: nft_table.to_string(),
            netns_dir: run_dir.join("netns"),
        })
        .await
        .context("setting up the node network")?,
    ))
}

pub(crate) fn monitor_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the dash binary")?;
    let path = exe.with_file_name("dash-monitor");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: install dash-monitor next to dash",
        path.display()
    );
    Ok(path)
}

pub async fn run(args: ServerArgs) -> Result<(), ServerError> {
    let v = validate(&args)?;
    let data = &args.node.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let token = admin_api::load_or_create_token(&data.join("admin.token"))
        .context("creating the admin token")?;
    let pool = dash_store::open(&data.join("dash.db"))
        .await
        .context("opening the store")?;
    let master_store = MasterStore::new(pool.clone());
    let worker_store = WorkerStore::new(pool);

    let (images, puller) = open_images(data, &args.node.insecure_registries)?;
    let runtime = open_runtime(&args.node, v.runtime)?;
    let subnet = dash_net::Ipv4Net::new(v.subnet.0, v.subnet.1)
        .context("--subnet was checked by validate()")?;
    let net = open_network(
        &args.node.bridge,
        subnet,
        &args.node.nft_table,
        &args.node.run_dir,
    )
    .await?;

    let mq = Arc::new(MessageQueue::new());
    let wake = Arc::new(Notify::new());
    let (changes_tx, changes_rx) = watch::channel(0u64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let node = NodeRecord {
        id: v.node.clone(),
        address: v
            .cluster
            .as_ref()
            .map_or_else(|| v.listen.ip().to_string(), |c| c.listen.ip().to_string()),
        // "master": a master that runs no replicas (--no-worker); the scheduler skips it.
        role: if args.no_worker { "master" } else { "server" }.into(),
        state: NodeState::Ready,
        labels: Default::default(),
        capacity: host_capacity(),
        subnet: args.subnet.clone(),
        runtime: runtime.kind().to_string(),
    };
    master_store
        .apply(&Command::UpsertNode {
            node: Box::new(node),
            at_ms: dash_master::now_ms(),
        })
        .await
        .context("registering this node")?;
    mq.publish(
        EventKind::NodeReady,
        None,
        None,
        format!("{} ({})", v.node, runtime.kind()),
    );

    let metrics = Arc::new(dash_master::metrics::Metrics::new());
    let manager = ServiceManager::new(master_store.clone(), mq.clone(), wake.clone());
    let state = ServiceState::new(master_store.clone(), mq.clone(), wake.clone());
    let reconciler = Reconciler::new(master_store.clone(), mq.clone(), wake.clone(), changes_tx);
    let mut cluster_tasks = Vec::new();
    let mut worker_clients = None;
    let bouncer = match &v.cluster {
        None => None,
        Some(c) => {
            let (bouncer, tasks, clients) = start_master_api(
                c,
                data,
                &v.node,
                MasterApiParts {
                    store: master_store.clone(),
                    state: state.clone(),
                    mq: mq.clone(),
                    wake: wake.clone(),
                    changes: changes_rx.clone(),
                    images: images.clone(),
                    net: net.clone(),
                    metrics: metrics.clone(),
                },
                shutdown_rx.clone(),
            )
            .await?;
            cluster_tasks = tasks;
            worker_clients = Some(clients);
            Some(bouncer)
        }
    };
    let link = Arc::new(LocalLink::new(master_store.clone(), state, changes_rx));
    let agent = Agent::new(
        AgentConfig {
            node: v.node.clone(),
            subnet: v.subnet,
        },
        link,
        worker_store,
        runtime.clone(),
        images.clone(),
        puller.clone(),
        net.clone(),
    );

    // The proxy: its routing table follows the master's state (rebuilt on every event).
    let proxy = Proxy::bind(ProxyConfig {
        listen: v.proxy_listen,
        ..ProxyConfig::default()
    })
    .await
    .with_context(|| format!("binding the proxy on {}", v.proxy_listen))?;
    let proxy_handle = proxy.handle();
    let routes_now: Arc<std::sync::RwLock<Vec<RouteEntry>>> = Arc::default();
    let feeder = tokio::spawn(feed_routes(
        master_store.clone(),
        mq.clone(),
        proxy_handle.clone(),
        routes_now.clone(),
        shutdown_rx.clone(),
    ));
    let route_stats: admin_api::RouteStats = {
        let handle = proxy_handle.clone();
        Arc::new(move || route_infos(&handle, &routes_now))
    };

    let logs: admin_api::LogReader = {
        let runtime = runtime.clone();
        let local = v.node.clone();
        let remote = worker_clients.clone();
        Arc::new(move |r: dash_core::api::ReplicaInfo, offset: u64| {
            let runtime = runtime.clone();
            let local = local.clone();
            let remote = remote.clone();
            Box::pin(async move {
                match (&r.node, &remote) {
                    (Some(node), Some(remote)) if *node != local => {
                        remote.read_log(node, &r.id, offset).await
                    }
                    _ => tokio::task::spawn_blocking(move || {
                        let (data, end) = runtime.read_log(&r.id, offset);
                        (String::from_utf8_lossy(&data).into_owned(), end)
                    })
                    .await
                    .map_err(|e| e.to_string()),
                }
            })
        })
    };
    let exec: admin_api::ExecStarter = {
        let runtime = runtime.clone();
        let local = v.node.clone();
        let remote = worker_clients.clone();
        Arc::new(
            move |r: dash_core::api::ReplicaInfo, req: dash_core::api::ExecRequest| {
                let runtime = runtime.clone();
                let local = local.clone();
                let remote = remote.clone();
                Box::pin(async move {
                    match (&r.node, &remote) {
                        (Some(node), Some(remote)) if *node != local => {
                            remote.exec(node, &r.id, &req).await
                        }
                        (Some(node), None) if *node != local => Err(format!(
                            "replica {} is on node {node}, and this server runs without master_api",
                            r.id
                        )),
                        _ => dash_worker::exec::start(&runtime, &r.id, &req)
                            .await
                            .map(|s| dash_master::worker_clients::ExecChannels {
                                stdin: s.stdin,
                                events: s.events,
                            }),
                    }
                })
            },
        )
    };
    let scaler = dash_master::service_scaler::ServiceScaler::new(
        manager.clone(),
        metrics.clone(),
        v.autoscale_interval,
    );
    let scaler_task = tokio::spawn(scaler.run(shutdown_rx.clone()));
    let measure_task = {
        let metrics = metrics.clone();
        let node = v.node.clone();
        tokio::spawn(measure_node(
            (!args.no_worker).then(|| runtime.clone()),
            proxy_handle.clone(),
            shutdown_rx.clone(),
            move |m| {
                metrics.record(&node, m, dash_master::now_ms());
                std::future::ready(())
            },
        ))
    };
    let app = admin_api::router(AppState {
        manager,
        mq,
        images,
        puller,
        token: token.into(),
        upload_dir: data.join("tmp"),
        logs,
        exec,
        route_stats,
        metrics,
        bouncer,
    });
    let listener = tokio::net::TcpListener::bind(v.listen)
        .await
        .with_context(|| format!("binding {}", v.listen))?;
    tracing::info!(listen = %v.listen, data_dir = %data.display(), runtime = %runtime.kind(), node = %v.node, "dash server ready");

    let reconciler_task = tokio::spawn(reconciler.run(shutdown_rx.clone()));
    let agent_task = if args.no_worker {
        drop(agent);
        tokio::spawn(async {})
    } else {
        tokio::spawn(agent.run(shutdown_rx.clone()))
    };
    let mut shutdown_http = shutdown_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = shutdown_http.changed().await;
    });
    let server_task = tokio::spawn(async move { server.await });
    let mut shutdown_proxy = shutdown_rx.clone();
    let proxy_task = tokio::spawn(proxy.serve(async move {
        let _ = shutdown_proxy.changed().await;
    }));

    wait_for_signal().await;
    tracing::info!("shutting down; containers keep running");
    let _ = shutdown_tx.send(true);
    let _ = reconciler_task.await;
    let _ = scaler_task.await;
    let _ = measure_task.await;
    let _ = agent_task.await;
    let _ = server_task.await;
    let _ = proxy_task.await;
    let _ = feeder.await;
    for t in cluster_tasks {
        let _ = t.await;
    }
    let _ = Path::new(data);
    Ok(())
}

/// Measures this node every 2 s (its replicas' CPU and memory when it runs any, its
/// proxy's load per service) and hands the result to `sink`.
pub(crate) async fn measure_node<F, Fut>(
    runtime: Option<Arc<dash_runtime::container::ContainerRuntime>>,
    proxy: ProxyHandle,
    mut shutdown: watch::Receiver<bool>,
    mut sink: F,
) where
    F: FnMut(dash_core::api::NodeMetrics) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut sampler = runtime.map(dash_worker::stats::Sampler::new);
    loop {
        let replicas = match sampler.take() {
            None => Vec::new(),
            Some(mut s) => {
                match tokio::task::spawn_blocking(move || {
                    let out = s.sample();
                    (s, out)
                })
                .await
                {
                    Ok((s, out)) => {
                        sampler = Some(s);
                        out
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "measuring replicas");
                        Vec::new()
                    }
                }
            }
        };
        let mut per_service: std::collections::BTreeMap<String, f64> = Default::default();
        for r in proxy.stats() {
            *per_service.entry(r.service).or_default() += r.requests_per_second;
        }
        let routes = per_service
            .into_iter()
            .map(|(service, requests_per_second)| dash_core::api::RouteLoad {
                service,
                requests_per_second,
            })
            .collect();
        sink(dash_core::api::NodeMetrics { replicas, routes }).await;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

struct MasterApiParts {
    store: MasterStore,
    state: ServiceState,
    mq: Arc<MessageQueue>,
    wake: Arc<Notify>,
    changes: watch::Receiver<u64>,
    images: Arc<ImageStore>,
    net: Arc<Network>,
    metrics: Arc<dash_master::metrics::Metrics>,
}

/// The cluster side of a master: its CA and certificate, master_api on --advertise-addr with
/// mutual TLS, node liveness, and routes to the other nodes' container subnets.
async fn start_master_api(
    c: &ClusterFlags,
    data: &Path,
    node: &str,
    p: MasterApiParts,
    shutdown: watch::Receiver<bool>,
) -> Result<
    (
        NodeBouncer,
        Vec<tokio::task::JoinHandle<()>>,
        Arc<dash_master::worker_clients::WorkerClients>,
    ),
    ServerError,
> {
    use dash_master::master_api::{Liveness, LivenessConfig, MasterApiService};
    dash_rpc::tls::init_crypto();
    let ca = node_bouncer::load_or_create_ca(&data.join("pki"), node)
        .context("creating the cluster CA")?;
    let bouncer = NodeBouncer::new(p.store.clone(), ca, c.cert_validity)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // A fresh key and certificate for this master at every start; the key stays in memory.
    let (key_pem, csr_pem) = dash_rpc::pki::new_csr(node).map_err(|e| anyhow::anyhow!("{e}"))?;
    let issued = bouncer
        .issue(node, dash_rpc::pki::Role::Master, &csr_pem)
        .await
        .map_err(|e| anyhow::anyhow!("issuing this master's certificate: {e}"))?;
    let liveness = Arc::new(Liveness::new(LivenessConfig {
        down_after: c.down_after,
        unreachable_after: c.down_after / 2,
        // At least four beats before a node counts as unreachable.
        heartbeat: (c.down_after / 8).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_millis(500),
        ),
    }));
    let service = MasterApiService {
        store: p.store.clone(),
        bouncer: bouncer.clone(),
        state: p.state,
        mq: p.mq.clone(),
        wake: p.wake.clone(),
        liveness: liveness.clone(),
        changes: p.changes,
        images: p.images,
        subnets: c.subnets,
        joins: Arc::default(),
        metrics: p.metrics,
    };
    let clients = Arc::new(dash_master::worker_clients::WorkerClients::new(
        p.store.clone(),
        dash_rpc::tls::worker_client_tls(&issued.pem, &key_pem, bouncer.ca_pem()),
    ));
    // Bound here so that a taken port fails the start; later generations rebind it.
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .with_context(|| format!("binding master_api on {}", c.listen))?;
    tracing::info!(listen = %c.listen, ca = bouncer.ca_fingerprint(), "master_api ready");
    let mut tasks = vec![tokio::spawn(serve_master_api(
        MasterIdentity {
            node: node.to_string(),
            bouncer: bouncer.clone(),
            clients: clients.clone(),
        },
        service,
        listener,
        (issued.pem, key_pem),
        shutdown.clone(),
    ))];
    tasks.push(tokio::spawn(liveness.run(
        p.store.clone(),
        p.mq,
        p.wake,
        node.to_string(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(peer_routes_from_store(
        p.store, p.net, shutdown,
    )));
    Ok((bouncer, tasks, clients))
}

struct MasterIdentity {
    node: String,
    bouncer: NodeBouncer,
    clients: Arc<dash_master::worker_clients::WorkerClients>,
}

/// Serves master_api with this master's certificate and renews it at two thirds of its
/// lifetime: a new key and certificate, a new server generation on the same port (the old one
/// stops accepting; its streams end and workers reconnect), and the new identity for calls to
/// worker_api. No restart.
async fn serve_master_api(
    id: MasterIdentity,
    service: dash_master::master_api::MasterApiService,
    first_listener: tokio::net::TcpListener,
    mut cert: (String, String),
    mut shutdown: watch::Receiver<bool>,
) {
    let (acceptor, mut incoming) = dash_rpc::acceptor::Acceptor::start(first_listener);
    loop {
        let chain = format!("{}{}", cert.0, id.bouncer.ca_pem());
        let mut stop_rx = shutdown.clone();
        let builder = tonic::transport::Server::builder().tls_config(dash_rpc::tls::server_tls(
            &chain,
            &cert.1,
            id.bouncer.ca_pem(),
            false,
        ));
        let builder = match builder {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "master_api TLS");
                return;
            }
        };
        let server = builder
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(1)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(2)))
            .add_service(dash_rpc::proto::master_api_server::MasterApiServer::new(
                service.clone(),
            ))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.changed().await;
            });
        let handle = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "master_api stopped");
            }
        });
        let now = (dash_core::clock::now_ms() / 1000) as i64;
        let wait = (dash_worker::master_link::renew_at(&cert.0) - now).max(1) as u64;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
            _ = shutdown.changed() => {
                let _ = handle.await;
                return;
            }
        }
        let renewed = async {
            let (key, csr) = dash_rpc::pki::new_csr(&id.node).map_err(|e| e.to_string())?;
            let issued = id
                .bouncer
                .issue(&id.node, dash_rpc::pki::Role::Master, &csr)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((issued.pem, key))
        };
        match renewed.await {
            Ok(new) => {
                id.clients.set_tls(dash_rpc::tls::worker_client_tls(
                    &new.0,
                    &new.1,
                    id.bouncer.ca_pem(),
                ));
                cert = new;
                tracing::info!(node = %id.node, "master certificate renewed");
            }
            Err(e) => tracing::warn!(error = %e, "renewing this master's certificate; retrying"),
        }
        incoming = acceptor.next_generation();
        drop(handle);
    }
}

/// Keeps routes to every other node's subnet via that node (every 2 s).
async fn peer_routes_from_store(
    store: MasterStore,
    net: Arc<Network>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Ok(nodes) = store.nodes().await {
            let peers: Vec<(String, String)> =
                nodes.into_iter().map(|n| (n.subnet, n.address)).collect();
            set_peer_routes(&net, &peers).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies (subnet, node address) pairs as routes; bad entries are skipped with a warning.
pub(crate) async fn set_peer_routes(net: &Network, peers: &[(String, String)]) {
    let routes: Vec<(dash_net::Ipv4Net, Ipv4Addr)> = peers
        .iter()
        .filter_map(|(subnet, address)| {
            let net: dash_net::Ipv4Net = subnet.parse().ok()?;
            let ip = match dash_master::master_api::node_ip(address)? {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => return None,
            };
            Some((net, ip))
        })
        .collect();
    if let Err(e) = net.set_peer_routes(&routes).await {
        tracing::warn!(error = %e, "setting routes to other nodes");
    }
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Keeps the proxy's table equal to the master's routes: rebuilt at start and after every
/// event (a burst of events is folded into one rebuild).
async fn feed_routes(
    store: MasterStore,
    mq: Arc<MessageQueue>,
    proxy: ProxyHandle,
    now: Arc<std::sync::RwLock<Vec<RouteEntry>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = mq.subscribe();
    loop {
        match route_table::build(&store).await {
            Ok(entries) => {
                proxy.update(table(&entries));
                if let Ok(mut n) = now.write() {
                    *n = entries;
                }
            }
            Err(e) => tracing::warn!(error = %e, "building the routing table"),
        }
        tokio::select! {
            r = events.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                // Fold the rest of a burst into the same rebuild.
                while events.try_recv().is_ok() {}
            }
            _ = shutdown.changed() => return,
        }
    }
}

pub(crate) fn table(entries: &[RouteEntry]) -> RouteTable {
    RouteTable::new(
        entries
            .iter()
            .map(|e| {
                let route = Route {
                    service: e.service.clone(),
                    host: e.route.host.clone(),
                    path_prefix: e.route.path_prefix.clone(),
                    strip_prefix: e.route.strip_prefix,
                    port: e.route.port,
                };
                let upstreams = e
                    .upstreams
                    .iter()
                    .filter_map(|(replica, ip)| {
                        let ip: Ipv4Addr = ip.parse().ok()?;
                        Some(Upstream {
                            replica: replica.clone(),
                            addr: SocketAddr::from((ip, e.route.port)),
                        })
                    })
                    .collect();
                (route, upstreams)
            })
            .collect(),
    )
}

fn route_infos(proxy: &ProxyHandle, now: &std::sync::RwLock<Vec<RouteEntry>>) -> Vec<RouteInfo> {
    let entries = now.read().map(|n| n.clone()).unwrap_or_default();
    proxy
        .stats()
        .into_iter()
        .map(|s| {
            let spec = entries
                .iter()
                .find(|e| e.route.host == s.host && e.route.path_prefix == s.path_prefix);
            let mut buckets: Vec<u64> = dash_proxy::LATENCY_BUCKETS_MS.to_vec();
            buckets.push(u64::MAX);
            RouteInfo {
                strip_prefix: spec.is_some_and(|e| e.route.strip_prefix),
                port: spec.map_or(0, |e| e.route.port),
                service: s.service,
                host: s.host,
                path_prefix: s.path_prefix,
                requests: s.requests,
                status: s.status,
                errors: s.errors,
                requests_per_second: s.requests_per_second,
                latency_buckets_ms: buckets,
                latency_counts: s.latency_ms.to_vec(),
                upstreams: s
                    .upstreams
                    .into_iter()
                    .map(|u| UpstreamInfo {
                        replica: u.replica,
                        addr: u.addr.to_string(),
                        state: if u.ejected {
                            "ejected".into()
                        } else {
                            "up".into()
                        },
                        in_flight: u.in_flight,
                        requests: u.requests,
                        failures: u.failures,
                    })
                    .collect(),
            }
        })
        .collect()
}
