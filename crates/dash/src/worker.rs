//! `dash worker`: a node that joins a cluster and runs what the masters assign to it.
//!
//! Joins once with `--join TOKEN@MASTER:PORT` (the membership and the node's certificate are
//! kept in the data dir, so a restart needs no token), then runs the agent over master_api,
//! keeps routes to the other nodes' container subnets, and lets containers outlive it.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use dash_cli::WorkerArgs;
use dash_net::Network;
use dash_runtime::container::ContainerRuntime;
use dash_store::WorkerStore;
use dash_worker::master_link::{self, GrpcLink, JoinRequestInfo};
use dash_worker::{Agent, AgentConfig};
use tokio::sync::watch;

use crate::server::{
    ServerError, host_capacity, open_images, open_network, open_runtime, runtime_flag,
    set_peer_routes,
};

fn config_error(msg: String) -> ServerError {
    ServerError::Config(msg)
}

pub async fn run(args: WorkerArgs) -> Result<(), ServerError> {
    dash_rpc::tls::init_crypto();
    let advertise: std::net::IpAddr = args.advertise_addr.parse().map_err(|_| {
        config_error(format!(
            "--advertise-addr {:?}: not an IP address; use the address masters and other nodes reach this one at",
            args.advertise_addr
        ))
    })?;
    let runtime_kind = runtime_flag(args.node.runtime.as_deref())?;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| config_error(format!("--label {l:?}: use KEY=VALUE, e.g. zone=a")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let node = match &args.node.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into()),
    };
    let proxy_listen: std::net::SocketAddr = args.node.proxy_listen.parse().map_err(|_| {
        config_error(format!(
            "--proxy-listen {:?}: not an address; use e.g. 127.0.0.1:8080",
            args.node.proxy_listen
        ))
    })?;
    // The subnet comes from the masters at the join; the flags are checked against the default.
    crate::server::check_node_flags(&args.node, dash_net::NetConfig::default().subnet)?;
    let data = &args.node.data_dir;
    let given = JoinFlags {
        node: node.clone(),
        advertise_addr: args.advertise_addr.clone(),
        labels: labels.clone(),
    };
    if master_link::load_membership(data).is_some() {
        given.check_against(&JoinFlags::load(data), args.node.node_name.is_some())?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;

    let (images, puller) = open_images(data, &args.node.insecure_registries)?;
    let runtime = open_runtime(&args.node, runtime_kind)?;
    let capacity = host_capacity();
    let (membership, identity) = match master_link::load_membership(data) {
        Some(found) => {
            tracing::info!(master = %found.0.master, node = %found.0.node, "joined before; reconnecting");
            found
        }
        None => {
            let join = args.join.as_deref().ok_or_else(|| {
                config_error(
                    "this node has not joined a cluster: give --join TOKEN@MASTER:PORT (from `dash token create` on a master)".into(),
                )
            })?;
            let (token, master) = join.rsplit_once('@').ok_or_else(|| {
                config_error(format!(
                    "--join {join:?}: use TOKEN@MASTER:PORT, e.g. DASH1-…@10.0.0.1:7071"
                ))
            })?;
            master_link::join(
                data,
                JoinRequestInfo {
                    token,
                    master,
                    node: &node,
                    advertise_addr: &std::net::SocketAddr::new(advertise, args.worker_port)
                        .to_string(),
                    capacity,
                    labels: &labels,
                    runtime: &runtime.kind().to_string(),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("joining via {master}: {e}"))?
        }
    };
    if JoinFlags::load(data).is_none() {
        // Joined now (or by a version that did not record the flags): remember what counted.
        given.save(data).context("recording the join flags")?;
    }
    tracing::info!(node = %membership.node, subnet = %membership.subnet, "member of the cluster");
    // Heartbeats first: the masters count silence from the join on, and setting up the
    // network can take a while.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let link = GrpcLink::start(
        &membership.master,
        identity.clone(),
        membership.node.clone(),
        capacity,
        images.clone(),
        shutdown_rx.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let subnet: dash_net::Ipv4Net = membership
        .subnet
        .parse()
        .map_err(|e| anyhow::anyhow!("subnet {:?} from the masters: {e}", membership.subnet))?;
    let net = open_network(
        &args.node.bridge,
        subnet,
        &args.node.nft_table,
        &args.node.run_dir,
    )
    .await?;
    let pool = dash_store::open(&data.join("dash.db"))
        .await
        .context("opening the store")?;
    let worker_store = WorkerStore::new(pool);

    let proxy = dash_proxy::Proxy::bind(dash_proxy::ProxyConfig {
        listen: proxy_listen,
        ..dash_proxy::ProxyConfig::default()
    })
    .await
    .with_context(|| format!("binding the proxy on {proxy_listen}"))?;
    let feeder = tokio::spawn(routes_from_masters(
        link.clone(),
        proxy.handle(),
        shutdown_rx.clone(),
    ));
    let measure_task = {
        let link = link.clone();
        tokio::spawn(crate::server::measure_node(
            Some(runtime.clone()),
            proxy.handle(),
            shutdown_rx.clone(),
            move |m| {
                let link = link.clone();
                async move { link.report_metrics(&m).await }
            },
        ))
    };
    let mut proxy_stop = shutdown_rx.clone();
    let proxy_task = tokio::spawn(proxy.serve(async move {
        let _ = proxy_stop.changed().await;
    }));
    let routes_task = tokio::spawn(peer_routes_from_masters(
        link.clone(),
        net.clone(),
        shutdown_rx.clone(),
    ));
    let identity_task = tokio::spawn(serve_and_rotate(
        Rotation {
            link: link.clone(),
            data: data.clone(),
            node: membership.node.clone(),
            runtime: runtime.clone(),
            api_addr: std::net::SocketAddr::new(advertise, args.worker_port),
        },
        identity,
        shutdown_rx.clone(),
    ));
    let agent = Agent::new(
        AgentConfig {
            node: membership.node.clone(),
            subnet: (subnet.addr(), subnet.prefix()),
        },
        link,
        worker_store,
        runtime.clone(),
        images,
        puller,
        net,
    );
    tracing::info!(node = %membership.node, master = %membership.master, runtime = %runtime.kind(), "dash worker ready");
    let agent_task = tokio::spawn(agent.run(shutdown_rx));
    crate::server::wait_for_signal().await;
    tracing::info!("shutting down; containers keep running");
    let _ = shutdown_tx.send(true);
    let _ = agent_task.await;
    let _ = routes_task.await;
    let _ = identity_task.await;
    let _ = feeder.await;
    let _ = measure_task.await;
    let _ = proxy_task.await;
    Ok(())
}

/// Keeps this node's proxy on the masters' routing table (polled every second; the table is
/// only rebuilt when it changed).
async fn routes_from_masters(
    link: Arc<GrpcLink>,
    proxy: dash_proxy::ProxyHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = String::new();
    loop {
        let mut client = link.client();
        match client.routes(dash_rpc::proto::RoutesRequest {}).await {
            Ok(r) => {
                let json = r.into_inner().entries_json;
                if json != last {
                    match serde_json::from_str::<Vec<dash_core::api::RouteEntry>>(&json) {
                        Ok(entries) => {
                            proxy.update(crate::server::table(&entries));
                            last = json;
                        }
                        Err(e) => tracing::warn!(error = %e, "routes from the masters unreadable"),
                    }
                }
            }
            Err(s) => tracing::debug!(error = %s.message(), "fetching routes"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn peer_routes_from_masters(
    link: Arc<GrpcLink>,
    net: Arc<Network>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut client = link.client();
        match client.peers(dash_rpc::proto::PeersRequest {}).await {
            Ok(r) => {
                let peers: Vec<(String, String)> = r
                    .into_inner()
                    .peers
                    .into_iter()
                    .map(|p| (p.subnet, p.address))
                    .collect();
                set_peer_routes(&net, &peers).await;
            }
            Err(s) => tracing::debug!(error = %s.message(), "listing peers"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

struct Rotation {
    link: Arc<GrpcLink>,
    data: std::path::PathBuf,
    node: String,
    runtime: Arc<ContainerRuntime>,
    api_addr: std::net::SocketAddr,
}

/// Serves worker_api with the node's certificate and renews the certificate at two thirds of
/// its lifetime: the new identity goes to the master channel and to a new worker_api server
/// (the old one stops once the new one listens), without restarting the daemon.
async fn serve_and_rotate(
    r: Rotation,
    mut identity: master_link::Identity,
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
            _ = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
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
                        tracing::error!(error = %e, "channel with the renewed certificate");
                    }
                    identity = new;
                    tracing::info!(node = %r.node, "certificate renewed");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
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
    id: &master_link::Identity,
    incoming: dash_rpc::acceptor::Incoming,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let chain = format!("{}{}", id.cert_pem, id.ca_pem);
    let server = tonic::transport::Server::builder()
        .tls_config(dash_rpc::tls::server_tls(
            &chain,
            &id.key_pem,
            &id.ca_pem,
            true,
        ))
        .context("worker_api TLS")?
        .add_service(dash_rpc::proto::worker_api_server::WorkerApiServer::new(
            dash_worker::worker_api::WorkerApiService {
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

/// What a worker's flags told the masters when it joined: its name, address and labels. The
/// masters keep them in the node's record (and its certificate names the node), so a restart
/// with other values would silently keep the old ones: it is refused instead, saying what to
/// do. Kept in `<data-dir>/join-flags.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct JoinFlags {
    node: String,
    advertise_addr: String,
    labels: BTreeMap<String, String>,
}

impl JoinFlags {
    fn path(data: &std::path::Path) -> std::path::PathBuf {
        data.join("join-flags.json")
    }

    fn load(data: &std::path::Path) -> Option<JoinFlags> {
        let text = std::fs::read_to_string(Self::path(data)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, data: &std::path::Path) -> anyhow::Result<()> {
        let path = Self::path(data);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Refuses flags that differ from those the node joined with. Labels given as flags are
    /// compared only when some are given (a restart without `--label` keeps the node's labels,
    /// including those set since with `dash node label`); the name only when `--node-name` is.
    fn check_against(
        &self,
        joined: &Option<JoinFlags>,
        name_given: bool,
    ) -> Result<(), ServerError> {
        let Some(joined) = joined else { return Ok(()) };
        if name_given && self.node != joined.node {
            return Err(config_error(format!(
                "--node-name {:?}: this node joined the cluster as {:?}, and a node cannot be \
                 renamed; drop the flag, or remove the node (`dash node rm {}` on a master), clear \
                 the data dir and join again with the new name",
                self.node, joined.node, joined.node
            )));
        }
        if self.advertise_addr != joined.advertise_addr {
            return Err(config_error(format!(
                "--advertise-addr {:?}: this node joined with {:?}, which the masters and the \
                 other nodes use to reach it; start it with that address, or remove the node \
                 (`dash node rm {}` on a master), clear the data dir and join again",
                self.advertise_addr, joined.advertise_addr, joined.node
            )));
        }
        if !self.labels.is_empty() && self.labels != joined.labels {
            let shown: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            return Err(config_error(format!(
                "--label {}: labels only count when a node joins; change a joined node's labels \
                 on a master with `dash node label {} KEY=VALUE` (or KEY- to remove one), and \
                 drop --label here",
                shown.join(" --label "),
                joined.node
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(node: &str, addr: &str, labels: &[(&str, &str)]) -> JoinFlags {
        JoinFlags {
            node: node.into(),
            advertise_addr: addr.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn refusal(given: &JoinFlags, joined: &JoinFlags, name_given: bool) -> String {
        match given.check_against(&Some(joined.clone()), name_given) {
            Err(ServerError::Config(m)) => m,
            Err(ServerError::Other(e)) => panic!("not a config error: {e}"),
            Ok(()) => panic!("{given:?} accepted against {joined:?}"),
        }
    }

    #[test]
    fn a_restart_with_other_join_flags_is_refused_with_the_fix() {
        let joined = flags("w1", "10.0.0.2", &[("zone", "a")]);
        let same = flags("w1", "10.0.0.2", &[("zone", "a")]);
        assert!(same.check_against(&Some(joined.clone()), true).is_ok());
        // No --label and no --node-name: nothing to compare (the host name may differ).
        let bare = flags("host", "10.0.0.2", &[]);
        assert!(bare.check_against(&Some(joined.clone()), false).is_ok());
        // Nothing recorded (joined by an earlier version): accepted.
        assert!(bare.check_against(&None, true).is_ok());

        let m = refusal(&flags("w9", "10.0.0.2", &[]), &joined, true);
        assert!(
            m.contains("--node-name \"w9\"") && m.contains("dash node rm w1"),
            "{m}"
        );
        let m = refusal(&flags("w1", "10.0.0.9", &[]), &joined, false);
        assert!(
            m.contains("--advertise-addr \"10.0.0.9\"") && m.contains("\"10.0.0.2\""),
            "{m}"
        );
        let m = refusal(&flags("w1", "10.0.0.2", &[("zone", "b")]), &joined, false);
        assert!(
            m.contains("--label zone=b") && m.contains("dash node label w1"),
            "{m}"
        );
    }
}
