//! The latest measurements of every node (its replicas' CPU and memory, its proxy's load per
//! service), kept in memory: what `dash stats` shows and the service_scaler scales on. A node
//! silent for longer than [`STALE`] counts as unmeasured rather than idle.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dash_core::api::{NodeMetrics, ReplicaSample};

/// Measurements older than this are not used.
pub const STALE: Duration = Duration::from_secs(15);

#[derive(Default)]
pub struct Metrics {
    nodes: Mutex<HashMap<String, Entry>>,
    /// The last hour of what the nodes reported.
    history: crate::service_state::history::History,
}

struct Entry {
    received: Instant,
    at_ms: u64,
    metrics: NodeMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// `node`'s newest measurements replace its previous ones.
    pub fn record(&self, node: &str, metrics: NodeMetrics, at_ms: u64) {
        self.history.record(node, &metrics, at_ms);
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(
            node.to_string(),
            Entry {
                received: Instant::now(),
                at_ms,
                metrics,
            },
        );
    }

    /// Every fresh replica sample, by replica id: (node, sample, when).
    pub fn replicas(&self) -> HashMap<String, (String, ReplicaSample, u64)> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::new();
        for (node, e) in nodes.iter().filter(|(_, e)| e.received.elapsed() < STALE) {
            for s in &e.metrics.replicas {
                out.insert(s.replica.clone(), (node.clone(), s.clone(), e.at_ms));
            }
        }
        out
    }

    /// Requests per second to `service` through the proxies of every freshly measured node;
    /// None when no node measured any.
    pub fn requests_per_second(&self, service: &str) -> Option<f64> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = None;
        for e in nodes.values().filter(|e| e.received.elapsed() < STALE) {
            for r in e.metrics.routes.iter().filter(|r| r.service == service) {
                *total.get_or_insert(0.0) += r.requests_per_second;
            }
        }
        total
    }

    /// Every freshly measured node's proxy counters per route, by node.
    pub fn route_stats(&self) -> Vec<(String, Vec<dash_core::api::RouteInfo>)> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = nodes
            .iter()
            .filter(|(_, e)| e.received.elapsed() < STALE)
            .map(|(node, e)| (node.clone(), e.metrics.route_stats.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The last hour of every service and replica.
    pub fn history(&self) -> &crate::service_state::history::History {
        &self.history
    }

    /// Forgets a node (removed from the cluster).
    pub fn forget(&self, node: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.remove(node);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dash_core::api::RouteLoad;

    #[test]
    fn routes_add_up_across_nodes_and_samples_are_per_replica() {
        let m = Metrics::new();
        let node = |rps: f64, replica: &str| NodeMetrics {
            replicas: vec![ReplicaSample {
                replica: replica.into(),
                cpu_percent: Some(12.5),
                memory_bytes: 1 << 20,
                net_rx_bytes: None,
                net_tx_bytes: None,
            }],
            routes: vec![RouteLoad {
                service: "web".into(),
                requests_per_second: rps,
            }],
            route_stats: Vec::new(),
        };
        m.record("a", node(10.0, "web-1"), 1);
        m.record("b", node(5.5, "web-2"), 2);
        assert_eq!(m.requests_per_second("web"), Some(15.5));
        assert_eq!(m.requests_per_second("db"), None);
        let r = m.replicas();
        assert_eq!(r["web-2"].0, "b");
        assert_eq!(r["web-1"].1.cpu_percent, Some(12.5));
        // A newer report replaces the node's previous one.
        m.record("a", node(1.0, "web-3"), 3);
        assert!(!m.replicas().contains_key("web-1"));
        m.forget("b");
        assert_eq!(m.requests_per_second("web"), Some(1.0));
    }
}
