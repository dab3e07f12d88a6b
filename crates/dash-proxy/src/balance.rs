//! proxy balance: which upstream of a route gets the next request, and passive health.
//!
//! Every upstream carries lock-free state: requests in flight, totals, consecutive failures and an
//! ejection deadline. An upstream that refuses connections, times out or answers 5xx
//! `eject_after` times in a row gets no traffic for `eject_for`; its first success resets the
//! count. When every upstream of a route is ejected the proxy fails open and picks among all of
//! them anyway (Envoy's panic mode): a wrong ejection then costs one more failed request instead
//! of an outage, and a 503 only ever means the route has no upstream at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use rand::Rng;

use crate::pool::Pool;
use crate::routes::Upstream;
use crate::worker::{self, Padded, SHARDS};

/// How a request picks one of its route's upstreams that is not ejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each upstream in turn.
    #[default]
    RoundRobin,
    /// Power of two choices: two upstreams at random, the one with fewer requests in flight.
    LeastRequests,
}

/// One upstream of one route: its address, counters, health and idle connections.
#[derive(Debug)]
pub(crate) struct UpstreamState {
    pub(crate) upstream: Upstream,
    pub(crate) in_flight: AtomicU64,
    /// Per worker (see `worker`): every request writes it.
    requests: [Padded<AtomicU64>; SHARDS],
    pub(crate) failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// [`crate::clock::nanos`] until which the upstream is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    pub(crate) pool: Pool,
}

impl UpstreamState {
    pub(crate) fn new(upstream: Upstream) -> Self {
        UpstreamState {
            upstream,
            in_flight: AtomicU64::new(0),
            requests: Default::default(),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            pool: Pool::default(),
        }
    }

    pub(crate) fn count_request(&self) {
        self.requests[worker::shard()].fetch_add(1, Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.iter().map(|r| r.load(Relaxed)).sum()
    }

    pub(crate) fn is_ejected(&self, now_nanos: u64) -> bool {
        self.ejected_until.load(Relaxed) > now_nanos
    }

    /// The upstream answered with a non-5xx status.
    pub(crate) fn on_success(&self) {
        // Load first: most requests succeed, and a plain load keeps the cache line shared.
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// The upstream failed; returns whether this failure ejected it.
    pub(crate) fn on_failure(&self, now_nanos: u64, eject_after: u32, eject_for: Duration) -> bool {
        self.failures.fetch_add(1, Relaxed);
        let consecutive = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if consecutive < eject_after {
            return false;
        }
        self.consecutive_failures.store(0, Relaxed);
        let until =
            now_nanos.saturating_add(u64::try_from(eject_for.as_nanos()).unwrap_or(u64::MAX));
        self.ejected_until.store(until.max(1), Relaxed);
        true
    }
}

/// Bit for upstream `index` in a `tried` mask; upstreams past 64 share no bit and may be retried.
pub(crate) fn bit(index: usize) -> u64 {
    if index < 64 { 1 << index } else { 0 }
}

/// Picks an upstream index not in `tried`, preferring those not ejected; `None` when every
/// upstream has been tried (or there are none).
pub(crate) fn pick(
    balance: Balance,
    upstreams: &[Arc<UpstreamState>],
    next: &AtomicUsize,
    now_nanos: u64,
    tried: u64,
) -> Option<usize> {
    let n = upstreams.len();
    if n == 0 {
        return None;
    }
    let untried = |i: usize| tried & bit(i) == 0;
    let healthy = |i: usize| untried(i) && !upstreams[i].is_ejected(now_nanos);
    // First index from `start` on (wrapping) that is healthy, else one that is merely untried.
    let from = |start: usize| {
        let scan = |ok: &dyn Fn(usize) -> bool| (0..n).map(|k| (start + k) % n).find(|&i| ok(i));
        scan(&healthy).or_else(|| scan(&untried))
    };
    match balance {
        // A retry goes on from where the first try was, without taking another turn: otherwise
        // with two upstreams one dead, every request would try the dead one first.
        Balance::RoundRobin if tried != 0 => from(next.load(Relaxed) % n),
        Balance::RoundRobin => from(next.fetch_add(1, Relaxed) % n),
        Balance::LeastRequests if n == 1 => from(0),
        Balance::LeastRequests => {
            let mut rng = rand::thread_rng();
            let first = rng.gen_range(0..n);
            let second = (first + rng.gen_range(1..n)) % n;
            let (a, b) = (from(first)?, from(second)?);
            let load = |i: usize| upstreams[i].in_flight.load(Relaxed);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(n: usize) -> Vec<Arc<UpstreamState>> {
        (0..n)
            .map(|i| {
                Arc::new(UpstreamState::new(Upstream {
                    replica: format!("r{i}"),
                    addr: ([10, 0, 0, i as u8], 80).into(),
                }))
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_skips_ejected() {
        let ups = upstreams(3);
        let next = AtomicUsize::new(0);
        let picks: Vec<_> = (0..6)
            .map(|_| pick(Balance::RoundRobin, &ups, &next, 1, 0).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);

        ups[1].on_failure(1, 1, Duration::from_secs(10));
        let picks: Vec<_> = (0..4)
            .map(|_| pick(Balance::RoundRobin, &ups, &next, 2, 0).unwrap())
            .collect();
        assert!(!picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn all_ejected_fails_open() {
        let ups = upstreams(2);
        for u in &ups {
            u.on_failure(1, 1, Duration::from_secs(10));
        }
        let next = AtomicUsize::new(0);
        assert!(pick(Balance::RoundRobin, &ups, &next, 2, 0).is_some());
        assert!(pick(Balance::LeastRequests, &ups, &next, 2, 0).is_some());
    }

    #[test]
    fn tried_upstreams_are_not_picked_again() {
        let ups = upstreams(3);
        let next = AtomicUsize::new(0);
        for balance in [Balance::RoundRobin, Balance::LeastRequests] {
            for _ in 0..20 {
                assert_eq!(pick(balance, &ups, &next, 1, bit(0) | bit(2)), Some(1));
            }
            assert_eq!(pick(balance, &ups, &next, 1, 0b111), None);
        }
        assert_eq!(pick(Balance::RoundRobin, &[], &next, 1, 0), None);
    }

    #[test]
    fn least_requests_prefers_fewer_in_flight() {
        let ups = upstreams(2);
        ups[0].in_flight.store(5, Relaxed);
        let next = AtomicUsize::new(0);
        for _ in 0..50 {
            assert_eq!(pick(Balance::LeastRequests, &ups, &next, 1, 0), Some(1));
        }
    }

    #[test]
    fn ejection_needs_consecutive_failures_and_expires() {
        let up = &upstreams(1)[0];
        let eject_for = Duration::from_nanos(100);
        assert!(!up.on_failure(10, 3, eject_for));
        up.on_success();
        assert!(!up.on_failure(10, 3, eject_for));
        assert!(!up.on_failure(10, 3, eject_for));
        assert!(up.on_failure(10, 3, eject_for));
        assert!(up.is_ejected(109));
        assert!(!up.is_ejected(110));
        assert_eq!(up.failures.load(Relaxed), 4);
    }
}
