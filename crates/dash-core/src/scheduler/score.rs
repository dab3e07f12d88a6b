//! Scores: spread first (fewest replicas of this service), then least loaded, then a seeded
//! hash so that ties are broken deterministically but not always toward the same node.

use std::cmp::Ordering;

use super::{Load, NodeSnapshot, Request};

/// A heap entry; the max-heap pops the best node.
#[derive(Debug, Eq, PartialEq)]
pub(super) struct Key {
    service_replicas: u32,
    /// Load in parts per million of the tighter resource, or of replica count when unknown.
    load_ppm: u64,
    tie: u64,
    pub index: usize,
}

impl Key {
    pub fn new(node: &NodeSnapshot, load: &Load, req: &Request, index: usize) -> Self {
        Key {
            service_replicas: load.service_replicas,
            load_ppm: load_ppm(node, load),
            tie: fnv1a(req.service.as_bytes(), node.id.as_bytes()),
            index,
        }
    }
}

fn load_ppm(node: &NodeSnapshot, load: &Load) -> u64 {
    let frac = |used: u64, cap: u64| used.saturating_mul(1_000_000).checked_div(cap).unwrap_or(0);
    let mem = frac(load.allocated.memory_bytes, node.capacity.memory_bytes);
    let cpu = frac(
        u64::from(load.allocated.cpu_millis),
        u64::from(node.capacity.cpu_millis),
    );
    // Replica count breaks ties between nodes with no declared capacity use.
    mem.max(cpu) * 1024 + u64::from(load.total_replicas.min(1023))
}

/// FNV-1a over the service name then the node id: a cheap, stable tie-breaker.
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain([0u8].iter()).chain(b) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: fewer replicas, lower load and lower tie hash are "greater" (popped first).
        other
            .service_replicas
            .cmp(&self.service_replicas)
            .then(other.load_ppm.cmp(&self.load_ppm))
            .then(other.tie.cmp(&self.tie))
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
