//! `dash node`: the nodes of the cluster; drain, activate, label and remove them.

use clap::Subcommand;
use dash_core::api::NodeInfo;

use crate::client::Client;
use crate::output::Table;
use crate::{print_json, to_json};

/// What `dash node ls` prints; its help names them.
pub(crate) const LS_COLUMNS: [&str; 10] = [
    "ID", "ROLE", "RAFT", "STATE", "ADDRESS", "SUBNET", "RUNTIME", "REPLICAS", "CPU", "MEMORY",
];

/// `dash node …`.
#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes: id, role, raft (a master's: leader, follower, learner), state, address,
    /// subnet, runtime, replicas, CPU, memory.
    Ls,
    /// One node, as JSON.
    Inspect {
        /// The node's id, as `dash node ls` shows it.
        node: String,
    },
    /// Move a node's replicas elsewhere (each started before the old one stops); it takes no
    /// new ones until activated.
    Drain {
        /// The node's id, as `dash node ls` shows it.
        node: String,
    },
    /// Let a drained node take replicas again.
    Activate {
        /// The node's id, as `dash node ls` shows it.
        node: String,
    },
    /// Set labels (KEY=VALUE) or remove them (KEY-), e.g. `dash node label n1 zone=a disk-`.
    Label {
        /// The node's id, as `dash node ls` shows it.
        node: String,
        /// KEY=VALUE to set a label, KEY- to remove one.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Forget a node: its replicas start elsewhere and its certificate is refused; a master
    /// also leaves the masters' membership (the leader cannot be removed: stop it first).
    Rm {
        /// The node's id, as `dash node ls` shows it.
        node: String,
        /// Even if it is still ready.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `dash node …`.
pub async fn run(client: &Client, json: bool, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Ls => {
            let nodes: Vec<NodeInfo> = client.get("/v1/nodes").await?;
            if json {
                print_json(&nodes);
            } else {
                let mut t = Table::new(LS_COLUMNS);
                for n in nodes {
                    t.row([
                        n.id,
                        n.role.as_str().into(),
                        n.raft.unwrap_or_else(|| "-".into()),
                        n.state.as_str().into(),
                        n.address,
                        n.subnet,
                        n.runtime,
                        n.replicas.to_string(),
                        format!("{:.1}", f64::from(n.capacity.cpu_millis) / 1000.0),
                        dash_core::units::format_size(n.capacity.memory_bytes),
                    ]);
                }
                t.print();
            }
        }
        NodeCmd::Inspect { node } => {
            let n: NodeInfo = client.get(&format!("/v1/nodes/{node}")).await?;
            print_json(&n);
        }
        NodeCmd::Drain { node } => {
            let n: NodeInfo = client
                .post(&format!("/v1/nodes/{node}/drain"), &serde_json::json!({}))
                .await?;
            println!("{}", state_change(&n, json));
        }
        NodeCmd::Activate { node } => {
            let n: NodeInfo = client
                .post(
                    &format!("/v1/nodes/{node}/activate"),
                    &serde_json::json!({}),
                )
                .await?;
            println!("{}", state_change(&n, json));
        }
        NodeCmd::Label { node, labels } => {
            let mut set = serde_json::Map::new();
            let mut remove = Vec::new();
            for l in labels {
                match l.split_once('=') {
                    Some((k, v)) => {
                        set.insert(k.to_string(), serde_json::Value::String(v.to_string()));
                    }
                    None => match l.strip_suffix('-') {
                        Some(k) => remove.push(k.to_string()),
                        None => {
                            anyhow::bail!("label {l:?}: use KEY=VALUE to set or KEY- to remove")
                        }
                    },
                }
            }
            let n: NodeInfo = client
                .post(
                    &format!("/v1/nodes/{node}/labels"),
                    &serde_json::json!({"set": set, "remove": remove}),
                )
                .await?;
            if json {
                print_json(&n);
            } else {
                let text: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{} {}", n.id, text.join(","));
            }
        }
        NodeCmd::Rm { node, force } => {
            let n: NodeInfo = client
                .delete(&format!("/v1/nodes/{node}?force={force}"))
                .await?;
            if json {
                print_json(&n);
            } else {
                println!("removed {}", n.id);
            }
        }
    }
    Ok(())
}

/// What `dash node drain` and `activate` print: `ID STATE`, or with `-o json` the node as the
/// admin API returns it after the change (as `dash node inspect` shows it).
fn state_change(n: &NodeInfo, json: bool) -> String {
    if json {
        to_json(n)
    } else {
        format!("{} {}", n.id, n.state.as_str())
    }
}

#[cfg(test)]
#[path = "node_test.rs"]
mod tests;
