//! service_scaler's arithmetic, pure: how many replicas the load calls for.
//!
//! Like Kubernetes' horizontal pod autoscaler: for each target, `ceil(replicas × load ÷
//! target)`; the largest wins, within `min..=max`. A load within 10 % of its target changes
//! nothing (no flapping around the target), one step grows a service at most to twice its
//! size plus one, and a smaller count only takes effect once every proposal of the last
//! `scale_down_delay` was that small ([`stabilize`]).

use std::time::Duration;

use crate::spec::Autoscale;

/// Differences from the target up to this fraction are no reason to scale.
pub const TOLERANCE: f64 = 0.1;

/// What the scaler sees of a service.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    /// Replicas running the current version (the ones measured).
    pub running: u32,
    /// Average CPU use of those, in percent of the CPU each may use (`resources.cpu`, or one
    /// core); None when none has been measured yet.
    pub cpu_percent: Option<f64>,
    /// Average memory use of those, in percent of their `resources.memory`.
    pub memory_percent: Option<f64>,
    /// Requests per second through the service's proxy routes, all nodes together.
    pub requests_per_second: Option<f64>,
}

/// The replica count the load calls for, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub replicas: u32,
    pub reason: String,
}

/// How many replicas `load` calls for under `policy`, `current` being the count asked for
/// now. None when there is nothing to go by (nothing running or measured yet).
pub fn propose(policy: &Autoscale, current: u32, load: &Load) -> Option<Proposal> {
    if load.running == 0 {
        return None;
    }
    let running = f64::from(load.running);
    let mut wanted: Option<u32> = None;
    let mut reasons = Vec::new();
    let mut consider = |ratio: f64, what: String| {
        if !ratio.is_finite() || ratio < 0.0 {
            return;
        }
        let n = if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            // Bounded before the cast: a huge load saturates at u32::MAX, then at max.
            (running * ratio).ceil().min(f64::from(u32::MAX)) as u32
        };
        wanted = Some(wanted.map_or(n, |w| w.max(n)));
        reasons.push(what);
    };
    if let (Some(target), Some(cpu)) = (policy.cpu_percent, load.cpu_percent) {
        let target = f64::from(target);
        consider(
            cpu / target,
            format!("cpu {cpu:.0}% per replica, target {target:.0}%"),
        );
    }
    if let (Some(target), Some(mem)) = (policy.memory_percent, load.memory_percent) {
        let target = f64::from(target);
        consider(
            mem / target,
            format!("memory {mem:.0}% per replica, target {target:.0}%"),
        );
    }
    if let (Some(target), Some(rps)) = (policy.requests_per_second, load.requests_per_second) {
        let target = f64::from(target);
        let per_replica = rps / running;
        consider(
            per_replica / target,
            format!("{per_replica:.1} req/s per replica, target {target:.0}"),
        );
    }
    let wanted = wanted?;
    let step_limit = current.saturating_mul(2).saturating_add(1);
    let replicas = wanted.min(step_limit).clamp(policy.min, policy.max);
    Some(Proposal {
        replicas,
        reason: format!("{} over {} running", reasons.join("; "), load.running),
    })
}

/// The count to apply given the proposals of the recent past (`(at_ms, replicas)`, oldest
/// first, the newest being now's): growth at once; shrinking only to the largest count
/// proposed within `delay`, and only once the history covers all of `delay`.
pub fn stabilize(history: &[(u64, u32)], now_ms: u64, delay: Duration, current: u32) -> u32 {
    let Some(&(_, newest)) = history.last() else {
        return current;
    };
    if newest >= current {
        return newest;
    }
    let window = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let since = now_ms.saturating_sub(window);
    let covered = history.first().is_some_and(|&(at, _)| at <= since);
    if !covered {
        return current;
    }
    let recent_max = history
        .iter()
        .filter(|&&(at, _)| at >= since)
        .map(|&(_, n)| n)
        .max()
        .unwrap_or(current);
    recent_max.min(current)
}

