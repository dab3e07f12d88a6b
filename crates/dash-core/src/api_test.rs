use super::*;

fn route(node: &str, host: &str, requests: u64, replica: &str, state: &str) -> RouteInfo {
    RouteInfo {
        node: Some(node.into()),
        service: "web".into(),
        host: host.into(),
        path_prefix: "/".into(),
        strip_prefix: false,
        port: 80,
        requests,
        status: [0, requests, 0, 0, 0],
        errors: 1,
        requests_per_second: 2.0,
        latency_buckets_ms: vec![1, u64::MAX],
        latency_counts: vec![requests, 0],
        upstreams: vec![UpstreamInfo {
            replica: replica.into(),
            addr: "10.0.0.2:80".into(),
            state: state.into(),
            in_flight: 0,
            requests,
            failures: 0,
        }],
    }
}

#[test]
fn every_nodes_counters_of_a_route_add_up() {
    let rows = vec![
        route("n1", "a.local", 10, "web-1", "up"),
        route("n2", "b.local", 7, "web-1", "up"),
        route("n2", "a.local", 5, "web-1", "ejected"),
        route("n3", "a.local", 1, "web-2", "ejected"),
    ];
    let sum = sum_routes(rows);
    assert_eq!(sum.len(), 2, "one row per route, first-seen order");
    let a = &sum[0];
    assert_eq!((a.host.as_str(), a.node.as_deref()), ("a.local", None));
    assert_eq!(a.requests, 16);
    assert_eq!(a.status, [0, 16, 0, 0, 0]);
    assert_eq!(a.errors, 3);
    assert_eq!(a.requests_per_second, 6.0);
    assert_eq!(a.latency_counts, vec![16, 0]);
    assert_eq!(a.upstreams.len(), 2);
    assert_eq!(
        (a.upstreams[0].requests, a.upstreams[0].state.as_str()),
        (15, "up"),
        "up where any proxy has it up"
    );
    assert_eq!(a.upstreams[1].state, "ejected");
    assert_eq!(sum[1].requests, 7);
}

#[test]
fn node_roles_read_as_they_are_written() {
    for role in [NodeRole::Server, NodeRole::Master, NodeRole::Worker] {
        assert_eq!(NodeRole::parse(role.as_str()), Some(role));
        assert_eq!(
            serde_json::to_string(&role).unwrap(),
            format!("\"{}\"", role.as_str())
        );
    }
    assert_eq!(NodeRole::parse("boss"), None);
    assert!(!NodeRole::Master.runs_replicas() && NodeRole::Server.runs_replicas());
    assert!(NodeRole::Server.is_master() && !NodeRole::Worker.is_master());
}
