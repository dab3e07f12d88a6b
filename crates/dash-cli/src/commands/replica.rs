//! `dash ps` and `dash stats`: the replicas, where they run and what they use.

use clap::Args;
use dash_core::api::ReplicaInfo;

use crate::client::Client;
use crate::output::{Table, age_since};
use crate::{encode, print_json};

/// What `dash ps` prints; its help names them.
pub(crate) const PS_COLUMNS: [&str; 9] = [
    "ID", "SERVICE", "VERSION", "NODE", "STATE", "IP", "RESTARTS", "AGE", "MESSAGE",
];

/// `dash ps [SERVICE]`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Only this service's replicas.
    pub service: Option<String>,
}

/// `dash stats [SERVICE]`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Only this service's replicas.
    pub service: Option<String>,
}

/// Runs `dash ps`.
pub async fn ps(client: &Client, json: bool, args: PsArgs) -> anyhow::Result<()> {
    let path = match &args.service {
        Some(s) => format!("/v1/replicas?service={}", encode(s)),
        None => "/v1/replicas".into(),
    };
    let replicas: Vec<ReplicaInfo> = client.get(&path).await?;
    if json {
        print_json(&replicas);
    } else {
        let mut t = Table::new(PS_COLUMNS);
        for r in replicas {
            let state = if r.desired == dash_core::api::DesiredState::Remove
                && r.state != dash_core::api::ReplicaState::Stopping
            {
                format!("{} (removing)", r.state.as_str())
            } else {
                r.state.as_str().to_string()
            };
            t.row([
                r.id,
                r.service,
                r.version.to_string(),
                r.node.unwrap_or_else(|| "-".into()),
                state,
                r.ip.unwrap_or_else(|| "-".into()),
                r.restarts.to_string(),
                age_since(r.started_ms.unwrap_or(r.created_ms)),
                r.message,
            ]);
        }
        t.print();
    }
    Ok(())
}

/// Runs `dash stats`.
pub async fn stats(client: &Client, json: bool, args: StatsArgs) -> anyhow::Result<()> {
    let path = match &args.service {
        Some(s) => format!("/v1/stats?service={}", encode(s)),
        None => "/v1/stats".into(),
    };
    let stats: Vec<dash_core::api::ReplicaStats> = client.get(&path).await?;
    if json {
        print_json(&stats);
    } else {
        let mut t = Table::new([
            "REPLICA", "SERVICE", "NODE", "CPU %", "OF LIMIT", "MEMORY", "LIMIT",
        ]);
        let percent = |p: Option<f64>| p.map_or_else(|| "-".into(), |p| format!("{p:.1}%"));
        for r in stats {
            t.row([
                r.replica,
                r.service,
                r.node.unwrap_or_else(|| "-".into()),
                percent(r.cpu_percent),
                percent(r.cpu_percent_of_limit),
                r.memory_bytes.map_or_else(|| "-".into(), human_bytes),
                r.memory_limit_bytes.map_or_else(|| "-".into(), human_bytes),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// Bytes in binary units: `12.3MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}
