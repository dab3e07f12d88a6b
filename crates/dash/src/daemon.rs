//! What both node daemons (`dash server`, `dash worker`) share in the binary: their error
//! (exit 64 for flags, 1 for the rest), the node flags' check, and the wait for a signal.
//!
//! ```text
//!  NodeArgs ─ runtime_flag, check_node_flags ─► NodeConfig (nothing opened or created yet)
//!           └─ any problem ─► ServerError::Config ─► "error: …", exit 64
//!  a failure once started (MasterError, NodeError, anyhow) ─► ServerError::Other ─► exit 1
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use dash_net::{Ipv4Net, NetError};
use dash_runtime::container::RuntimeKind;
use dash_worker::NodeConfig;

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

impl From<dash_master::MasterError> for ServerError {
    fn from(e: dash_master::MasterError) -> Self {
        ServerError::Other(e.into())
    }
}

impl From<dash_worker::NodeError> for ServerError {
    fn from(e: dash_worker::NodeError) -> Self {
        ServerError::Other(e.into())
    }
}

/// `--metrics-listen`: binds it (`none`: nowhere) and serves the node's /metrics there until
/// `shutdown`. A taken or malformed address fails the start, naming the flag.
pub async fn serve_metrics(
    listen: &str,
    telemetry: std::sync::Arc<dash_worker::node::telemetry::Telemetry>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServerError> {
    if listen == "none" {
        return Ok(None);
    }
    let addr: SocketAddr = listen.parse().map_err(|_| {
        ServerError::Config(format!(
            "--metrics-listen {listen:?}: give IP:PORT (e.g. 127.0.0.1:9180) or none"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        ServerError::Config(format!(
            "--metrics-listen {addr}: {e}; pick another port, or none"
        ))
    })?;
    tracing::info!(%addr, "serving /metrics");
    Ok(Some(tokio::spawn(dash_worker::node::telemetry::serve(
        listener, telemetry, shutdown,
    ))))
}

/// The flags every node daemon shares, checked before anything is opened or created: the
/// network names (they end up in netlink requests and nft scripts), the directories, and the
/// monitor binary the runtime needs. `runtime` and `proxy_listen` are parsed by the caller.
pub fn check_node_flags(
    node: &dash_cli::NodeArgs,
    subnet: Ipv4Net,
    runtime: Option<RuntimeKind>,
    proxy_listen: SocketAddr,
) -> Result<NodeConfig, ServerError> {
    let dns_upstreams = if node.dns_upstreams.is_empty() {
        dash_worker::node::resolv_conf_servers(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    } else {
        node.dns_upstreams
            .iter()
            .map(|u| {
                u.parse::<SocketAddr>()
                    .or_else(|_| u.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        ServerError::Config(format!(
                            "--dns-upstream {u:?}: not an IP address or IP:PORT; use e.g. 10.0.0.2 or 127.0.0.1:5353"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut cfg = NodeConfig {
        dns_upstreams,
        data_dir: node.data_dir.clone(),
        run_dir: node.run_dir.clone(),
        bridge: node.bridge.clone(),
        nft_table: node.nft_table.clone(),
        cgroup_parent: node.cgroup_parent.clone(),
        runtime,
        monitor_bin: PathBuf::new(),
        insecure_registries: node.insecure_registries.clone(),
        proxy_listen,
        default_userns: node.default_userns,
    };
    cfg.net_config(subnet).validate().map_err(|e| {
        ServerError::Config(match e {
            NetError::Config {
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
    cfg.monitor_bin = monitor_path().map_err(|e| ServerError::Config(format!("{e:#}")))?;
    Ok(cfg)
}

/// `--proxy-listen`: an address.
pub fn proxy_listen_flag(value: &str) -> Result<SocketAddr, ServerError> {
    value.parse().map_err(|_| {
        ServerError::Config(format!(
            "--proxy-listen {value:?}: not an address; use e.g. 127.0.0.1:8080"
        ))
    })
}

/// `--runtime`: crun, runc, or None for "crun if it works here, else runc".
pub fn runtime_flag(value: Option<&str>) -> Result<Option<RuntimeKind>, ServerError> {
    match value {
        None => Ok(None),
        Some("crun") => Ok(Some(RuntimeKind::Crun)),
        Some("runc") => Ok(Some(RuntimeKind::Runc)),
        Some(other) => Err(ServerError::Config(format!(
            "--runtime {other:?}: use crun or runc"
        ))),
    }
}

/// `dash-monitor`, installed next to `dash`.
fn monitor_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the dash binary")?;
    let path = exe.with_file_name("dash-monitor");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: install dash-monitor next to dash",
        path.display()
    );
    Ok(path)
}

/// The node's name: `--node-name`, else the host name, else `fallback`.
pub fn node_name(given: Option<&String>, fallback: &str) -> String {
    match given {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| fallback.into()),
    }
}

/// Resolves at SIGTERM or SIGINT (never, if the handlers cannot be installed).
pub async fn wait_for_signal() {
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
