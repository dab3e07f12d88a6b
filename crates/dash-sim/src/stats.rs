//! What the simulated fleet saw, summed over its workers: `dash sim report`.
//!
//! Counters are atomics the workers bump as things happen (no lock on the hot path); the
//! report is computed from them and from each live worker's heartbeat figures when asked.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use dash_core::api::ReplicaState;
pub use dash_core::sim::{KillReport, Report};

/// Replica states the fleet counts (index into [`Stats::states`]).
const STATES: [ReplicaState; 8] = [
    ReplicaState::Pending,
    ReplicaState::Starting,
    ReplicaState::Running,
    ReplicaState::Healthy,
    ReplicaState::Unhealthy,
    ReplicaState::Exited,
    ReplicaState::Failed,
    ReplicaState::Stopping,
];

fn slot(s: ReplicaState) -> usize {
    STATES.iter().position(|x| *x == s).unwrap_or(0)
}

/// The fleet's counters.
pub struct Stats {
    started: Instant,
    pub joined: AtomicU64,
    pub join_failures: AtomicU64,
    pub killed: AtomicU64,
    /// Assignments that arrived at a worker that did not hold them (placements seen).
    pub placements: AtomicU64,
    pub starts: AtomicU64,
    pub start_failures: AtomicU64,
    pub reports: AtomicU64,
    pub report_failures: AtomicU64,
    pub removals: AtomicU64,
    /// Replicas the fleet holds now, by their state.
    states: [AtomicU64; 8],
    /// Milliseconds since the simulation began, 0 for never: the first placement, the last
    /// time a replica began to run.
    first_placement_ms: AtomicU64,
    last_running_ms: AtomicU64,
    /// Placements per whole second since the simulation began (grows as seconds pass).
    per_second: Mutex<Vec<u64>>,
    /// The last `dash sim kill`: when, what it took away, and when the fleet held as many
    /// running replicas as before it again.
    kill: Mutex<Option<KillMark>>,
    /// Why the last join was refused (a refusal stops the joins).
    pub join_refusal: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
struct KillMark {
    at: Instant,
    workers: u64,
    replicas: u64,
    running_before: u64,
    recovered_ms: Option<u64>,
    first_new_ms: Option<u64>,
    last_new_ms: Option<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            joined: AtomicU64::new(0),
            join_failures: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            placements: AtomicU64::new(0),
            starts: AtomicU64::new(0),
            start_failures: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            report_failures: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            states: Default::default(),
            first_placement_ms: AtomicU64::new(0),
            last_running_ms: AtomicU64::new(0),
            per_second: Mutex::new(Vec::new()),
            kill: Mutex::new(None),
            join_refusal: Mutex::new(None),
        }
    }
}

