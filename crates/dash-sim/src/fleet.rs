//! The simulated fleet: joins its workers at the pace asked, keeps them, kills some on
//! request, and sums what they saw.
//!
//! ```text
//!  dash sim ─► SimConfig ─► first join (a bad token or role stops everything here, clearly)
//!                         ─► the other joins, --join-rate per second, a few at a time
//!                              each: GrpcLink (heartbeats, watch) + SimNode (containers)
//!  control (HTTP on --control): GET /v1/sim/report, POST /v1/sim/kill {"workers": N}
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use dash_image::ImageStore;
use dash_worker::master_link::{self, GrpcLink, JoinRequestInfo, MasterLinkError};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::node::{Shared, SimNode};
use crate::stats::{Report, Stats};
pub use dash_core::sim::Killed;

/// Joins in flight at once (each is a key pair, a CSR and one entry of the masters' log).
const JOINS_IN_FLIGHT: usize = 32;
/// Tries of a join that met no master or no leader.
const JOIN_TRIES: u32 = 20;

struct Worker {
    name: String,
    link: Arc<GrpcLink>,
    kill: watch::Sender<bool>,
    /// Ends the link's heartbeats and watch at once (a killed machine says nothing more,
    /// whatever its containers' loop is doing).
    stop_link: watch::Sender<bool>,
    task: Option<JoinHandle<u64>>,
}

