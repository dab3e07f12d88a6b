//! This node's /metrics: its replicas' resource use with cAdvisor's `container_*` names (so
//! that existing Grafana dashboards work), their restarts, and its proxy's requests by route
//! and status with latency histograms. Read at scrape time, nothing kept between scrapes:
//! the cost is one read of a few cgroup and sysfs files per replica per scrape.
//!
//! ```text
//!  GET /metrics ─► Telemetry::render ─┬─ worker store: replicas (service, image, restarts)
//!                                     ├─ cgroups: CPU, memory, limit, OOM kills  (blocking)
//!                                     ├─ /sys/class/net/<host veth>/statistics   (blocking)
//!                                     └─ proxy counters
//! ```
//!
//! Served on the admin API's /metrics of a master (with the master's own series) and on
//! `--metrics-listen` of any node daemon ([`serve`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dash_proxy::ProxyHandle;
use dash_rpc::exposition::{self, Kind, Labels, Snapshot};
use dash_runtime::container::ContainerRuntime;
use dash_store::WorkerStore;
use tokio::sync::watch;

/// Time this process spent collecting: the 2 s measurement (`Sample`) and /metrics
/// scrapes (`Scrape`), in ns, and how many of each: what collection costs, measured by
/// itself (`dash_node_collection_seconds_total`).
static COLLECTION: [(AtomicU64, AtomicU64); 2] = [
    (AtomicU64::new(0), AtomicU64::new(0)),
    (AtomicU64::new(0), AtomicU64::new(0)),
];

/// A kind of collection work.
#[derive(Debug, Clone, Copy)]
pub enum Collection {
    Sample = 0,
    Scrape = 1,
}

/// Counts the time since `started` as collection work of `kind`.
pub fn collection_time(kind: Collection, started: std::time::Instant) {
    let (ns, n) = &COLLECTION[kind as usize];
    ns.fetch_add(
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    n.fetch_add(1, Ordering::Relaxed);
}

/// How a replica's last run ended, as kube-state-metrics names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Exit code 0.
    Completed,
    /// The kernel's OOM killer struck in its cgroup.
    OomKilled,
    /// Any other non-zero exit.
    Error,
}

impl Termination {
    fn reason(self) -> &'static str {
        match self {
            Termination::Completed => "Completed",
            Termination::OomKilled => "OOMKilled",
            Termination::Error => "Error",
        }
    }
}

/// What a node remembers of a replica's past runs.
#[derive(Debug, Clone, Copy, Default)]
struct Runs {
    /// OOM kills recorded at its exits on this node.
    oom_kills: u64,
    /// Of those, the ones of the run whose container (and cgroup) is still there: exited and
    /// not started again yet. 0 once a new container runs.
    in_current_cgroup: u64,
    last: Option<Termination>,
}

/// Per replica of this node (a container's own cgroup counts again from 0 with each
/// restart); forgotten when the replica is torn down.
static RUNS: std::sync::Mutex<Option<HashMap<String, Runs>>> = std::sync::Mutex::new(None);

fn with_runs<T>(f: impl FnOnce(&mut HashMap<String, Runs>) -> T) -> T {
    let mut runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    f(runs.get_or_insert_with(HashMap::new))
}

/// Records how a run of `replica` ended (`oom_kills`: the kills its cgroup counted).
pub fn terminated(replica: &str, how: Termination, oom_kills: u64) {
    with_runs(|runs| {
        let r = runs.entry(replica.to_string()).or_default();
        r.oom_kills += oom_kills;
        r.in_current_cgroup = oom_kills;
        r.last = Some(how);
    });
}

/// A new container of `replica` runs (its cgroup counts from 0).
pub fn started(replica: &str) {
    with_runs(|runs| {
        if let Some(r) = runs.get_mut(replica) {
            r.in_current_cgroup = 0;
        }
    });
}

/// Forgets a replica that is gone from this node.
pub fn forget(replica: &str) {
    with_runs(|runs| runs.remove(replica));
}

/// OOM kills over the replica's life on this node, given its container's cgroup count now.
fn oom_kills(runs: Runs, cgroup_count: u64) -> u64 {
    runs.oom_kills - runs.in_current_cgroup + cgroup_count.max(runs.in_current_cgroup)
}

/// What is read of one container.
#[derive(Debug, Default)]
struct Reading {
    id: String,
    cpu_ns: u64,
    memory: u64,
    limit: Option<u64>,
    oom_kills: u64,
    /// The host end's `[rx_bytes, tx_bytes, rx_packets, tx_packets]`: rx there is what the
    /// container sent.
    veth: Option<[u64; 4]>,
}

/// The series of this node.
pub struct Telemetry {
    node: String,
    runtime: Option<Arc<ContainerRuntime>>,
    store: Option<WorkerStore>,
    proxy: ProxyHandle,
}

const CPU: &str = "Cumulative cpu time consumed in seconds.";
const WORKING_SET: &str =
    "Current working set in bytes (memory in use without inactive page cache).";
