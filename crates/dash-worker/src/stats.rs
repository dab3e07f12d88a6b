//! What a node measures of its replicas for the masters (`dash stats`, the service_scaler):
//! memory and CPU from each container's cgroup, CPU as a rate between two samples.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dash_core::api::ReplicaSample;
use dash_runtime::container::ContainerRuntime;

/// Keeps each replica's previous CPU reading to turn the next one into a rate.
pub struct Sampler {
    runtime: Arc<ContainerRuntime>,
    previous: HashMap<String, (Instant, u64)>,
}

impl Sampler {
    pub fn new(runtime: Arc<ContainerRuntime>) -> Sampler {
        Sampler {
            runtime,
            previous: HashMap::new(),
        }
    }

    /// Every running container of this node (blocking: reads cgroup files).
    pub fn sample(&mut self) -> Vec<ReplicaSample> {
        let ids = self.runtime.list().unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        let mut seen = HashMap::with_capacity(ids.len());
        for id in ids {
            // Stopped and half-made containers have no cgroup to read: not reported.
            let Ok(stats) = self.runtime.stats(&id) else {
                continue;
            };
            let now = Instant::now();
            let cpu_percent = self.previous.get(&id).and_then(|&(at, used)| {
                let wall = now.duration_since(at).as_nanos() as f64;
                // A restarted container starts its counter again: no rate this time.
                let delta = stats.cpu_usage_ns.checked_sub(used)? as f64;
                (wall > 0.0).then(|| delta / wall * 100.0)
            });
            seen.insert(id.clone(), (now, stats.cpu_usage_ns));
            // The host end of its veth receives what the replica sends.
            let veth = crate::node::telemetry::veth_counters(&dash_net::host_veth_name(&id));
            out.push(ReplicaSample {
                replica: id,
                cpu_percent,
                memory_bytes: stats.memory_bytes,
                net_rx_bytes: veth.map(|[_, tx, _, _]| tx),
                net_tx_bytes: veth.map(|[rx, _, _, _]| rx),
            });
        }
        self.previous = seen;
        out
    }
}
