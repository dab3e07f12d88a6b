//! `dash server`: master and worker in one process on one node.
//!
//! ```text
//!  flags ─ validate ─► MasterConfig + NodeConfig     (exit 64 before anything is touched)
//!  Master::open ─► Node::open ─► .with_network(--subnet)
//!  master.start(LocalNode { runtime name, logs, images, routes, peers, route stats, exec } of the node)
//!  node.start(agent on master.link() and the node's own node.db, measurements ─► master)
//!  SIGTERM / SIGINT ─► one shutdown signal ─► every task joined; containers keep running
//! ```
//!
//! The composition lives in dash-master (`master`) and dash-worker (`node`); this file checks
//! the flags and joins the two halves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dash_cli::ServerArgs;
use dash_master::admin_api::ListenAddr;
use dash_master::master::{AdminCertSource, ClusterConfig, LocalExec, LocalLogs};
use dash_master::master_api::SubnetPool;
use dash_master::worker_clients::ExecChannels;
use dash_master::{LocalNode, Master, MasterConfig};
use dash_net::Ipv4Net;
use dash_runtime::container::ContainerRuntime;
use dash_worker::node::telemetry::Telemetry;
use dash_worker::node::{AgentParts, NodeParts};
use dash_worker::{Node, NodeConfig, ReadyNode};
use tokio::sync::watch;

use crate::daemon::{self, ServerError};

struct Validated {
    master: MasterConfig,
    node: NodeConfig,
    subnet: Ipv4Net,
}

