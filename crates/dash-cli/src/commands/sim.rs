//! `dash sim`: a simulated fleet of workers against real masters (the simulation itself is
//! `crates/dash-sim`, run by the binary), and `dash sim kill` / `dash sim report`, which ask
//! a running simulation over its control endpoint.

use clap::{Args, Subcommand};
use dash_core::sim::{KillRequest, Killed, Report};

use crate::client::{Client, ClientError};
use crate::output::Table;
use crate::print_json;

/// `dash sim`: with no subcommand, runs a simulated fleet until SIGINT/SIGTERM.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCmd>,
    #[command(flatten)]
    pub run: SimRunArgs,
}

/// The fleet to simulate.
#[derive(Args, Debug, Clone)]
pub struct SimRunArgs {
    /// `TOKEN@MASTER:PORT`, as for `dash worker` (a token of role worker; every simulated
    /// worker joins with it).
    #[arg(long, value_name = "TOKEN@MASTER:PORT")]
    pub join: Option<String>,
    /// How many workers to simulate (1 to 100000).
    #[arg(long, default_value_t = 100)]
    pub workers: u32,
    /// Each simulated worker's cores (8, 0.5, 500m).
    #[arg(long, default_value = "8")]
    pub cpu: String,
    /// Each simulated worker's memory (32GiB, 512MiB).
    #[arg(long, default_value = "32GiB")]
    pub memory: String,
    /// How long a simulated container takes to start.
    #[arg(long, default_value = "50ms")]
    pub start_time: String,
    /// The share of starts that fail (0 to 1); the service's restart policy decides then.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Labels spread over the workers in turn: `zone=a,zone=b,zone=c` gives a third of them
    /// each zone; keys combine (`zone=a,zone=b,rack=r1`).
    #[arg(long, value_name = "KEY=VALUE,…")]
    pub labels: Vec<String>,
    /// Workers are named PREFIX-00001, PREFIX-00002, …
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    /// Joins started per second.
    #[arg(long, default_value_t = 200)]
    pub join_rate: u32,
    /// Replicas each worker is expected to hold, for the estimate of the memory the fleet
    /// needs here (a fleet that would not fit is refused before anything joins).
    #[arg(long, default_value_t = 100)]
    pub replicas_per_worker: u32,
    /// Where `dash sim kill` and `dash sim report` reach this simulation (plain HTTP; keep it
    /// on loopback).
    #[arg(long, env = "DASH_SIM_CONTROL", default_value = "127.0.0.1:7090")]
    pub control: String,
    /// Log level of the simulation.
    #[arg(long, env = "DASH_LOG", default_value = "warn")]
    pub log_level: String,
}

/// `dash sim kill|report`.
#[derive(Subcommand, Debug, Clone)]
pub enum SimCmd {
    /// Silence N simulated workers at once (no goodbye, as a machine that dies): the masters
    /// find them down after --node-down-after and start their replicas elsewhere.
    Kill {
        /// How many live workers to silence (1 to the number alive).
        #[arg(long)]
        workers: u32,
        /// The simulation's --control endpoint.
        #[arg(long, env = "DASH_SIM_CONTROL", default_value = "127.0.0.1:7090")]
        control: String,
    },
    /// What the simulated fleet saw: workers, replicas by state, placements per second, time
    /// from the first placement to all running, heartbeat round trips and lateness, the last
    /// kill and when its replicas ran elsewhere.
    Report {
        /// The simulation's --control endpoint.
        #[arg(long, env = "DASH_SIM_CONTROL", default_value = "127.0.0.1:7090")]
        control: String,
    },
}

fn control_client(control: &str) -> Client {
    Client::new(control.to_string(), None)
}

fn unreachable(control: &str, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Connect { source, .. } => anyhow::anyhow!(
            "cannot reach the simulation's control endpoint at {control} ({source}); is `dash sim` running? (--control / DASH_SIM_CONTROL)"
        ),
        e => e.into(),
    }
}

/// Runs `dash sim kill|report`.
pub async fn run(json: bool, cmd: SimCmd) -> anyhow::Result<()> {
    match cmd {
        SimCmd::Kill { workers, control } => {
            let k: Killed = control_client(&control)
                .post("/v1/sim/kill", &KillRequest { workers })
                .await
                .map_err(|e| unreachable(&control, e))?;
            if json {
                print_json(&k);
            } else {
                let shown: Vec<_> = k.workers.iter().take(5).cloned().collect();
                let more = k.workers.len().saturating_sub(shown.len());
                println!(
                    "killed {} simulated workers ({}{}) holding {} replicas",
                    k.workers.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    },
                    k.replicas
                );
            }
        }
        SimCmd::Report { control } => {
            let r: Report = control_client(&control)
                .get("/v1/sim/report")
                .await
                .map_err(|e| unreachable(&control, e))?;
            if json {
                print_json(&r);
            } else {
                print_report(&r);
            }
        }
    }
    Ok(())
}

fn print_report(r: &Report) {
    let ms = |v: Option<u64>| {
        v.map_or_else(
            || "-".to_string(),
            |m| format!("{:.1} s", m as f64 / 1000.0),
        )
    };
    let mut t = Table::new(["WHAT", "VALUE"]);
    t.row([
        "workers".to_string(),
        format!(
            "{} asked, {} joined, {} live, {} killed",
            r.workers, r.joined, r.live, r.killed
        ),
    ]);
    if let Some(why) = &r.join_refusal {
        t.row(["joins refused".to_string(), why.clone()]);
    }
    let states: Vec<String> = r.by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
    t.row([
        "replicas".to_string(),
        format!(
            "{} held ({}){}",
            r.replicas,
            if states.is_empty() {
                "none".to_string()
            } else {
                states.join(", ")
            },
            if r.converged { ", all running" } else { "" }
        ),
    ]);
    t.row([
        "placements".to_string(),
        format!(
            "{} ({} /s at peak, {} /s on average)",
            r.placements, r.placements_per_s_peak, r.placements_per_s_mean
        ),
    ]);
    t.row([
        "time to all running".to_string(),
        ms(r.time_to_all_running_ms),
    ]);
    t.row([
        "starts".to_string(),
        format!("{} ({} failed)", r.starts, r.start_failures),
    ]);
    t.row([
        "reports".to_string(),
        format!(
            "{} ({} failed), {} removals",
            r.reports, r.report_failures, r.removals
        ),
    ]);
    t.row([
        "heartbeats".to_string(),
        format!(
            "{} answered, {} failed; round trip p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; latest {} ms late at worst",
            r.heartbeats_ok,
            r.heartbeats_failed,
            r.heartbeat_rtt_p50_ms,
            r.heartbeat_rtt_p99_ms,
            r.heartbeat_rtt_max_ms,
            r.heartbeat_late_max_ms
        ),
    ]);
    if let Some(k) = &r.last_kill {
        t.row([
            "last kill".to_string(),
            format!(
                "{} workers with {} replicas, {} ago; replacements arrived from {} to {}; as many serving as before (>= {}) after {}",
                k.workers,
                k.replicas,
                ms(Some(k.ago_ms)),
                ms(k.first_new_after_ms),
                ms(k.last_new_after_ms),
                k.running_before,
                ms(k.recovered_after_ms)
            ),
        ]);
    }
    t.print();
}
