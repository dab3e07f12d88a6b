//! container_runtime: a container's resource use, from its cgroup.

use super::ContainerRuntime;
pub use crate::cgroups::MemoryFacts;
use crate::error::RuntimeError;

/// Resource use of a running container, from its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Memory in use without inactive page cache (like `docker stats`).
    pub memory_bytes: u64,
    /// CPU time used, all CPUs.
    pub cpu_usage_ns: u64,
}

impl ContainerRuntime {
    /// Memory and CPU use from the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        let kind = self.kind_of(&dir);
        let (memory_bytes, cpu_usage_ns) = self.cgroups.stats(kind, &self.cfg.cgroup_parent, id)?;
        Ok(Stats {
            memory_bytes,
            cpu_usage_ns,
        })
    }

    /// The container's memory limit and how often the kernel's OOM killer struck in it: read
    /// it after an exit, before the container is removed, to tell an OOM kill from a kill.
    pub fn memory_facts(&self, id: &str) -> Result<MemoryFacts, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        let kind = self.kind_of(&dir);
        self.cgroups.memory_facts(kind, &self.cfg.cgroup_parent, id)
    }
}
