//! `dash network`: the networks services name, their services and rules.

use clap::Subcommand;
use dash_core::api::NetworkInfo;

use crate::client::Client;
use crate::output::Table;
use crate::{encode, print_json};

/// `dash network …`.
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Every network a service names: its services and live replicas.
    Ls,
    /// One network: its services (virtual IPs, ports, ready replicas) and the rules every
    /// node enforces for it.
    Inspect {
        /// The network's name (as services name it in `networks`).
        name: String,
    },
}

/// Runs `dash network …`.
pub async fn run(client: &Client, json: bool, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Ls => {
            let networks: Vec<NetworkInfo> = client.get("/v1/networks").await?;
            if json {
                print_json(&networks);
            } else {
                let mut t = Table::new(["NETWORK", "SERVICES", "REPLICAS"]);
                for n in networks {
                    let services: Vec<&str> = n.services.iter().map(|s| s.name.as_str()).collect();
                    t.row([n.name.clone(), services.join(","), n.replicas.to_string()]);
                }
                t.print();
            }
        }
        NetworkCmd::Inspect { name } => {
            let n: NetworkInfo = client
                .get(&format!("/v1/networks/{}", encode(&name)))
                .await?;
            // The inspection is structured data either way (as `dash service inspect`).
            print_json(&n);
        }
    }
    Ok(())
}