/// The fleet.
pub struct Fleet {
    cfg: SimConfig,
    shared: Arc<Shared>,
    images: Arc<ImageStore>,
    workers: Mutex<Vec<Worker>>,
    shutdown: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the first simulated worker could not join: {0}")]
    FirstJoin(String),
    #[error("the image store of the simulation at {path}: {source}")]
    Images {
        path: String,
        #[source]
        source: dash_image::ImageError,
    },
    #[error("--control {addr}: {source} (another `dash sim` running? give another --control)")]
    Control {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl Fleet {
    /// A fleet for `cfg`; `scratch` holds the (unused but required) image store of the links.
    pub fn new(
        cfg: SimConfig,
        scratch: &std::path::Path,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Fleet>, SimError> {
        let images = ImageStore::open(scratch).map_err(|source| SimError::Images {
            path: scratch.display().to_string(),
            source,
        })?;
        Ok(Arc::new(Fleet {
            shared: Arc::new(Shared {
                start_time: cfg.start_time,
                fail_rate: cfg.fail_rate,
                stats: Arc::new(Stats::default()),
            }),
            cfg,
            images: Arc::new(images),
            workers: Mutex::new(Vec::new()),
            shutdown,
        }))
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Joins every worker: the first alone (its refusal is the answer for all), the rest at
    /// `--join-rate`. Returns once all joined or the joins were refused.
    pub async fn join_all(self: &Arc<Self>) -> Result<(), SimError> {
        let began = Instant::now();
        self.join_one(0).await.map_err(SimError::FirstJoin)?;
        let gate = Arc::new(Semaphore::new(JOINS_IN_FLIGHT));
        let pace = Duration::from_secs_f64(1.0 / f64::from(self.cfg.join_rate));
        let mut next = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 1..self.cfg.workers {
            if *self.shutdown.borrow() || self.refused() {
                break;
            }
            next += pace;
            tokio::time::sleep_until(next).await;
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            let fleet = self.clone();
            tasks.push(tokio::spawn(async move {
                let r = fleet.join_one(i).await;
                drop(permit);
                if let Err(e) = r {
                    tracing::warn!(worker = i + 1, error = %e, "simulated worker not joined");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let joined = self
            .shared
            .stats
            .joined
            .load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            joined,
            asked = self.cfg.workers,
            seconds = began.elapsed().as_secs_f64(),
            "simulated workers joined"
        );
        Ok(())
    }

    fn refused(&self) -> bool {
        self.shared
            .stats
            .join_refusal
            .lock()
            .map(|r| r.is_some())
            .unwrap_or(false)
    }

    /// Joins worker `i` (retrying while no master or leader answers) and starts it.
    async fn join_one(self: &Arc<Self>, i: u32) -> Result<(), String> {
        let name = self.cfg.worker_name(i);
        let labels = self.cfg.worker_labels(i);
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        let (membership, identity) = loop {
            tries += 1;
            let req = JoinRequestInfo {
                token: &self.cfg.token,
                master: &self.cfg.master,
                node: &name,
                // Nothing listens there: a simulated node has no worker_api (logs and exec of
                // its replicas are refused), and no data path for other nodes' routes.
                advertise_addr: "127.0.0.1:9",
                capacity: self.cfg.capacity,
                labels: &labels,
                runtime: dash_core::sim::SIMULATED_RUNTIME,
            };
            match master_link::request_join(req).await {
                Ok(joined) => break joined,
                Err(
                    e @ (MasterLinkError::Unreachable { .. } | MasterLinkError::Connect { .. }),
                ) if tries < JOIN_TRIES => {
                    tracing::debug!(worker = %name, error = %dash_core::link::with_causes(&e), "join: trying again");
                    self.shared
                        .stats
                        .join_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    let why = dash_core::link::with_causes(&e);
                    self.shared
                        .stats
                        .join_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if matches!(e, MasterLinkError::JoinRefused { .. })
                        && let Ok(mut r) = self.shared.stats.join_refusal.lock()
                    {
                        *r = Some(format!("{name}: {why}"));
                    }
                    return Err(why);
                }
            }
        };
        let (kill, killed) = watch::channel(false);
        // The link's loops end with the worker's kill or the simulation's end.
        let (stop_link, link_stop) = watch::channel(false);
        let link = GrpcLink::start(
            (None, &membership),
            identity,
            name.clone(),
            self.cfg.capacity,
            self.images.clone(),
            link_stop,
        )
        .map_err(|e| dash_core::link::with_causes(&e))?;
        let node = SimNode::new(
            name.clone(),
            &membership.subnet,
            link.clone(),
            self.shared.clone(),
        );
        let mut end = self.shutdown.clone();
        let mut kill_rx = killed.clone();
        let stop_at_end = stop_link.clone();
        let task = tokio::spawn(async move {
            let held = node.run(killed).await;
            let _ = stop_at_end.send(true);
            held
        });
        // The simulation's end kills every worker.
        let kill_on_end = kill.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = end.changed() => { let _ = kill_on_end.send(true); }
                _ = kill_rx.changed() => {}
            }
        });
        self.shared
            .stats
            .joined
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.workers.lock().await.push(Worker {
            name,
            link,
            kill,
            stop_link,
            task: Some(task),
        });
        Ok(())
    }

    /// Silences `n` live workers at once (the lowest-numbered first) and waits until they are
    /// silent; says which and how many replicas they held.
    pub async fn kill(&self, n: u32) -> Result<Killed, String> {
        let mut workers = self.workers.lock().await;
        let live: Vec<usize> = (0..workers.len())
            .filter(|i| workers[*i].task.is_some())
            .collect();
        if n == 0 || n as usize > live.len() {
            return Err(format!(
                "--workers {n}: give between 1 and {} (the workers alive now)",
                live.len()
            ));
        }
        let serving = self.shared.stats.serving_now();
        let chosen: Vec<usize> = live.into_iter().take(n as usize).collect();
        let mut tasks = Vec::new();
        let mut names = Vec::new();
        for i in chosen {
            let w = &mut workers[i];
            let _ = w.stop_link.send(true);
            let _ = w.kill.send(true);
            names.push(w.name.clone());
            if let Some(t) = w.task.take() {
                tasks.push(t);
            }
        }
        drop(workers);
        let mut replicas = 0;
        for t in tasks {
            replicas += t.await.unwrap_or(0);
        }
        self.shared
            .stats
            .mark_kill(names.len() as u64, replicas, serving);
        tracing::info!(workers = names.len(), replicas, "simulated workers killed");
        Ok(Killed {
            workers: names,
            replicas,
        })
    }

    /// What the fleet saw so far.
    pub async fn report(&self) -> Report {
        let workers = self.workers.lock().await;
        let live: Vec<_> = workers
            .iter()
            .filter(|w| w.task.is_some())
            .map(|w| w.link.beat_stats())
            .collect();
        self.shared
            .stats
            .report(u64::from(self.cfg.workers), live.len() as u64, &live)
    }

    /// Waits for every worker's task to end (after the simulation's shutdown).
    pub async fn wait_all(&self) {
        let tasks: Vec<_> = self
            .workers
            .lock()
            .await
            .iter_mut()
            .filter_map(|w| w.task.take())
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