impl Stats {
    fn ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).max(1)
    }

    /// A worker received a replica it did not hold.
    pub fn placed(&self) {
        self.placements.fetch_add(1, Relaxed);
        if let Ok(mut k) = self.kill.lock()
            && let Some(mark) = k.as_mut()
            && mark.recovered_ms.is_none()
        {
            let ms = mark.at.elapsed().as_millis() as u64;
            mark.first_new_ms.get_or_insert(ms);
            mark.last_new_ms = Some(ms);
        }
        let ms = self.ms();
        let _ = self
            .first_placement_ms
            .compare_exchange(0, ms, Relaxed, Relaxed);
        let second = (ms / 1000) as usize;
        if let Ok(mut p) = self.per_second.lock() {
            if p.len() <= second {
                p.resize(second + 1, 0);
            }
            p[second] += 1;
        }
    }

    /// A replica the fleet holds moved from `from` (None: new) to `to` (None: gone).
    pub fn moved(&self, from: Option<ReplicaState>, to: Option<ReplicaState>) {
        if from == to {
            return;
        }
        if let Some(f) = from {
            let _ = self.states[slot(f)].fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
        if let Some(t) = to {
            self.states[slot(t)].fetch_add(1, Relaxed);
            if t == ReplicaState::Running {
                self.last_running_ms.store(self.ms(), Relaxed);
                self.check_recovered();
            }
        }
    }

    fn count(&self, s: ReplicaState) -> u64 {
        self.states[slot(s)].load(Relaxed)
    }

    fn serving(&self) -> u64 {
        self.count(ReplicaState::Running) + self.count(ReplicaState::Healthy)
    }

    fn check_recovered(&self) {
        let serving = self.serving();
        if let Ok(mut k) = self.kill.lock()
            && let Some(mark) = k.as_mut()
            && mark.recovered_ms.is_none()
            && serving >= mark.running_before
        {
            mark.recovered_ms = Some(mark.at.elapsed().as_millis() as u64);
        }
    }

    /// `workers` went silent, taking `replicas` with them; `running_before` were serving
    /// just before.
    pub fn mark_kill(&self, workers: u64, replicas: u64, running_before: u64) {
        self.killed.fetch_add(workers, Relaxed);
        if let Ok(mut k) = self.kill.lock() {
            *k = Some(KillMark {
                at: Instant::now(),
                workers,
                replicas,
                running_before,
                recovered_ms: None,
                first_new_ms: None,
                last_new_ms: None,
            });
        }
    }

    /// Replicas serving now (running or healthy).
    pub fn serving_now(&self) -> u64 {
        self.serving()
    }

    /// The report, with the live workers' heartbeat figures (`beats`: per worker, the last
    /// round trip and the worst lateness so far, in µs and ms).
    pub fn report(
        &self,
        workers: u64,
        live: u64,
        beats: &[dash_worker::master_link::BeatStats],
    ) -> Report {
        let mut by_state = std::collections::BTreeMap::new();
        let mut held = 0;
        for s in STATES {
            let n = self.count(s);
            held += n;
            if n > 0 {
                by_state.insert(s.as_str().to_string(), n);
            }
        }
        let first = self.first_placement_ms.load(Relaxed);
        let last = self.last_running_ms.load(Relaxed);
        let serving = self.serving();
        let converged = held > 0 && serving == held;
        let (peak, busy_seconds) = match self.per_second.lock() {
            Ok(p) => (
                p.iter().copied().max().unwrap_or(0),
                p.iter().filter(|n| **n > 0).count() as u64,
            ),
            Err(_) => (0, 0),
        };
        let placements = self.placements.load(Relaxed);
        let mut rtts: Vec<u64> = beats.iter().map(|b| b.last_rtt_us).collect();
        rtts.sort_unstable();
        let pct = |p: f64| -> f64 {
            if rtts.is_empty() {
                return 0.0;
            }
            let i = ((rtts.len() - 1) as f64 * p).round() as usize;
            rtts[i] as f64 / 1000.0
        };
        let kill = self
            .kill
            .lock()
            .ok()
            .and_then(|k| k.clone())
            .map(|k| KillReport {
                workers: k.workers,
                replicas: k.replicas,
                running_before: k.running_before,
                ago_ms: k.at.elapsed().as_millis() as u64,
                recovered_after_ms: k.recovered_ms,
                first_new_after_ms: k.first_new_ms,
                last_new_after_ms: k.last_new_ms,
            });
        Report {
            uptime_ms: self.ms(),
            workers,
            joined: self.joined.load(Relaxed),
            join_failures: self.join_failures.load(Relaxed),
            join_refusal: self.join_refusal.lock().ok().and_then(|r| r.clone()),
            live,
            killed: self.killed.load(Relaxed),
            replicas: held,
            by_state,
            converged,
            placements,
            placements_per_s_peak: peak,
            placements_per_s_mean: placements.checked_div(busy_seconds).unwrap_or(0),
            first_placement_ms: (first > 0).then_some(first),
            time_to_all_running_ms: (converged && first > 0 && last >= first).then(|| last - first),
            starts: self.starts.load(Relaxed),
            start_failures: self.start_failures.load(Relaxed),
            reports: self.reports.load(Relaxed),
            report_failures: self.report_failures.load(Relaxed),
            removals: self.removals.load(Relaxed),
            heartbeats_ok: beats.iter().map(|b| b.ok).sum(),
            heartbeats_failed: beats.iter().map(|b| b.failed).sum(),
            heartbeat_rtt_p50_ms: pct(0.5),
            heartbeat_rtt_p99_ms: pct(0.99),
            heartbeat_rtt_max_ms: beats.iter().map(|b| b.max_rtt_us).max().unwrap_or(0) as f64
                / 1000.0,
            heartbeat_late_max_ms: beats.iter().map(|b| b.max_late_ms).max().unwrap_or(0),
            last_kill: kill,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn states_are_counted_as_replicas_move() {
        let s = Stats::default();
        s.moved(None, Some(ReplicaState::Starting));
        s.moved(None, Some(ReplicaState::Starting));
        s.moved(Some(ReplicaState::Starting), Some(ReplicaState::Running));
        let r = s.report(2, 2, &[]);
        assert_eq!(r.replicas, 2);
        assert!(!r.converged);
        assert_eq!(r.by_state["starting"], 1);
        s.moved(Some(ReplicaState::Starting), Some(ReplicaState::Running));
        let r = s.report(2, 2, &[]);
        assert!(r.converged);
        // Gone: counted out; never below zero.
        s.moved(Some(ReplicaState::Running), None);
        s.moved(Some(ReplicaState::Failed), None);
        let r = s.report(2, 2, &[]);
        assert_eq!(r.replicas, 1);
    }

    #[test]
    fn a_kill_is_recovered_when_as_many_serve_again() {
        let s = Stats::default();
        for _ in 0..3 {
            s.moved(None, Some(ReplicaState::Running));
        }
        // One worker with one replica goes.
        s.moved(Some(ReplicaState::Running), None);
        s.mark_kill(1, 1, 3);
        assert_eq!(
            s.report(1, 1, &[]).last_kill.unwrap().recovered_after_ms,
            None
        );
        s.moved(None, Some(ReplicaState::Starting));
        s.moved(Some(ReplicaState::Starting), Some(ReplicaState::Running));
        assert!(
            s.report(1, 1, &[])
                .last_kill
                .unwrap()
                .recovered_after_ms
                .is_some()
        );
    }
}
