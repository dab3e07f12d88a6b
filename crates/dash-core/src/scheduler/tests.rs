use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

fn node(id: &str, mem: u64) -> NodeSnapshot {
    NodeSnapshot {
        id: id.into(),
        ready: true,
        labels: BTreeMap::new(),
        capacity: Resources {
            cpu_millis: 2000,
            memory_bytes: mem,
        },
        allocated: Resources::default(),
        service_replicas: 0,
        total_replicas: 0,
    }
}

fn req(mem: u64) -> Request {
    Request {
        service: "web".into(),
        resources: Resources {
            cpu_millis: 0,
            memory_bytes: mem,
        },
        constraints: vec![],
        max_per_node: 0,
    }
}

#[test]
fn spreads_evenly() {
    let nodes = vec![node("a", 1 << 30), node("b", 1 << 30), node("c", 1 << 30)];
    let placed = place(&nodes, &req(0), 6);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for p in placed {
        *counts.entry(p.unwrap()).or_default() += 1;
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
}

#[test]
fn single_node_takes_everything() {
    let placed = place(&[node("solo", 0)], &req(64 << 20), 20);
    assert!(placed.iter().all(|p| p.as_deref() == Ok("solo")));
}

#[test]
fn reports_why_nothing_fits() {
    let mut down = node("a", 1 << 30);
    down.ready = false;
    let mut nodes = vec![down, node("b", 100 << 20)];
    let mut labelled = node("c", 1 << 30);
    labelled.labels.insert("zone".into(), "x".into());
    nodes.push(labelled);
    let mut r = req(64 << 20);
    r.constraints.push(Constraint::parse("zone != x").unwrap());
    let placed = place(&nodes, &r, 2);
    assert_eq!(placed[0].as_deref(), Ok("b"));
    let err = placed[1].clone().unwrap_err();
    assert_eq!(
        err.to_string(),
        "no node fits: 1 not ready, 1 fail a placement constraint, 1 lack memory"
    );
}

#[test]
fn max_per_node() {
    let mut r = req(0);
    r.max_per_node = 1;
    let placed = place(&[node("a", 0), node("b", 0)], &r, 3);
    assert!(placed[0].is_ok() && placed[1].is_ok());
    assert_ne!(placed[0], placed[1]);
    assert!(placed[2].is_err());
}

#[test]
fn prefers_least_loaded() {
    let mut busy = node("busy", 1 << 30);
    busy.allocated.memory_bytes = 900 << 20;
    let placed = place(&[busy, node("idle", 1 << 30)], &req(10 << 20), 1);
    assert_eq!(placed[0].as_deref(), Ok("idle"));
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeSnapshot>> {
    prop::collection::vec((any::<bool>(), 0u64..4096, 0u64..4096, 0u32..4), 0..40).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (ready, cap, used, existing))| NodeSnapshot {
                id: format!("n{i}"),
                ready,
                labels: BTreeMap::new(),
                capacity: Resources {
                    cpu_millis: 0,
                    memory_bytes: cap << 20,
                },
                allocated: Resources {
                    cpu_millis: 0,
                    memory_bytes: used.min(cap) << 20,
                },
                service_replicas: existing,
                total_replicas: existing,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn never_overcommits_memory(nodes in arb_nodes(), mem in 1u64..512, count in 0usize..60) {
        let r = req(mem << 20);
        let placed = place(&nodes, &r, count);
        prop_assert_eq!(placed.len(), count);
        let mut extra: HashMap<String, u64> = HashMap::new();
        for p in placed.iter().flatten() {
            *extra.entry(p.clone()).or_default() += mem << 20;
        }
        for n in &nodes {
            if let Some(add) = extra.get(&n.id) {
                prop_assert!(n.ready, "placed on a node that is not ready");
                prop_assert!(n.capacity.memory_bytes == 0 || n.allocated.memory_bytes + add <= n.capacity.memory_bytes);
            }
        }
    }

    #[test]
    fn deterministic(nodes in arb_nodes(), count in 0usize..30) {
        prop_assert_eq!(place(&nodes, &req(1 << 20), count), place(&nodes, &req(1 << 20), count));
    }

    #[test]
    fn stable_under_reruns(nodes in arb_nodes(), count in 1usize..20) {
        // Placing n then m replicas (with the first placements applied) equals placing n+m at once.
        let all = place(&nodes, &req(0), count * 2);
        let first = place(&nodes, &req(0), count);
        let mut after = nodes.clone();
        for p in first.iter().flatten() {
            let n = after.iter_mut().find(|n| &n.id == p).unwrap();
            n.service_replicas += 1;
            n.total_replicas += 1;
        }
        let second = place(&after, &req(0), count);
        let joined: Vec<_> = first.into_iter().chain(second).collect();
        prop_assert_eq!(all, joined);
    }

    #[test]
    fn spread_is_balanced(n in 1usize..30, count in 0usize..100) {
        let nodes: Vec<_> = (0..n).map(|i| node(&format!("n{i}"), 0)).collect();
        let placed = place(&nodes, &req(0), count);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in placed.iter().flatten() {
            *counts.entry(p.clone()).or_default() += 1;
        }
        let max = counts.values().max().copied().unwrap_or(0);
        let min = if counts.len() < n { 0 } else { counts.values().min().copied().unwrap_or(0) };
        prop_assert!(max - min <= 1);
    }
}

#[test]
fn explain_ranks_like_place_and_names_rejections() {
    let mut nodes: Vec<NodeSnapshot> = (0..4).map(|i| node(&format!("n{i}"), 1 << 30)).collect();
    nodes[0].ready = false;
    nodes[1].service_replicas = 2;
    let req = req(0);
    let v = explain(&nodes, &req);
    assert_eq!(v.len(), 4);
    // The first ranked node is where `place` puts the next replica.
    let placed = place(&nodes, &req, 1).remove(0).unwrap();
    assert_eq!(v[0].node, placed);
    assert_eq!(v[0].rank, 1);
    assert!(v[..3].iter().all(|x| x.rejected.is_none()));
    assert_eq!(
        v[2].node, "n1",
        "most replicas of the service ranks last: {v:?}"
    );
    assert_eq!(
        (v[3].node.as_str(), v[3].rejected),
        ("n0", Some(Rejection::NotReady))
    );
}
