//! What a node measures for the masters every 2 s (`dash stats`, the service_scaler): its
//! replicas' CPU and memory when it runs any, and its proxy's requests per second per service.
//!
//! ```text
//!  cgroups ─► stats::Sampler (blocking thread) ─┐
//!  proxy counters ─► requests/s per service ────┴─► NodeMetrics ─► sink
//!                                      (in process on a master; ReportMetrics from a worker)
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{NodeMetrics, RouteLoad};
use dash_core::spec::Resources;
use dash_proxy::ProxyHandle;
use dash_runtime::container::ContainerRuntime;
use tokio::sync::watch;

use crate::stats::Sampler;

/// Measures this node every 2 s (its replicas' CPU and memory when it runs any, its
/// proxy's load per service) and hands the result to `sink`.
pub async fn measure_node<F, Fut>(
    runtime: Option<Arc<ContainerRuntime>>,
    proxy: ProxyHandle,
    mut shutdown: watch::Receiver<bool>,
    mut sink: F,
) where
    F: FnMut(NodeMetrics) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut sampler = runtime.map(Sampler::new);
    loop {
        let replicas = match sampler.take() {
            None => Vec::new(),
            Some(mut s) => {
                match tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    let out = s.sample();
                    super::telemetry::collection_time(
                        super::telemetry::Collection::Sample,
                        started,
                    );
                    (s, out)
                })
                .await
                {
                    Ok((s, out)) => {
                        sampler = Some(s);
                        out
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "measuring replicas");
                        Vec::new()
                    }
                }
            }
        };
        let mut per_service: BTreeMap<String, f64> = BTreeMap::new();
        for r in proxy.stats() {
            *per_service.entry(r.service).or_default() += r.requests_per_second;
        }
        let routes = per_service
            .into_iter()
            .map(|(service, requests_per_second)| RouteLoad {
                service,
                requests_per_second,
            })
            .collect();
        // Full counters per route too, so that `dash route ls` sums every node's proxy (port
        // and prefix stripping are filled in by the masters, who have the table).
        let route_stats = super::routes::route_infos(&proxy, &[]);
        sink(NodeMetrics {
            replicas,
            routes,
            route_stats,
        })
        .await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The host's CPUs (as millicores) and memory (`MemTotal` of /proc/meminfo; 0 if unreadable).
pub fn host_capacity() -> Resources {
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: mem_kib * 1024,
    }
}
