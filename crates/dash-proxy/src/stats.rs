//! proxy stats: per-route counters kept with relaxed atomics on the request path, and the
//! snapshot [`crate::ProxyHandle::stats`] reads from them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::clock;
use crate::routes::RouteEntry;
use crate::worker::{self, Padded, SHARDS};

/// Upper bounds (inclusive, milliseconds) of the latency histogram buckets; one more bucket
/// counts everything slower.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// Seconds in the requests-per-second window.
const WINDOW_SECS: u64 = 10;

/// What one route has served since it first appeared in a table.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteStats {
    /// `service`, `host` and `path_prefix` as the route gave them.
    pub service: String,
    pub host: String,
    pub path_prefix: String,
    /// Requests routed here, finished or not.
    pub requests: u64,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`, the proxy's own 502/503/504 included.
    pub status: [u64; 5],
    /// Requests the proxy answered itself because no upstream could: no upstream (503), connect or
    /// transport failure (502), timeout (504).
    pub errors: u64,
    /// Time from routing to the upstream's response headers (or the error): count per bucket,
    /// `latency_ms[i]` ≤ [`LATENCY_BUCKETS_MS`]`[i]`, the last one slower than 1000 ms. Not
    /// cumulative.
    pub latency_ms: [u64; LATENCY_BUCKETS_MS.len() + 1],
    /// The sum of those times, in µs (a Prometheus histogram's `_sum`).
    pub latency_sum_us: u64,
    /// Requests per second over the last 10 seconds.
    pub requests_per_second: f64,
    pub upstreams: Vec<UpstreamStats>,
}

/// One upstream of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamStats {
    pub replica: String,
    pub addr: SocketAddr,
    /// Requests sent and not finished (response body or upgraded connection still open).
    pub in_flight: u64,
    /// Ejected by passive health checks right now.
    pub ejected: bool,
    /// Requests sent to it, retries included.
    pub requests: u64,
    /// Connect failures, timeouts, transport errors and 5xx responses.
    pub failures: u64,
}

/// Counters of one route; shared by every table the route appears in. Split per worker (see
/// `worker`); a snapshot adds the shards up.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    shards: [Padded<Shard>; SHARDS],
}

#[derive(Debug, Default)]
struct Shard {
    requests: AtomicU64,
    status: [AtomicU64; 5],
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_us: AtomicU64,
    /// One slot per second of the window: `second << 32 | count`.
    window: [AtomicU64; WINDOW_SECS as usize],
    /// Round-robin position: each worker takes the upstreams in turn on its own.
    next: AtomicUsize,
}

impl RouteCounters {
    fn shard(&self) -> &Shard {
        &self.shards[worker::shard()]
    }

    /// This worker's round-robin position.
    pub(crate) fn next(&self) -> &AtomicUsize {
        &self.shard().next
    }

    /// Counts a request as it is routed.
    pub(crate) fn start(&self, now: Instant) {
        let shard = self.shard();
        shard.requests.fetch_add(1, Relaxed);
        let second = clock::secs(now);
        let slot = &shard.window[(second % WINDOW_SECS) as usize];
        let _ = slot.fetch_update(Relaxed, Relaxed, |packed| {
            Some(if packed >> 32 == second {
                packed + 1
            } else {
                (second << 32) | 1
            })
        });
    }

    /// Counts the response status and how long it took to get it.
    pub(crate) fn finish(&self, status: u16, elapsed: Duration, proxy_error: bool) {
        let shard = self.shard();
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        shard.status[class].fetch_add(1, Relaxed);
        if proxy_error {
            shard.errors.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ms| micros <= ms * 1000)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        shard.latency[bucket].fetch_add(1, Relaxed);
        shard.latency_sum_us.fetch_add(micros, Relaxed);
    }

    fn sum(&self, field: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| field(s).load(Relaxed)).sum()
    }

    fn requests_per_second(&self, now: Instant) -> f64 {
        let second = clock::secs(now);
        let recent: u64 = self
            .shards
            .iter()
            .flat_map(|s| s.window.iter())
            .map(|slot| slot.load(Relaxed))
            .filter(|packed| second.saturating_sub(packed >> 32) < WINDOW_SECS)
            .map(|packed| packed & u64::from(u32::MAX))
            .sum();
        recent as f64 / WINDOW_SECS as f64
    }
}

pub(crate) fn snapshot(entry: &RouteEntry, now: Instant) -> RouteStats {
    let counters = &entry.counters;
    let load = |a: &AtomicU64| a.load(Relaxed);
    let now_nanos = clock::nanos(now);
    let route = entry.route();
    RouteStats {
        service: route.service.clone(),
        host: route.host.clone(),
        path_prefix: route.path_prefix.clone(),
        requests: counters.sum(|s| &s.requests),
        status: std::array::from_fn(|i| counters.sum(|s| &s.status[i])),
        errors: counters.sum(|s| &s.errors),
        latency_ms: std::array::from_fn(|i| counters.sum(|s| &s.latency[i])),
        latency_sum_us: counters.sum(|s| &s.latency_sum_us),
        requests_per_second: counters.requests_per_second(now),
        upstreams: entry
            .upstreams
            .iter()
            .map(|u| UpstreamStats {
                replica: u.upstream.replica.clone(),
                addr: u.upstream.addr,
                in_flight: load(&u.in_flight),
                ejected: u.is_ejected(now_nanos),
                requests: u.requests(),
                failures: load(&u.failures),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_counts_status_class_and_latency_bucket() {
        let c = RouteCounters::default();
        c.finish(200, Duration::from_micros(900), false);
        c.finish(204, Duration::from_millis(3), false);
        c.finish(101, Duration::from_millis(1000), false);
        c.finish(502, Duration::from_secs(2), true);
        let status: [u64; 5] = std::array::from_fn(|i| c.sum(|s| &s.status[i]));
        assert_eq!(status, [1, 2, 0, 0, 1]);
        assert_eq!(c.sum(|s| &s.errors), 1);
        let latency: [u64; 11] = std::array::from_fn(|i| c.sum(|s| &s.latency[i]));
        assert_eq!(latency, [1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn requests_per_second_covers_the_last_ten_seconds() {
        let c = RouteCounters::default();
        let t0 = Instant::now() + Duration::from_secs(100);
        for _ in 0..30 {
            c.start(t0);
        }
        for _ in 0..20 {
            c.start(t0 + Duration::from_secs(1));
        }
        assert_eq!(c.requests_per_second(t0 + Duration::from_secs(1)), 5.0);
        assert_eq!(c.requests_per_second(t0 + Duration::from_secs(10)), 2.0);
        assert_eq!(c.requests_per_second(t0 + Duration::from_secs(11)), 0.0);
        // The slot of t0 is reused ten seconds later.
        c.start(t0 + Duration::from_secs(10));
        assert_eq!(c.requests_per_second(t0 + Duration::from_secs(10)), 2.1);
        assert_eq!(c.sum(|s| &s.requests), 51);
    }
}
