//! `dash logs`: the merged logs of a service's replicas.

use clap::Args;
use dash_core::api::LogLine;

use crate::client::Client;
use crate::encode;

/// `dash logs [-f] [--tail N] SERVICE`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The service's name.
    pub service: String,
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
        follow,
        tail,
    } = args;
    let mut path = format!("/v1/logs/{}?follow={follow}", encode(&service));
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
