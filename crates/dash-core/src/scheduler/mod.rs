//! scheduler: places replicas on nodes. A pure, deterministic function of a snapshot.
//!
//! ```text
//!  nodes ──► filter (ready, constraints, resources, max per node) ──► feasible set
//!                                                                      │ one heap, built once
//!  for each replica:  pop best (fewest of this service, least loaded, seeded tie-break)
//!                     place, charge its resources, push back if still feasible
//! ```
//!
//! Filtering is O(nodes) once per request and each placement O(log nodes), so placing a whole
//! service on 10,000 nodes costs one pass plus a heap operation per replica, not
//! nodes × replicas. Ties break on a hash of (service, node), so equal nodes are spread
//! differently for each service but the same way on every run.

mod filter;
mod score;

use std::collections::{BTreeMap, BinaryHeap};

pub use filter::Rejection;

use crate::spec::{Constraint, Resources};

/// A node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    pub id: String,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
    /// Zero means unknown / unlimited.
    pub capacity: Resources,
    pub allocated: Resources,
    /// Replicas of the service being placed already on this node.
    pub service_replicas: u32,
    /// All replicas on this node.
    pub total_replicas: u32,
}

/// What one replica needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub service: String,
    pub resources: Resources,
    pub constraints: Vec<Constraint>,
    /// 0 = no limit.
    pub max_per_node: u32,
}

/// Why a replica could not be placed: for each rejecting filter, how many nodes it rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub rejections: BTreeMap<Rejection, usize>,
}

impl std::fmt::Display for Unplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rejections.is_empty() {
            return f.write_str("no nodes");
        }
        f.write_str("no node fits: ")?;
        for (i, (why, n)) in self.rejections.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} {why}")?;
        }
        Ok(())
    }
}

/// Places `count` replicas. Returns one result per replica, in order: the chosen node id or
/// why none fits. Deterministic: the same inputs give the same placements.
pub fn place(
    nodes: &[NodeSnapshot],
    request: &Request,
    count: usize,
) -> Vec<Result<String, Unplaced>> {
    let mut rejections: BTreeMap<Rejection, usize> = BTreeMap::new();
    // Only the counters change while placing: keep them apart from the (cloned never) nodes.
    let mut load: Vec<Load> = Vec::new();
    let mut heap = BinaryHeap::new();
    for (index, node) in nodes.iter().enumerate() {
        let l = Load::of(node, index);
        match filter::check(node, &l, request) {
            Ok(()) => {
                heap.push(score::Key::new(node, &l, request, load.len()));
                load.push(l);
            }
            Err(why) => *rejections.entry(why).or_default() += 1,
        }
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(best) = heap.pop() else {
            out.push(Err(Unplaced {
                rejections: rejections.clone(),
            }));
            continue;
        };
        let l = &mut load[best.index];
        let node = &nodes[l.node];
        out.push(Ok(node.id.clone()));
        l.service_replicas += 1;
        l.total_replicas += 1;
        l.allocated.memory_bytes += request.resources.memory_bytes;
        l.allocated.cpu_millis += request.resources.cpu_millis;
        match filter::check(node, l, request) {
            Ok(()) => heap.push(score::Key::new(node, l, request, best.index)),
            Err(why) => *rejections.entry(why).or_default() += 1,
        }
    }
    out
}

/// How a node looks to a request now, for `dash service explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVerdict {
    pub node: String,
    /// Why the node cannot take a replica, or None when it can.
    pub rejected: Option<Rejection>,
    /// Replicas of the service on the node (the first criterion: fewer is better).
    pub service_replicas: u32,
    /// Use of the tighter of CPU and memory, in percent of capacity (the second).
    pub load_percent: u32,
    /// All replicas on the node (breaks ties when no capacity is declared).
    pub total_replicas: u32,
    /// 1 = where the next replica would go; 0 for rejected nodes.
    pub rank: usize,
}

/// Every node's verdict for one more replica of `request`, best first, rejected last.
pub fn explain(nodes: &[NodeSnapshot], request: &Request) -> Vec<NodeVerdict> {
    let mut ok = Vec::new();
    let mut out = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let l = Load::of(node, index);
        let frac = |used: u64, cap: u64| used.saturating_mul(100).checked_div(cap).unwrap_or(0);
        let load_percent = frac(l.allocated.memory_bytes, node.capacity.memory_bytes).max(frac(
            u64::from(l.allocated.cpu_millis),
            u64::from(node.capacity.cpu_millis),
        )) as u32;
        let verdict = NodeVerdict {
            node: node.id.clone(),
            rejected: filter::check(node, &l, request).err(),
            service_replicas: l.service_replicas,
            load_percent,
            total_replicas: l.total_replicas,
            rank: 0,
        };
        if verdict.rejected.is_none() {
            ok.push((score::Key::new(node, &l, request, index), verdict));
        } else {
            out.push(verdict);
        }
    }
    ok.sort_by(|a, b| b.0.cmp(&a.0));
    let mut ranked: Vec<NodeVerdict> = ok
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut v))| {
            v.rank = i + 1;
            v
        })
        .collect();
    ranked.extend(out);
    ranked
}

/// The part of a node that placing replicas changes.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    node: usize,
    service_replicas: u32,
    total_replicas: u32,
    allocated: Resources,
}

impl Load {
    fn of(node: &NodeSnapshot, index: usize) -> Self {
        Load {
            node: index,
            service_replicas: node.service_replicas,
            total_replicas: node.total_replicas,
            allocated: node.allocated,
        }
    }
}

#[cfg(test)]
mod tests;