/// CPU use in percent of one core as a percent of what a replica may use: `cpu_millis`
/// thousandths of a core (`resources.cpu`), one core when unset.
pub fn cpu_of_limit(cpu_percent: f64, cpu_millis: u32) -> f64 {
    let cores = if cpu_millis == 0 {
        1.0
    } else {
        f64::from(cpu_millis) / 1000.0
    };
    cpu_percent / cores
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(min: u32, max: u32, cpu: Option<u32>, rps: Option<u32>) -> Autoscale {
        Autoscale {
            min,
            max,
            cpu_percent: cpu,
            memory_percent: None,
            requests_per_second: rps,
            scale_down_delay: Duration::from_secs(60),
        }
    }

    fn load(running: u32, cpu: Option<f64>, rps: Option<f64>) -> Load {
        Load {
            running,
            cpu_percent: cpu,
            memory_percent: None,
            requests_per_second: rps,
        }
    }

    #[test]
    fn cpu_is_measured_against_the_replicas_share() {
        assert_eq!(cpu_of_limit(50.0, 0), 50.0);
        assert_eq!(cpu_of_limit(50.0, 500), 100.0);
        assert_eq!(cpu_of_limit(150.0, 2000), 75.0);
    }

    #[test]
    fn cpu_over_target_adds_replicas_in_proportion() {
        let p = policy(1, 10, Some(50), None);
        let got = propose(&p, 2, &load(2, Some(100.0), None)).unwrap();
        assert_eq!(got.replicas, 4);
        assert!(got.reason.contains("cpu 100%"), "{}", got.reason);
    }

    #[test]
    fn requests_are_divided_by_the_running_replicas() {
        let p = policy(1, 10, None, Some(10));
        // 45 req/s on 1 replica: 5 of 10 req/s each.
        assert_eq!(
            propose(&p, 1, &load(1, None, Some(45.0))).unwrap().replicas,
            3
        );
        assert_eq!(
            propose(&p, 5, &load(5, None, Some(45.0))).unwrap().replicas,
            5
        );
        assert_eq!(
            propose(&p, 5, &load(5, None, Some(12.0))).unwrap().replicas,
            2
        );
    }

    #[test]
    fn the_larger_target_wins_within_min_and_max() {
        let p = policy(2, 6, Some(50), Some(10));
        let got = propose(&p, 3, &load(3, Some(10.0), Some(100.0))).unwrap();
        assert_eq!(got.replicas, 6, "rps wants 10, capped at max 6");
        let got = propose(&p, 3, &load(3, Some(1.0), Some(0.0))).unwrap();
        assert_eq!(got.replicas, 2, "idle: min");
    }

    #[test]
    fn memory_counts_like_cpu() {
        let mut p = policy(1, 10, None, None);
        p.memory_percent = Some(80);
        let mut l = load(2, None, None);
        l.memory_percent = Some(120.0);
        let got = propose(&p, 2, &l).unwrap();
        assert_eq!(got.replicas, 3);
        assert!(got.reason.contains("memory 120%"), "{}", got.reason);
    }

    #[test]
    fn near_the_target_nothing_changes() {
        let p = policy(1, 10, Some(70), None);
        assert_eq!(
            propose(&p, 4, &load(4, Some(75.0), None)).unwrap().replicas,
            4
        );
        assert_eq!(
            propose(&p, 4, &load(4, Some(65.0), None)).unwrap().replicas,
            4
        );
    }

    #[test]
    fn nothing_running_or_measured_is_no_proposal() {
        let p = policy(1, 10, Some(70), Some(5));
        assert_eq!(propose(&p, 3, &load(0, Some(100.0), Some(100.0))), None);
        assert_eq!(propose(&p, 3, &load(3, None, None)), None);
    }

    #[test]
    fn one_step_at_most_doubles_plus_one() {
        let p = policy(1, 100, None, Some(1));
        assert_eq!(
            propose(&p, 2, &load(2, None, Some(1e12))).unwrap().replicas,
            5
        );
    }

    #[test]
    fn shrinking_waits_for_the_whole_delay() {
        let d = Duration::from_secs(10);
        // Growth applies at once.
        assert_eq!(stabilize(&[(0, 2), (1_000, 5)], 1_000, d, 2), 5);
        // Lower proposals for less than the delay: keep the count.
        assert_eq!(stabilize(&[(5_000, 1), (9_000, 1)], 9_000, d, 4), 4);
        // Covered, but 3 was proposed within the window: down to 3 only.
        let h = [(0, 1), (4_000, 3), (8_000, 1), (12_000, 1)];
        assert_eq!(stabilize(&h, 12_000, d, 4), 3);
        // Low for the whole window: down.
        let h = [(0, 1), (4_000, 1), (8_000, 1), (12_000, 1)];
        assert_eq!(stabilize(&h, 12_000, d, 4), 1);
        assert_eq!(stabilize(&[], 0, d, 4), 4);
    }

    proptest! {
        #[test]
        fn a_proposal_comes_whenever_a_target_is_measured_and_stays_within_bounds(
            min in 1u32..20, extra in 0u32..20, current in 0u32..60, running in 0u32..60,
            cpu in proptest::option::of(0.0f64..1e6), rps in proptest::option::of(0.0f64..1e9),
            tcpu in proptest::option::of(1u32..1000), trps in proptest::option::of(1u32..100_000),
        ) {
            let p = policy(min, min + extra, tcpu, trps);
            let measured = running > 0
                && ((tcpu.is_some() && cpu.is_some()) || (trps.is_some() && rps.is_some()));
            let got = propose(&p, current, &load(running, cpu, rps));
            // Nothing proposed only when there is nothing to go by: the test cannot pass by
            // proposing nothing.
            prop_assert_eq!(got.is_some(), measured, "{:?}", got);
            if let Some(got) = got {
                prop_assert!(got.replicas >= min && got.replicas <= min + extra);
                prop_assert!(!got.reason.is_empty());
            }
        }
    }
}
