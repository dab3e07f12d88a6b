//! The last hour of every service and replica in memory: CPU, memory and requests per second
//! in buckets of [`RESOLUTION`], from what the nodes report every 2 s. What `dash top` and
//! the portal's charts show. Bounded: [`BUCKETS`] per replica and per (node, service) route
//! load, and a series not fed for [`WINDOW`] is dropped.
//!
//! Pure: time comes in as `at_ms`/`now_ms`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use dash_core::api::{HistoryPoint, NodeMetrics, ReplicaHistory, ServiceHistory};
use dash_core::ids::service_of_replica;

/// The width of a bucket.
pub const RESOLUTION_MS: u64 = 10_000;
/// How far back history goes.
pub const WINDOW_MS: u64 = 3_600_000;
/// Buckets kept per series.
pub const BUCKETS: usize = (WINDOW_MS / RESOLUTION_MS) as usize;

/// Sums of the samples that fell into one bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    start_ms: u64,
    cpu_sum: f64,
    cpu_n: u32,
    mem_sum: f64,
    mem_n: u32,
    rps_sum: f64,
    rps_n: u32,
}

impl Bucket {
    fn point(&self) -> HistoryPoint {
        let avg = |sum: f64, n: u32| (n > 0).then(|| sum / f64::from(n));
        HistoryPoint {
            time_ms: self.start_ms,
            cpu_percent: avg(self.cpu_sum, self.cpu_n),
            memory_bytes: avg(self.mem_sum, self.mem_n).map(|m| m.round() as u64),
            requests_per_second: avg(self.rps_sum, self.rps_n),
        }
    }
}

/// One series: buckets oldest first, at most [`BUCKETS`].
#[derive(Debug, Default)]
struct Series {
    buckets: VecDeque<Bucket>,
}

/// What a sample adds to a bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    cpu: Option<f64>,
    mem: Option<u64>,
    rps: Option<f64>,
}

impl Series {
    fn add(&mut self, at_ms: u64, s: Sample) {
        let start = at_ms - at_ms % RESOLUTION_MS;
        match self.buckets.back() {
            Some(b) if b.start_ms == start => {}
            // A sample older than the newest bucket (clocks, reordering): dropped.
            Some(b) if b.start_ms > start => return,
            _ => {
                self.buckets.push_back(Bucket {
                    start_ms: start,
                    ..Bucket::default()
                });
                while self.buckets.len() > BUCKETS {
                    self.buckets.pop_front();
                }
            }
        }
        let Some(b) = self.buckets.back_mut() else {
            return;
        };
        if let Some(c) = s.cpu.filter(|c| c.is_finite()) {
            b.cpu_sum += c;
            b.cpu_n += 1;
        }
        if let Some(m) = s.mem {
            b.mem_sum += m as f64;
            b.mem_n += 1;
        }
        if let Some(r) = s.rps.filter(|r| r.is_finite()) {
            b.rps_sum += r;
            b.rps_n += 1;
        }
    }

    fn newest_ms(&self) -> u64 {
        self.buckets.back().map_or(0, |b| b.start_ms)
    }

    /// Points of buckets that start at or after `from_ms`.
    fn points(&self, from_ms: u64) -> Vec<HistoryPoint> {
        self.buckets
            .iter()
            .filter(|b| b.start_ms >= from_ms)
            .map(Bucket::point)
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    replicas: HashMap<String, Series>,
    /// Requests per second per (service, node): each node's proxy reports its own share.
    routes: HashMap<(String, String), Series>,
    last_sweep_ms: u64,
}

/// Every service's and replica's last hour.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Adds what `node` measured at `at_ms`.
    pub fn record(&self, node: &str, m: &NodeMetrics, at_ms: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for r in &m.replicas {
            inner.replicas.entry(r.replica.clone()).or_default().add(
                at_ms,
                Sample {
                    cpu: r.cpu_percent,
                    mem: Some(r.memory_bytes),
                    rps: None,
                },
            );
        }
        for r in &m.routes {
            inner
                .routes
                .entry((r.service.clone(), node.to_string()))
                .or_default()
                .add(
                    at_ms,
                    Sample {
                        rps: Some(r.requests_per_second),
                        ..Sample::default()
                    },
                );
        }
        // Once a minute, series nobody fed for the window go (removed replicas, routes).
        if at_ms.saturating_sub(inner.last_sweep_ms) >= 60_000 {
            inner.last_sweep_ms = at_ms;
            let horizon = at_ms.saturating_sub(WINDOW_MS);
            inner.replicas.retain(|_, s| s.newest_ms() >= horizon);
            inner.routes.retain(|_, s| s.newest_ms() >= horizon);
        }
    }

    /// `service`'s last `window_ms` (at most [`WINDOW_MS`]) as of `now_ms`; None when nothing
    /// of it was recorded.
    pub fn service(&self, service: &str, window_ms: u64, now_ms: u64) -> Option<ServiceHistory> {
        let from = now_ms.saturating_sub(window_ms.min(WINDOW_MS));
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut replicas: Vec<ReplicaHistory> = inner
            .replicas
            .iter()
            .filter(|(id, _)| service_of_replica(id) == Some(service))
            .map(|(id, s)| ReplicaHistory {
                replica: id.clone(),
                points: s.points(from),
            })
            .filter(|r| !r.points.is_empty())
            .collect();
        let routes: Vec<&Series> = inner
            .routes
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, series)| series)
            .collect();
        if replicas.is_empty() && routes.is_empty() {
            return None;
        }
        replicas.sort_by(|a, b| a.replica.cmp(&b.replica));
        // The service's bucket: its replicas' averages added up, and every node's rate.
        let mut total: BTreeMap<u64, HistoryPoint> = BTreeMap::new();
        let blank = |t| HistoryPoint {
            time_ms: t,
            cpu_percent: None,
            memory_bytes: None,
            requests_per_second: None,
        };
        for p in replicas.iter().flat_map(|r| &r.points) {
            let t = total.entry(p.time_ms).or_insert_with(|| blank(p.time_ms));
            if let Some(c) = p.cpu_percent {
                *t.cpu_percent.get_or_insert(0.0) += c;
            }
            if let Some(m) = p.memory_bytes {
                *t.memory_bytes.get_or_insert(0) += m;
            }
        }
        for p in routes.iter().flat_map(|s| s.points(from)) {
            let t = total.entry(p.time_ms).or_insert_with(|| blank(p.time_ms));
            if let Some(r) = p.requests_per_second {
                *t.requests_per_second.get_or_insert(0.0) += r;
            }
        }
        Some(ServiceHistory {
            service: service.to_string(),
            resolution_ms: RESOLUTION_MS,
            points: total.into_values().collect(),
            replicas,
        })
    }

    /// How many buckets are held in all (for the bound's test and /metrics).
    pub fn buckets(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .replicas
            .values()
            .chain(inner.routes.values())
            .map(|s| s.buckets.len())
            .sum()
    }
}

#[cfg(test)]
#[path = "history_test.rs"]
mod tests;
