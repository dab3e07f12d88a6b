#![allow(clippy::unwrap_used)]

use dash_core::api::{NodeMetrics, ReplicaSample, RouteLoad};

use super::*;

const A: &str = "web-0123456789";
const B: &str = "web-abcdef0123";
const OTHER: &str = "web-2-0123456789";

fn metrics(replicas: &[(&str, Option<f64>, u64)], rps: &[(&str, f64)]) -> NodeMetrics {
    NodeMetrics {
        replicas: replicas
            .iter()
            .map(|(id, cpu, mem)| ReplicaSample {
                replica: id.to_string(),
                cpu_percent: *cpu,
                memory_bytes: *mem,
                net_rx_bytes: None,
                net_tx_bytes: None,
            })
            .collect(),
        routes: rps
            .iter()
            .map(|(s, r)| RouteLoad {
                service: s.to_string(),
                requests_per_second: *r,
            })
            .collect(),
        route_stats: Vec::new(),
    }
}

#[test]
fn buckets_average_samples_and_the_service_adds_replicas_and_nodes_up() {
    let h = History::new();
    let t0 = 1_000_000_000_000; // a bucket boundary
    // Two samples of A in the first bucket (the first has no CPU yet), one of B.
    h.record("n1", &metrics(&[(A, None, 100)], &[("web", 4.0)]), t0);
    h.record(
        "n1",
        &metrics(&[(A, Some(10.0), 300)], &[("web", 6.0)]),
        t0 + 2_000,
    );
    h.record(
        "n2",
        &metrics(&[(B, Some(30.0), 1000)], &[("web", 1.0)]),
        t0 + 4_000,
    );
    // A replica of web-2 (a name that starts like web's) is not web's.
    h.record("n2", &metrics(&[(OTHER, Some(99.0), 1)], &[]), t0 + 5_000);
    // The next bucket.
    h.record(
        "n1",
        &metrics(&[(A, Some(20.0), 500)], &[]),
        t0 + RESOLUTION_MS,
    );

    let got = h.service("web", WINDOW_MS, t0 + RESOLUTION_MS).unwrap();
    assert_eq!(got.resolution_ms, RESOLUTION_MS);
    let ids: Vec<&str> = got.replicas.iter().map(|r| r.replica.as_str()).collect();
    assert_eq!(ids, [A, B], "sorted by id, web-2's not among them");
    let a = &got.replicas.iter().find(|r| r.replica == A).unwrap().points;
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].cpu_percent, Some(10.0), "a missing CPU is not a zero");
    assert_eq!(a[0].memory_bytes, Some(200));
    assert_eq!(a[1].cpu_percent, Some(20.0));
    let first = got.points[0];
    assert_eq!(first.time_ms, t0);
    assert_eq!(first.cpu_percent, Some(40.0));
    assert_eq!(first.memory_bytes, Some(1200));
    // n1 averaged 5 req/s, n2 1 req/s.
    assert_eq!(first.requests_per_second, Some(6.0));
    assert_eq!(got.points[1].requests_per_second, None);

    assert!(h.service("nosuch", WINDOW_MS, t0).is_none());
    let other = h.service("web-2", WINDOW_MS, t0 + 5_000).unwrap();
    assert_eq!(other.points[0].cpu_percent, Some(99.0));
}

#[test]
fn the_window_bounds_what_is_kept_and_what_is_answered() {
    let h = History::new();
    let t0 = 2_000_000_000_000;
    // Two hours of samples every 2 s.
    let samples = 2 * WINDOW_MS / 2_000;
    for i in 0..samples {
        h.record(
            "n1",
            &metrics(&[(A, Some(1.0), 1)], &[("web", 1.0)]),
            t0 + i * 2_000,
        );
    }
    assert_eq!(
        h.buckets(),
        2 * BUCKETS,
        "one series per replica and per route"
    );
    let now = t0 + samples * 2_000;
    let hour = h.service("web", WINDOW_MS, now).unwrap();
    assert!(hour.points.len() <= BUCKETS);
    let ten_min = h.service("web", 600_000, now).unwrap();
    assert!(
        ten_min.points.len() <= 61 && ten_min.points.len() >= 59,
        "{}",
        ten_min.points.len()
    );
    // A replica gone silent for the window is dropped at the next sweep.
    h.record(
        "n1",
        &metrics(&[(B, Some(1.0), 1)], &[]),
        now + WINDOW_MS + 1,
    );
    let later = h.service("web", WINDOW_MS, now + WINDOW_MS + 1).unwrap();
    assert_eq!(later.replicas.len(), 1);
    assert_eq!(later.replicas[0].replica, B);
    assert_eq!(h.buckets(), 1);
}

#[test]
fn late_and_odd_samples_do_not_break_the_series() {
    let h = History::new();
    let t0 = 3_000_000_000_000;
    h.record(
        "n1",
        &metrics(&[(A, Some(5.0), 1)], &[]),
        t0 + RESOLUTION_MS,
    );
    // Older than the newest bucket: dropped, not inserted out of order.
    h.record("n1", &metrics(&[(A, Some(50.0), 1)], &[]), t0);
    h.record(
        "n1",
        &metrics(&[(A, Some(f64::NAN), 1)], &[("web", f64::INFINITY)]),
        t0 + RESOLUTION_MS + 1,
    );
    let got = h.service("web", WINDOW_MS, t0 + RESOLUTION_MS + 1).unwrap();
    assert_eq!(got.points.len(), 1);
    assert_eq!(got.points[0].cpu_percent, Some(5.0));
    assert_eq!(got.points[0].requests_per_second, None);
}