fn validate(args: &ServerArgs) -> Result<Validated, ServerError> {
    let listen = args
        .listen
        .iter()
        .map(|l| {
            ListenAddr::parse(l, args.insecure_http)
                .map_err(|e| ServerError::Config(format!("--listen {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let proxy_listen = daemon::proxy_listen_flag(&args.node.proxy_listen)?;
    if let Some(l) = listen.iter().find(|l| l.addr == proxy_listen) {
        return Err(ServerError::Config(format!(
            "--proxy-listen {proxy_listen} is also --listen {l}; give them different ports"
        )));
    }
    let (net, prefix) = ipv4_net(&args.subnet, 8..=30).ok_or_else(|| {
        ServerError::Config(format!(
            "--subnet {:?}: not an IPv4 subnet with a prefix of 8 to 30; use e.g. 10.88.0.0/24",
            args.subnet
        ))
    })?;
    let subnet = Ipv4Net::new(net, prefix)
        .map_err(|e| ServerError::Config(format!("--subnet {:?}: {e}", args.subnet)))?;
    let runtime = daemon::runtime_flag(args.node.runtime.as_deref())?;
    let node = daemon::check_node_flags(&args.node, subnet, runtime, proxy_listen)?;
    let name = daemon::node_name(args.node.node_name.as_ref(), "node1");
    let cluster = match &args.advertise_addr {
        None => None,
        Some(a) => {
            let ip: IpAddr = a.parse().map_err(|_| {
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
                Duration::from_secs(1),
                "3s",
            )?;
            let cert_validity = duration_flag(
                "--cert-validity",
                &args.cert_validity,
                Duration::from_secs(3),
                "168h",
            )?;
            Some(ClusterConfig {
                listen: SocketAddr::new(ip, args.cluster_port),
                subnets: SubnetPool { base, prefix },
                down_after,
                cert_validity,
            })
        }
    };
    let autoscale_interval = duration_flag(
        "--autoscale-interval",
        &args.autoscale_interval,
        Duration::from_millis(200),
        "5s",
    )?;
    let service_cidr = dash_core::subnet::VipPool::parse(&args.service_cidr)
        .map_err(|e| ServerError::Config(format!("--service-cidr {e}; use e.g. 10.96.0.0/16")))?;
    let admin_cert = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => AdminCertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            // The names a client may check against the address it dialled.
            let mut names: Vec<String> = ["127.0.0.1", "::1", "localhost"].map(String::from).into();
            for ip in listen
                .iter()
                .map(|l| l.addr.ip())
                .chain(cluster.as_ref().map(|c| c.listen.ip()))
                .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
            {
                if !names.contains(&ip.to_string()) {
                    names.push(ip.to_string());
                }
            }
            AdminCertSource::Ca {
                names,
                validity: cluster
                    .as_ref()
                    .map_or(Duration::from_secs(168 * 3600), |c| c.cert_validity),
            }
        }
    };
    let oidc = match (&args.oidc_issuer, &args.oidc_client_id) {
        (Some(issuer), Some(client_id)) => {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(ServerError::Config(format!(
                    "--oidc-issuer {issuer:?}: not a URL; give the provider's issuer, e.g. https://id.example.com"
                )));
            }
            let roles = args
                .oidc_roles
                .iter()
                .map(|r| {
                    dash_master::oidc::OidcConfig::parse_role(r)
                        .map_err(|e| ServerError::Config(format!("--oidc-role {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(dash_master::oidc::OidcConfig {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                role_claim: args.oidc_role_claim.clone(),
                roles,
                scopes: args.oidc_scopes.clone(),
            })
        }
        _ => None,
    };
    Ok(Validated {
        master: MasterConfig {
            oidc,
            admin_cert,
            service_cidr,
            data_dir: args.node.data_dir.clone(),
            node: name,
            listen,
            subnet: args.subnet.clone(),
            no_worker: args.no_worker,
            autoscale_interval,
            cluster,
        },
        node,
        subnet,
    })
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
    min: Duration,
    example: &str,
) -> Result<Duration, ServerError> {
    dash_core::units::parse_duration(value)
        .ok()
        .filter(|d| *d >= min)
        .ok_or_else(|| {
            ServerError::Config(format!(
                "{flag} {value:?}: a duration of at least {min:?}, e.g. {example}"
            ))
        })
}

pub async fn run(args: ServerArgs) -> Result<(), ServerError> {
    let mut v = validate(&args)?;
    let name = v.master.node.clone();
    let node = Node::open(v.node.clone())?;
    if let Some(subnet) = join_masters(&args, &v, &node).await? {
        // A master that joined runs its node on the subnet the cluster gave it.
        v.master.subnet = subnet.to_string();
        v.subnet = subnet;
    }
    let master = Master::open(v.master).await?;
    let store = node.open_store().await?;
    let node = node.with_network(v.subnet).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let telemetry = node.telemetry(&name, (!args.no_worker).then(|| store.clone()));
    let metrics = match &args.node.metrics_listen {
        Some(listen) => {
            daemon::serve_metrics(listen, telemetry.clone(), shutdown_rx.clone()).await?
        }
        None => None,
    };
    let master = master
        .start(local_node(&node, telemetry), shutdown_rx.clone())
        .await?;
    let trim = crate::memory::spawn_trim(shutdown_rx.clone());
    let agent = (!args.no_worker).then(|| AgentParts {
        link: master.link(),
        store,
    });
    let node = node.start(
        NodeParts { name, agent },
        master.metrics_sink(),
        shutdown_rx,
    );

    daemon::wait_for_signal().await;
    tracing::info!("shutting down; containers keep running");
    let _ = shutdown_tx.send(true);
    master.join().await;
    node.join().await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    let _ = trim.await;
    Ok(())
}

/// `--join TOKEN@MASTER:PORT`: joins the cluster as a master the first time (afterwards the
/// data dir holds the membership and the flag is not needed). Returns the subnet the cluster
/// gave this master's node, for a master that joined (now or before).
async fn join_masters(
    args: &ServerArgs,
    v: &Validated,
    node: &Node,
) -> Result<Option<Ipv4Net>, ServerError> {
    let data = &args.node.data_dir;
    let joined = match (dash_master::raft::join::load(data), &args.join) {
        (Some(j), _) => j,
        (None, None) => return Ok(None),
        (None, Some(_)) if dash_master::raft::node::has_raft_log(data) => {
            return Err(ServerError::Config(format!(
                "--join: {} belongs to a cluster already (it has a Raft log); drop --join, or \
                 use a new --data-dir to join another cluster",
                data.display()
            )));
        }
        (None, Some(join)) => {
            let Some(c) = &v.master.cluster else {
                return Err(ServerError::Config(
                    "--join needs --advertise-addr: the address the other masters reach this one at".into(),
                ));
            };
            let (token, master) = join.rsplit_once('@').ok_or_else(|| {
                ServerError::Config(format!(
                    "--join {join:?}: use TOKEN@MASTER:PORT, e.g. DASH1-…@10.0.0.1:7071"
                ))
            })?;
            dash_master::data_dir::ensure_private(data)
                .map_err(|e| ServerError::Config(format!("--data-dir {}: {e}", data.display())))?;
            let joined = dash_master::raft::join::join(
                data,
                dash_master::raft::join::JoinInfo {
                    token,
                    master,
                    node: &v.master.node,
                    advertise_addr: c.listen.to_string(),
                    capacity_json: serde_json::to_string(&node.capacity())
                        .map_err(|e| ServerError::Other(e.into()))?,
                    runtime: &node.runtime().kind().to_string(),
                    no_worker: args.no_worker,
                },
            )
            .await
            .map_err(|e| ServerError::Config(format!("--join: {e}")))?;
            tracing::info!(via = %master, subnet = %joined.subnet, "joined the cluster as a master");
            joined
        }
    };
    let (net, prefix) = ipv4_net(&joined.subnet, 8..=30).ok_or_else(|| {
        ServerError::Config(format!(
            "join.json: subnet {:?} is not an IPv4 subnet",
            joined.subnet
        ))
    })?;
    let subnet = Ipv4Net::new(net, prefix)
        .map_err(|e| ServerError::Config(format!("join.json: subnet {:?}: {e}", joined.subnet)))?;
    Ok(Some(subnet))
}

/// The node as its master sees it: server = Master + Node.
fn local_node(node: &ReadyNode, telemetry: Arc<Telemetry>) -> LocalNode {
    let n = node.node();
    LocalNode {
        runtime: n.runtime().kind().to_string(),
        logs: local_logs(n.runtime().clone()),
        capacity: n.capacity(),
        images: n.images().clone(),
        puller: n.puller().clone(),
        routes: node.routes(),
        endpoints: node.endpoints(),
        peers: node.peers(),
        route_stats: node.route_stats(),
        exec: local_exec(n.runtime().clone()),
        series: Arc::new(move || {
            let t = telemetry.clone();
            Box::pin(async move { t.snapshot().await })
        }),
    }
}

/// This node's replica logs, as the master's admin API reads them.
fn local_logs(runtime: Arc<ContainerRuntime>) -> LocalLogs {
    Arc::new(move |replica, offset| runtime.read_log(replica, offset))
}

/// Exec sessions in this node's replicas, as the master's admin API takes them.
fn local_exec(runtime: Arc<ContainerRuntime>) -> LocalExec {
    Arc::new(move |replica, req| {
        let runtime = runtime.clone();
        Box::pin(async move {
            dash_worker::exec::start(&runtime, &replica, &req)
                .await
                .map(|s| ExecChannels {
                    stdin: s.stdin,
                    events: s.events,
                })
        })
    })
}
