//! container_runtime: user namespaces. A container with one runs as root of its own user
//! namespace, mapped to a range of host ids nobody else has: root in the container is
//! `host_id` on the host, so an escape lands as an unprivileged user.
//!
//! ```text
//!  image layers (owned by host root, shared by every container)
//!     └─ idmapped bind mounts, <bundle>/lower/<i>: uid u appears as host_id + u
//!          └─ overlay (upper owned by host_id) at <runtime root>/rootfs/<id>
//!               (a path the container's root can traverse: the data dir is root's alone)
//! ```
//!
//! Idmapped mounts need a user namespace carrying the mapping: a short-lived child process is
//! put in a new one, its maps written, its namespace file opened, the child ended.

/// A container's id mapping: container ids 0..size are host ids host_id..host_id+size, for
/// users and groups alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMap {
    pub host_id: u32,
    pub size: u32,
}

pub(crate) use crate::sys::{idmapped_bind, namespace_with};

/// User namespaces by mapping, at most [`Cache::KEPT`] (then emptied and filled again).
#[derive(Debug, Default)]
pub(crate) struct Cache(
    std::sync::Mutex<std::collections::HashMap<IdMap, std::sync::Arc<std::os::fd::OwnedFd>>>,
);

impl Cache {
    const KEPT: usize = 1024;

    /// A user namespace with `map`: the kept one, or a new one.
    pub(crate) fn get(&self, map: IdMap) -> std::io::Result<std::sync::Arc<std::os::fd::OwnedFd>> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fd) = kept.get(&map) {
            return Ok(fd.clone());
        }
        let fd = std::sync::Arc::new(namespace_with(map)?);
        if kept.len() >= Self::KEPT {
            kept.clear();
        }
        kept.insert(map, fd.clone());
        Ok(fd)
    }
}