const LIMIT: &str = "Memory limit for the container in bytes (0: none).";
const OOM: &str =
    "Count of out of memory kills in the container over the replica's life on this node.";
const LAST_TERMINATED: &str = "How the replica's last run ended (reason OOMKilled, Error or Completed), as kube-state-metrics' kube_pod_container_status_last_terminated_reason.";
const RX_BYTES: &str = "Cumulative count of bytes received.";
const TX_BYTES: &str = "Cumulative count of bytes transmitted.";
const RX_PACKETS: &str = "Cumulative count of packets received.";
const TX_PACKETS: &str = "Cumulative count of packets transmitted.";
const RESTARTS: &str = "Restarts of the replica on this node since it was created.";
const REQUESTS: &str = "Requests the node's proxy answered, by route and status class.";
const ERRORS: &str = "Requests no upstream answered (the proxy's own 502/503/504), by route.";
const LATENCY: &str = "Time from routing a request to its upstream's response headers, by route.";

impl Telemetry {
    /// `runtime`/`store` are None on a node that runs no replicas (`--no-worker`).
    pub fn new(
        node: String,
        runtime: Option<Arc<ContainerRuntime>>,
        store: Option<WorkerStore>,
        proxy: ProxyHandle,
    ) -> Telemetry {
        Telemetry {
            node,
            runtime,
            store,
            proxy,
        }
    }

    /// The series as of now.
    pub async fn snapshot(&self) -> Snapshot {
        let started = std::time::Instant::now();
        let mut s = Snapshot::new();
        for (name, help, kind) in [
            ("container_cpu_usage_seconds", CPU, Kind::Counter),
            (
                "container_memory_working_set_bytes",
                WORKING_SET,
                Kind::Gauge,
            ),
            ("container_spec_memory_limit_bytes", LIMIT, Kind::Gauge),
            ("container_oom_events", OOM, Kind::Counter),
            ("container_network_receive_bytes", RX_BYTES, Kind::Counter),
            ("container_network_transmit_bytes", TX_BYTES, Kind::Counter),
            (
                "container_network_receive_packets",
                RX_PACKETS,
                Kind::Counter,
            ),
            (
                "container_network_transmit_packets",
                TX_PACKETS,
                Kind::Counter,
            ),
            ("dash_replica_restarts", RESTARTS, Kind::Counter),
            (
                "dash_replica_last_terminated_reason",
                LAST_TERMINATED,
                Kind::Gauge,
            ),
            ("dash_proxy_requests", REQUESTS, Kind::Counter),
            ("dash_proxy_errors", ERRORS, Kind::Counter),
            (
                "dash_proxy_request_duration_seconds",
                LATENCY,
                Kind::Histogram,
            ),
        ] {
            s.declare(name, help, kind);
        }
        self.replicas(&mut s).await;
        self.proxy_series(&mut s);
        exposition::process_metrics(&mut s);
        collection_time(Collection::Scrape, started);
        for (kind, i) in [("sample", 0), ("scrape", 1)] {
            let (ns, n) = &COLLECTION[i];
            let what = exposition::labels([("what", kind)]);
            s.counter(
                "dash_node_collection_seconds",
                "Time this daemon spent collecting: the 2 s measurement of its replicas and proxy (sample) and reading them for /metrics (scrape)",
                what.clone(),
                ns.load(Ordering::Relaxed) as f64 / 1e9,
            );
            s.counter(
                "dash_node_collections",
                "Collections done, by kind",
                what,
                n.load(Ordering::Relaxed) as f64,
            );
        }
        s
    }

    /// [`Telemetry::snapshot`] as the text of a scrape.
    pub async fn render(&self) -> String {
        exposition::render(None, self.snapshot().await)
    }

