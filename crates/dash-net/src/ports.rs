//! published ports: which replicas back each published (protocol, host port), and which service
//! owns it. Pure: [`crate::Network`] renders a state as one nft batch (`nftables`) and applies it.
//!
//! ```text
//!  (tcp, 18080)  owner "web"  ┬─ 10.88.0.2 . 8080  web-1
//!                             ├─ 10.88.0.3 . 8080  web-2
//!                             └─ 10.88.0.4 . 8080  (read back from nft after a restart: no name
//!  (udp, 15353)  owner "dns"  ── 10.88.0.9 . 53     dns-1          until web-3 is attached again)
//! ```
//! Replicas of one service share a port, load-balanced by nft; another service asking for it is
//! refused. A change returns a new state, so a failed nft batch leaves the old one in place.
//!
//! Backends are keyed by address: a node's replicas never share one, and the address is what nft
//! keeps. The replica name is kept beside it while the daemon runs, so that a replica is found
//! under its name, and under its address when it was read back from nft.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use crate::{NetError, PortMapping, Protocol};

/// A published port: its protocol and host port.
pub(crate) type PortKey = (Protocol, u16);

/// Every published port of a node, with its owner and backends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PublishedPorts {
    ports: BTreeMap<PortKey, Published>,
}

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    /// The service whose replicas back it.
    pub(crate) owner: String,
    /// Never empty: a port without backends is unpublished.
    pub(crate) backends: BTreeMap<Ipv4Addr, Backend>,
}

/// A replica behind a published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Backend {
    /// `None` when read back from nft (after a daemon restart) until the replica is attached again.
    pub(crate) replica: Option<String>,
    pub(crate) container_port: u16,
}

impl PublishedPorts {
    /// A state read back from nft. Ports without backends are dropped.
    pub(crate) fn from_ports(mut ports: BTreeMap<PortKey, Published>) -> PublishedPorts {
        ports.retain(|_, p| !p.backends.is_empty());
        PublishedPorts { ports }
    }

    /// The published ports, in (protocol, host port) order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PortKey, &Published)> {
        self.ports.iter()
    }

    /// How many backends there are over all ports.
    pub(crate) fn backend_count(&self) -> usize {
        self.ports.values().map(|p| p.backends.len()).sum()
    }

    /// The state after `replica` (of service `owner`, at `ip`) publishes exactly `ports`: its
    /// backends elsewhere, and any other backend at `ip` (stale: an address has one replica), go.
    /// Attaching again with the same arguments gives the same state.
    ///
    /// Fails, changing nothing, if one of `ports` is published by replicas of another service.
    pub(crate) fn attach(
        &self,
        replica: &str,
        ip: Ipv4Addr,
        ports: &[PortMapping],
        owner: &str,
    ) -> Result<PublishedPorts, NetError> {
        let mut next = self.clone();
        next.remove_backends(|_, addr, b| addr == ip || b.replica.as_deref() == Some(replica));
        for p in ports {
            if let Some(held) = next.ports.get(&(p.protocol, p.host_port))
                && held.owner != owner
            {
                return Err(NetError::PortOwned {
                    protocol: p.protocol,
                    host_port: p.host_port,
                    owner: held.owner.clone(),
                    replicas: held.backends.len(),
                    replica: replica.to_string(),
                    requested: owner.to_string(),
                });
            }
        }
        for p in ports {
            let published = next
                .ports
                .entry((p.protocol, p.host_port))
                .or_insert_with(|| Published {
                    owner: owner.to_string(),
                    backends: BTreeMap::new(),
                });
            published.backends.insert(
                ip,
                Backend {
                    replica: Some(replica.to_string()),
                    container_port: p.container_port,
                },
            );
        }
        Ok(next)
    }

    /// The state after `replica` leaves: its backends on every port go, and so do backends at
    /// `ip` on `ports` that have no name (read back from nft). A backend at `ip` named after
    /// another replica stays: the address was given to that one after `replica` left.
    /// A port whose last backend goes is unpublished.
    pub(crate) fn detach(
        &self,
        replica: &str,
        ip: Ipv4Addr,
        ports: &[PortMapping],
    ) -> PublishedPorts {
        let keys: HashSet<PortKey> = ports.iter().map(|p| (p.protocol, p.host_port)).collect();
        let mut next = self.clone();
        next.remove_backends(|key, addr, b| match &b.replica {
            Some(name) => name == replica,
            None => addr == ip && keys.contains(key),
        });
        next
    }

    fn remove_backends(&mut self, mut gone: impl FnMut(&PortKey, Ipv4Addr, &Backend) -> bool) {
        for (key, published) in &mut self.ports {
            published.backends.retain(|addr, b| !gone(key, *addr, b));
        }
        self.ports.retain(|_, p| !p.backends.is_empty());
    }
}

#[cfg(test)]
#[path = "ports_test.rs"]
mod tests;
