use std::collections::HashMap;

use dash_core::api::{ReplicaState, ReplicaStats};

use super::*;

fn stat(replica: &str, node: &str, cpu: Option<f64>, requests: Option<u64>) -> ReplicaStats {
    ReplicaStats {
        replica: replica.into(),
        service: "web".into(),
        node: Some(node.into()),
        cpu_percent: cpu,
        cpu_percent_of_limit: None,
        memory_bytes: Some(1 << 20),
        memory_limit_bytes: Some(8 << 20),
        sampled_ms: Some(1),
        net_rx_bytes: Some(100),
        net_tx_bytes: Some(50),
        requests,
        restarts: 2,
        state: ReplicaState::Running,
    }
}

#[test]
fn request_rates_come_from_the_change_between_refreshes() {
    let mut prev = HashMap::new();
    let first = rows(
        vec![stat("a", "n1", Some(5.0), Some(100))],
        None,
        &mut prev,
        1_000,
    );
    assert_eq!(first[0].requests_per_second, None, "no rate from one total");
    let second = rows(
        vec![stat("a", "n1", Some(5.0), Some(150))],
        None,
        &mut prev,
        3_000,
    );
    assert_eq!(second[0].requests_per_second, Some(25.0));
    // A counter that went back (a proxy restarted): no rate rather than a negative one.
    let third = rows(
        vec![stat("a", "n1", Some(5.0), Some(10))],
        None,
        &mut prev,
        4_000,
    );
    assert_eq!(third[0].requests_per_second, None);
    // A replica no proxy ever sent to is idle.
    let idle = rows(vec![stat("b", "n1", None, None)], None, &mut prev, 5_000);
    assert_eq!(idle[0].requests_per_second, Some(0.0));
    assert_eq!(idle[0].state, "running");
}

#[test]
fn rows_filter_by_node_and_sort_largest_first_unknown_last() {
    let mut prev = HashMap::new();
    let mut r = rows(
        vec![
            stat("a", "n1", Some(5.0), None),
            stat("b", "n2", None, None),
            stat("c", "n1", Some(50.0), None),
        ],
        Some("n1"),
        &mut prev,
        1,
    );
    assert_eq!(r.len(), 2);
    sort(&mut r, SortKey::Cpu);
    assert_eq!(r[0].replica, "c");
    let mut all = rows(
        vec![
            stat("b", "n2", None, None),
            stat("a", "n1", Some(5.0), None),
        ],
        None,
        &mut prev,
        2,
    );
    sort(&mut all, SortKey::Cpu);
    assert_eq!(all[1].replica, "b", "unmeasured last");
    sort(&mut all, SortKey::Id);
    assert_eq!(all[0].replica, "a");
}

#[test]
fn the_table_shows_every_column_and_fits_the_width() {
    let mut prev = HashMap::new();
    let r = rows(
        vec![stat("web-0123456789", "n1", Some(12.34), None)],
        None,
        &mut prev,
        1,
    );
    let text = render(&r, SortKey::Cpu, 500);
    for part in [
        "REPLICA",
        "REQ/S",
        "web-0123456789",
        "12.3",
        "1MiB / 8MiB",
        "100B / 50B",
        "sorted by cpu",
    ] {
        assert!(text.contains(part), "{part} missing:\n{text}");
    }
    assert!(
        render(&r, SortKey::Cpu, 20)
            .lines()
            .all(|l| l.chars().count() <= 20)
    );
    assert_eq!(key_action(b'q'), Some(None));
    assert_eq!(key_action(b'm'), Some(Some(SortKey::Mem)));
    assert_eq!(key_action(b'x'), None);
}

#[test]
fn the_cpu_trend_is_a_sparkline_of_the_last_buckets() {
    assert_eq!(sparkline(&[]), "");
    assert_eq!(
        sparkline(&[Some(0.0), Some(50.0), Some(100.0), None]),
        "▁▅█ "
    );
    // Idle replicas stay low rather than being scaled up to full bars.
    assert_eq!(sparkline(&[Some(0.1), Some(0.2)]), "▂▂");
    let long: Vec<Option<f64>> = (0..30).map(|i| Some(f64::from(i))).collect();
    assert_eq!(
        sparkline(&long).chars().count(),
        12,
        "only the last two minutes"
    );
}