    async fn replicas(&self, s: &mut Snapshot) {
        let (Some(runtime), Some(store)) = (&self.runtime, &self.store) else {
            return;
        };
        let local: HashMap<String, dash_store::LocalReplica> = match store.list().await {
            Ok(list) => list.into_iter().map(|r| (r.id.clone(), r)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing replicas for /metrics");
                return;
            }
        };
        let rt = runtime.clone();
        let readings = tokio::task::spawn_blocking(move || read_containers(&rt))
            .await
            .unwrap_or_default();
        for r in readings {
            // Only the replicas this node's agent runs (not a half-removed leftover).
            let Some(rep) = local.get(&r.id) else {
                continue;
            };
            let labels: Labels = exposition::labels([
                ("name", &r.id),
                ("service", &rep.service),
                ("replica", &r.id),
                ("node", &self.node),
                ("image", &rep.spec.image.to_string()),
            ]);
            s.counter(
                "container_cpu_usage_seconds",
                CPU,
                labels.clone(),
                r.cpu_ns as f64 / 1e9,
            );
            s.gauge(
                "container_memory_working_set_bytes",
                WORKING_SET,
                labels.clone(),
                r.memory as f64,
            );
            s.gauge(
                "container_spec_memory_limit_bytes",
                LIMIT,
                labels.clone(),
                r.limit.unwrap_or(0) as f64,
            );
            // Kills recorded at earlier exits, and those of the container's cgroup now (a
            // child killed while the replica's own process lives on), each counted once.
            let runs = with_runs(|runs| runs.get(&r.id).copied()).unwrap_or_default();
            s.counter(
                "container_oom_events",
                OOM,
                labels.clone(),
                oom_kills(runs, r.oom_kills) as f64,
            );
            if let Some(how) = runs.last {
                let mut l = labels.clone();
                l.push(("reason".into(), how.reason().into()));
                s.gauge(
                    "dash_replica_last_terminated_reason",
                    LAST_TERMINATED,
                    l,
                    1.0,
                );
            }
            if let Some([rx, tx, rxp, txp]) = r.veth {
                let mut net = labels.clone();
                net.push(("interface".into(), "eth0".into()));
                // The host end receives what the container transmits.
                s.counter(
                    "container_network_receive_bytes",
                    RX_BYTES,
                    net.clone(),
                    tx as f64,
                );
                s.counter(
                    "container_network_transmit_bytes",
                    TX_BYTES,
                    net.clone(),
                    rx as f64,
                );
                s.counter(
                    "container_network_receive_packets",
                    RX_PACKETS,
                    net.clone(),
                    txp as f64,
                );
                s.counter(
                    "container_network_transmit_packets",
                    TX_PACKETS,
                    net,
                    rxp as f64,
                );
            }
            s.counter(
                "dash_replica_restarts",
                RESTARTS,
                labels,
                f64::from(rep.restarts),
            );
        }
    }

    fn proxy_series(&self, s: &mut Snapshot) {
        let bounds: Vec<f64> = dash_proxy::LATENCY_BUCKETS_MS
            .iter()
            .map(|ms| *ms as f64 / 1000.0)
            .collect();
        for r in self.proxy.stats() {
            let route = exposition::labels([
                ("service", &r.service),
                ("host", &r.host),
                ("path", &r.path_prefix),
                ("node", &self.node),
            ]);
            for (i, n) in r.status.iter().enumerate() {
                let mut l = route.clone();
                l.push(("code".into(), format!("{}xx", i + 1)));
                s.counter("dash_proxy_requests", REQUESTS, l, *n as f64);
            }
            s.counter("dash_proxy_errors", ERRORS, route.clone(), r.errors as f64);
            s.histogram(
                "dash_proxy_request_duration_seconds",
                LATENCY,
                route,
                &bounds,
                &r.latency_ms,
                r.latency_sum_us as f64 / 1e6,
            );
        }
    }
}

/// Reads every container of the runtime (blocking: cgroup and sysfs files).
fn read_containers(rt: &ContainerRuntime) -> Vec<Reading> {
    let ids = rt.list().unwrap_or_default();
    ids.into_iter()
        .filter_map(|id| {
            // Stopped and half-made containers have no cgroup: not reported.
            let stats = rt.stats(&id).ok()?;
            let facts = rt.memory_facts(&id).unwrap_or_default();
            let veth = veth_counters(&dash_net::host_veth_name(&id));
            Some(Reading {
                cpu_ns: stats.cpu_usage_ns,
                memory: stats.memory_bytes,
                limit: facts.limit_bytes,
                oom_kills: facts.oom_kills,
                veth,
                id,
            })
        })
        .collect()
}

/// A host-side veth's `[rx_bytes, tx_bytes, rx_packets, tx_packets]` from sysfs.
pub(crate) fn veth_counters(dev: &str) -> Option<[u64; 4]> {
    let dir = std::path::Path::new("/sys/class/net")
        .join(dev)
        .join("statistics");
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some([
        read("rx_bytes")?,
        read("tx_bytes")?,
        read("rx_packets")?,
        read("tx_packets")?,
    ])
}

/// Serves GET /metrics (plain HTTP, no token, as node exporters and cAdvisor do: bind it to
/// loopback or a private address) until `shutdown` changes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let t = telemetry.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
                    t.render().await,
                )
            }
        }),
    );
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "serving /metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_counted_once_across_restarts() {
        let id = "test-oom-0123456789";
        // First run, still running: only its cgroup knows.
        assert_eq!(oom_kills(Runs::default(), 1), 1);
        // It exits OOM-killed (its cgroup says 1): recorded, and the cgroup is still there.
        terminated(id, Termination::OomKilled, 1);
        let r = with_runs(|runs| runs.get(id).copied()).unwrap_or_default();
        assert_eq!(
            oom_kills(r, 1),
            1,
            "not twice while the exited container is there"
        );
        // Restarted: a new cgroup counting from 0, then one more kill in it.
        started(id);
        let r = with_runs(|runs| runs.get(id).copied()).unwrap_or_default();
        assert_eq!(oom_kills(r, 0), 1);
        assert_eq!(oom_kills(r, 1), 2);
        terminated(id, Termination::Error, 0);
        let r = with_runs(|runs| runs.get(id).copied()).unwrap_or_default();
        assert_eq!((r.oom_kills, r.last), (1, Some(Termination::Error)));
        forget(id);
        assert!(with_runs(|runs| runs.get(id).copied()).is_none());
    }
}
