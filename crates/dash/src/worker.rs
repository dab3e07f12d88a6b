//! `dash worker`: a node that joins a cluster and runs what the masters assign to it.
//!
//! Joins once with `--join TOKEN@MASTER:PORT` (the membership and the node's certificate are
//! kept in the data dir, so a restart needs no token), then runs the agent over master_api,
//! keeps routes to the other nodes' container subnets, and lets containers outlive it.
//!
//! ```text
//!  flags ─ validate ─► NodeConfig, JoinFlags, joined before? (exit 64 before anything is touched)
//!  Node::open (runtime) ─► the join, or the membership in the data dir ─► Member::connect
//!  ─► Node::with_network(the subnet from the masters) ─► member.start(node, its store)
//!  SIGTERM / SIGINT ─► one shutdown signal ─► every task joined; containers keep running
//! ```
//!
//! The join stays here: what it needs and refuses is about flags (`--join` only for the
//! first start, the same name, address and labels afterwards: `JoinFlags`), and its refusals
//! are exit-64 diagnostics; the call itself is `master_link::join`. The rest is dash-worker's
//! `node` and `node::member`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use dash_cli::WorkerArgs;
use dash_worker::master_link::{self, Identity, JoinRequestInfo, Membership};
use dash_worker::node::{Member, MemberConfig};
use dash_worker::{Node, NodeConfig};
use tokio::sync::watch;

use crate::daemon::{self, ServerError};

fn config_error(msg: String) -> ServerError {
    ServerError::Config(msg)
}

struct Validated {
    node: NodeConfig,
    name: String,
    advertise: IpAddr,
    labels: BTreeMap<String, String>,
    given: JoinFlags,
    joining: Joining,
}

/// A node that joined before restarts on its membership; a new one joins with `--join`.
enum Joining {
    Member(Membership, Identity),
    Join { token: String, master: String },
}

fn validate(args: &WorkerArgs) -> Result<Validated, ServerError> {
    let advertise: IpAddr = args.advertise_addr.parse().map_err(|_| {
        config_error(format!(
            "--advertise-addr {:?}: not an IP address; use the address masters and other nodes reach this one at",
            args.advertise_addr
        ))
    })?;
    let runtime = daemon::runtime_flag(args.node.runtime.as_deref())?;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| config_error(format!("--label {l:?}: use KEY=VALUE, e.g. zone=a")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let name = daemon::node_name(args.node.node_name.as_ref(), "worker");
    let proxy_listen = daemon::proxy_listen_flag(&args.node.proxy_listen)?;
    // The subnet comes from the masters at the join; the flags are checked against the default.
    let node = daemon::check_node_flags(
        &args.node,
        dash_net::NetConfig::default().subnet,
        runtime,
        proxy_listen,
    )?;
    let data = &args.node.data_dir;
    let given = JoinFlags {
        node: name.clone(),
        advertise_addr: args.advertise_addr.clone(),
        labels: labels.clone(),
    };
    // A `--join` through a master this node has never known (a restored cluster, another
    // cluster) joins anew; the same `--join` on a restart does not (the address it joined
    // through, as given, or any master's it has heard of since).
    let moved = |m: &Membership| {
        args.join
            .as_deref()
            .and_then(|j| j.rsplit_once('@'))
            .is_some_and(|(_, master)| {
                master != m.master && !m.all_masters().iter().any(|a| a == master)
            })
    };
    let joining = match master_link::load_membership(data) {
        Some((membership, identity)) if !moved(&membership) => {
            given.check_against(&JoinFlags::load(data), args.node.node_name.is_some())?;
            Joining::Member(membership, identity)
        }
        _ => {
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
            Joining::Join {
                token: token.to_string(),
                master: master.to_string(),
            }
        }
    };
    Ok(Validated {
        node,
        name,
        advertise,
        labels,
        given,
        joining,
    })
}

pub async fn run(args: WorkerArgs) -> Result<(), ServerError> {
    dash_rpc::tls::init_crypto();
    let v = validate(&args)?;
    let data = args.node.data_dir.clone();
    let api_addr = SocketAddr::new(v.advertise, args.worker_port);

    let node = Node::open(v.node)?;
    let (membership, identity) = match v.joining {
        Joining::Member(membership, identity) => {
            tracing::info!(master = %membership.master, node = %membership.node, "joined before; reconnecting");
            (membership, identity)
        }
        Joining::Join { token, master } => master_link::join(
            &data,
            JoinRequestInfo {
                token: &token,
                master: &master,
                node: &v.name,
                advertise_addr: &api_addr.to_string(),
                capacity: node.capacity(),
                labels: &v.labels,
                runtime: &node.runtime().kind().to_string(),
            },
        )
        .await
        .with_context(|| format!("joining via {master}"))?,
    };
    if JoinFlags::load(&data).is_none() {
        // Joined now (or by a version that did not record the flags): remember what counted.
        v.given.save(&data).context("recording the join flags")?;
    }
    tracing::info!(node = %membership.node, subnet = %membership.subnet, "member of the cluster");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let member = Member::connect(
        &node,
        MemberConfig {
            membership,
            identity,
            api_addr,
        },
        shutdown_rx.clone(),
    )?;
    let node = node.with_network(member.subnet()?).await?;
    let store = node.node().open_store().await?;
    let telemetry = node.telemetry(&member.node_name(), Some(store.clone()));
    let metrics = daemon::serve_metrics(
        args.node
            .metrics_listen
            .as_deref()
            .unwrap_or("127.0.0.1:9180"),
        telemetry,
        shutdown_rx.clone(),
    )
    .await?;
    let trim = crate::memory::spawn_trim(shutdown_rx.clone());
    let tasks = member.start(node, store, shutdown_rx);

    daemon::wait_for_signal().await;
    tracing::info!("shutting down; containers keep running");
    let _ = shutdown_tx.send(true);
    tasks.join().await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    let _ = trim.await;
    Ok(())
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
