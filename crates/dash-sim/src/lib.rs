//! `dash sim`: thousands of simulated workers in one process, against real masters.
//!
//! Each simulated worker is a node as the masters see it (its own key and certificate from a
//! real join with a token, its own mutual-TLS connection, heartbeats, the assignment watch,
//! status reports) through the same client code real workers run
//! (`dash_worker::master_link`); only its containers are simulated ([`node`]), through the
//! real sentry with a configured start time and failure rate. It finds where the masters'
//! design stops scaling, and it lets an operator rehearse a change against a simulated copy of
//! a cluster.
//!
//! - [`config`]: the flags, checked (and the fleet's memory estimated) before anything joins
//! - [`fleet`]: joins at a pace, kills on request
//! - [`node`]: one simulated worker's containers
//! - [`stats`]: what the fleet saw (`dash sim report`)
//! - [`control`]: the HTTP endpoint `dash sim kill` and `dash sim report` use

pub mod config;
pub mod control;
pub mod fleet;
pub mod node;
pub mod stats;

pub use config::{SimConfig, SimFlags};
pub use dash_core::sim::{Killed, Report};
pub use fleet::{Fleet, SimError};

/// Runs the simulation until `shutdown`: binds the control endpoint, joins the fleet, keeps it
/// until told to stop; `scratch` is a directory it may use (and leaves empty).
pub async fn run(
    cfg: SimConfig,
    scratch: &std::path::Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), SimError> {
    let listener = tokio::net::TcpListener::bind(cfg.control)
        .await
        .map_err(|source| SimError::Control {
            addr: cfg.control.to_string(),
            source,
        })?;
    let fleet = Fleet::new(cfg, scratch, shutdown.clone())?;
    let app = control::router(fleet.clone());
    let mut stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
    });
    tracing::info!(
        workers = fleet.config().workers,
        master = %fleet.config().master,
        control = %fleet.config().control,
        "simulation starting"
    );
    let joined = fleet.join_all().await;
    if let Err(e) = joined {
        // Nothing joined: the control endpoint has nothing to tell.
        server.abort();
        return Err(e);
    }
    let mut end = shutdown;
    if !*end.borrow() {
        let _ = end.changed().await;
    }
    fleet.wait_all().await;
    let _ = server.await;
    Ok(())
}

/// This machine's free memory (`MemAvailable`), for the fleet's estimate.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
