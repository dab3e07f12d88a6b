//! `dash logs`: the merged logs of a service's replicas, of one replica, or of a service's
//! removed replicas (`--previous`).

use clap::Args;
use dash_core::api::LogLine;

use crate::client::Client;
use crate::encode;

/// `dash logs [-f] [--tail N] [--previous] SERVICE|REPLICA`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// A service's name (its replicas' logs, merged), or a replica's id (that replica's log,
    /// also after it was removed: removed replicas' logs are kept 24 h, within 64 MiB a node).
    #[arg(value_name = "SERVICE|REPLICA")]
    pub service: String,
    /// The logs of the service's removed replicas instead (replaced by an update or a
    /// rollback, scaled down, drained), as `kubectl logs --previous`.
    #[arg(long)]
    pub previous: bool,
    /// Keep printing lines as the replicas write them.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines of each replica.
    #[arg(long)]
    pub tail: Option<usize>,
}

/// Runs `dash logs`: each line prefixed by its replica, or as the server sends it with `-o json`.
pub async fn run(client: &Client, json: bool, args: LogsArgs) -> anyhow::Result<()> {
    let LogsArgs {
        service,
        previous,
        follow,
        tail,
    } = args;
    let mut path = format!("/v1/logs/{}?follow={follow}", encode(&service));
    if previous {
        path.push_str("&previous=true");
    }
    if let Some(n) = tail {
        path.push_str(&format!("&tail={n}"));
    }
    client
        .stream(&path, |line| {
            if json {
                println!("{line}");
            } else if let Ok(l) = serde_json::from_str::<LogLine>(line) {
                println!("{} | {}", l.replica, l.line);
            }
        })
        .await?;
    Ok(())
}
