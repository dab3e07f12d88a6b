//! `dash sim` (no subcommand): runs a simulated fleet (`crates/dash-sim`) until SIGINT or
//! SIGTERM. Its flags are checked, and the fleet's memory estimated, before anything joins
//! (exit 64); a first join the masters refuse (a token of the wrong role, revoked, another
//! cluster's) ends it with that refusal (exit 1).

use dash_cli::commands::sim::SimRunArgs;
use dash_sim::{SimConfig, SimFlags};

use crate::daemon::{self, ServerError};

pub async fn run(args: SimRunArgs) -> Result<(), ServerError> {
    let join = args.join.clone().ok_or_else(|| {
        ServerError::Config(
            "dash sim: give --join TOKEN@MASTER:PORT (a token of `dash token create --role worker`), or a subcommand: kill, report".into(),
        )
    })?;
    let flags = SimFlags {
        join,
        workers: args.workers,
        cpu: args.cpu,
        memory: args.memory,
        start_time: args.start_time,
        fail_rate: args.fail_rate,
        labels: args.labels,
        name_prefix: args.name_prefix,
        join_rate: args.join_rate,
        control: args.control,
        replicas_per_worker: args.replicas_per_worker,
    };
    let cfg =
        SimConfig::from_flags(&flags, dash_sim::available_memory()).map_err(ServerError::Config)?;
    // The links' image store is never written (simulated containers fetch nothing), but a
    // link needs one: a private scratch directory, removed at the end.
    let scratch = std::env::temp_dir().join(format!("dash-sim-{}", std::process::id()));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        daemon::wait_for_signal().await;
        let _ = stop.send(true);
    });
    let result = dash_sim::run(cfg, &scratch, shutdown).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result.map_err(|e| ServerError::Other(e.into()))
}
