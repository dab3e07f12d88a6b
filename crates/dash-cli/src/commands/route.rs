//! `dash route`: the built-in proxy's routing table.

use clap::Subcommand;
use dash_core::api::RouteInfo;

use crate::client::Client;
use crate::output::Table;
use crate::print_json;

/// `dash route …`.
#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// The routing table: each route, its counters summed over every node's proxy, and its
    /// upstreams' state.
    Ls {
        /// One row per route and node: each node's proxy's own counters.
        #[arg(long)]
        per_node: bool,
    },
}

/// Runs `dash route …`.
pub async fn run(client: &Client, json: bool, cmd: RouteCmd) -> anyhow::Result<()> {
    match cmd {
        RouteCmd::Ls { per_node } => {
            let routes: Vec<RouteInfo> = client
                .get(if per_node {
                    "/v1/routes?per_node=true"
                } else {
                    "/v1/routes"
                })
                .await?;
            if json {
                print_json(&routes);
            } else {
                let mut columns = vec![
                    "HOST",
                    "PATH",
                    "SERVICE",
                    "PORT",
                    "REQUESTS",
                    "RPS",
                    "2XX",
                    "4XX",
                    "5XX",
                    "ERRORS",
                    "UPSTREAMS",
                ];
                if per_node {
                    columns.insert(0, "NODE");
                }
                let mut t = Table::new(columns);
                for r in routes {
                    let ups: Vec<String> = r
                        .upstreams
                        .iter()
                        .map(|u| format!("{} {} ({})", u.replica, u.addr, u.state))
                        .collect();
                    let path = if r.strip_prefix {
                        format!("{} (stripped)", r.path_prefix)
                    } else {
                        r.path_prefix.clone()
                    };
                    let mut row = vec![
                        r.host,
                        path,
                        r.service,
                        r.port.to_string(),
                        r.requests.to_string(),
                        format!("{:.1}", r.requests_per_second),
                        r.status[1].to_string(),
                        r.status[3].to_string(),
                        r.status[4].to_string(),
                        r.errors.to_string(),
                        if ups.is_empty() {
                            "none".into()
                        } else {
                            ups.join(", ")
                        },
                    ];
                    if per_node {
                        row.insert(0, r.node.unwrap_or_default());
                    }
                    t.row(row);
                }
                t.print();
            }
        }
    }
    Ok(())
}
