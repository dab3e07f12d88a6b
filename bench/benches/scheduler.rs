//! The pure scheduler at 10,000 nodes: placements per second.
//!
//! `cargo bench -p dash-bench --bench scheduler`. Target: ≥ 100,000 placements/s.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dash_core::scheduler::{NodeSnapshot, Request, place};
use dash_core::spec::{Constraint, Resources};

fn nodes(n: usize) -> Vec<NodeSnapshot> {
    (0..n)
        .map(|i| {
            let mut labels = BTreeMap::new();
            labels.insert("zone".to_string(), format!("z{}", i % 3));
            NodeSnapshot {
                id: format!("node-{i:05}"),
                ready: i % 50 != 0,
                labels,
                capacity: Resources {
                    cpu_millis: 8000,
                    memory_bytes: 32 << 30,
                },
                allocated: Resources {
                    cpu_millis: ((i * 37) % 4000) as u32,
                    memory_bytes: ((i as u64 * 7919) % 16) << 30,
                },
                service_replicas: (i % 3) as u32,
                total_replicas: (i % 17) as u32,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let nodes = nodes(10_000);
    let mut group = c.benchmark_group("place_on_10k_nodes");
    for replicas in [1usize, 100, 1_000, 10_000] {
        let req = Request {
            service: "web".into(),
            resources: Resources {
                cpu_millis: 250,
                memory_bytes: 256 << 20,
            },
            constraints: vec![Constraint::parse("zone != z2").expect("valid constraint")],
            max_per_node: 0,
        };
        group.throughput(Throughput::Elements(replicas as u64));
        group.bench_with_input(BenchmarkId::from_parameter(replicas), &replicas, |b, &n| {
            b.iter(|| black_box(place(black_box(&nodes), &req, n)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
