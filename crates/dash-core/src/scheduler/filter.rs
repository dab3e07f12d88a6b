//! Filters: may this node take one more replica of this request?

use super::{Load, NodeSnapshot, Request};

/// Why a node was filtered out. Ordered for stable messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    NotReady,
    Constraint,
    MaxPerNode,
    Memory,
    Cpu,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejection::NotReady => "not ready",
            Rejection::Constraint => "fail a placement constraint",
            Rejection::MaxPerNode => "at max_per_node",
            Rejection::Memory => "lack memory",
            Rejection::Cpu => "lack cpu",
        })
    }
}

pub(super) fn check(node: &NodeSnapshot, load: &Load, req: &Request) -> Result<(), Rejection> {
    if !node.ready {
        return Err(Rejection::NotReady);
    }
    if !req
        .constraints
        .iter()
        .all(|c| c.matches(&node.id, &node.labels))
    {
        return Err(Rejection::Constraint);
    }
    if req.max_per_node > 0 && load.service_replicas >= req.max_per_node {
        return Err(Rejection::MaxPerNode);
    }
    let fits =
        |cap: u64, used: u64, want: u64| want == 0 || cap == 0 || used.saturating_add(want) <= cap;
    if !fits(
        node.capacity.memory_bytes,
        load.allocated.memory_bytes,
        req.resources.memory_bytes,
    ) {
        return Err(Rejection::Memory);
    }
    if !fits(
        u64::from(node.capacity.cpu_millis),
        u64::from(load.allocated.cpu_millis),
        u64::from(req.resources.cpu_millis),
    ) {
        return Err(Rejection::Cpu);
    }
    Ok(())
}
