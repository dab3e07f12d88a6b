//! sysnet: container networking on one node, done natively: no CNI plugins, no `ip` or
//! `iptables` processes.
//!
//! Links, addresses and routes go over netlink (rtnetlink) from inside the daemon; published
//! ports and masquerade are nftables rules in one table that Dash owns (`ip dash`), changed by
//! one `nft -f -` batch per attach or detach. No other table is ever touched.
//!
//! ```text
//!                       host                                 replica "web-1"
//!  127.0.0.1:18080 ─┐   nft ip dash: dnat 18080 → 10.88.0.2 . 8080 or 10.88.0.3 . 8080 (round-robin)
//!  eth0:18080 ──────┴─▶ dash0 10.88.0.1/24 ── vd<hash> ════ eth0 10.88.0.2/24  (netns pinned at
//!                                  │                        lo up               /run/dash/netns/web-1)
//!                                  └─ vd<hash> ════ eth0 10.88.0.3/24 (replica "web-2")
//! ```
//! The replicas of one service share its published ports; another service cannot publish them.
//!
//! Modules: [`ipam`] (pure address allocator), `ports` (pure: which replicas back which published
//! port, and its owner), `netns` (the only place with unshare/setns/mount), `bridge` and `veth`
//! (netlink), `nftables` (the only place that runs a program), `network` (the [`Network`] that
//! ties them together). Must not depend on the store, the runtime or the
//! APIs; `dash-core` only.

mod bridge;
mod conntrack;
mod error;
pub mod ipam;
mod netns;
mod network;
mod nftables;
mod ports;
mod veth;

use std::fmt;
use std::path::PathBuf;

pub use error::NetError;
pub use ipam::{Ipv4Net, allocate};
pub use network::{Attachment, Network, host_veth_name};

/// How a node's container network is laid out.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The bridge every replica's veth joins, e.g. `dash0` (at most 15 characters).
    pub bridge: String,
    /// The node's container subnet, e.g. `10.88.0.0/24`; its first address is the gateway.
    pub subnet: Ipv4Net,
    /// The nftables table (family `ip`) that Dash owns, e.g. `dash`.
    pub nft_table: String,
    /// Where each replica's netns is pinned as a file, e.g. `/run/dash/netns`.
    pub netns_dir: PathBuf,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            bridge: "dash0".to_string(),
            subnet: Ipv4Net::new(std::net::Ipv4Addr::new(10, 88, 0, 0), 24)
                .expect("10.88.0.0/24 is a valid network"),
            nft_table: "dash".to_string(),
            netns_dir: PathBuf::from("/run/dash/netns"),
        }
    }
}

impl NetConfig {
    /// Checks every field; names end up in netlink requests and nft scripts, so only plain
    /// characters are accepted.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |field: &'static str, value: &str, reason: &str| NetError::Config {
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let b = &self.bridge;
        if b.is_empty() || b.len() > 15 {
            return Err(bad("bridge", b, "must be 1 to 15 characters (IFNAMSIZ)"));
        }
        if !is_plain(b) || b == "." || b == ".." {
            return Err(bad(
                "bridge",
                b,
                "may only hold letters, digits, '_', '-', '.'",
            ));
        }
        let t = &self.nft_table;
        if t.is_empty()
            || t.len() > 64
            || !t.starts_with(|c: char| c.is_ascii_alphabetic())
            || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(
                "nft_table",
                t,
                "must be a letter then letters, digits or '_' (at most 64)",
            ));
        }
        if self.subnet.prefix() > 30 {
            return Err(bad(
                "subnet",
                &self.subnet.to_string(),
                "leaves no container address; use a prefix of 30 or less, e.g. /24",
            ));
        }
        if !self.netns_dir.is_absolute() {
            return Err(bad(
                "netns_dir",
                &self.netns_dir.display().to_string(),
                "must be an absolute path, e.g. /run/dash/netns",
            ));
        }
        Ok(())
    }
}

/// A port of a service's virtual IP and the addresses of the replicas behind it (the same
/// port on each).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipPort {
    pub vip: std::net::Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
    pub backends: Vec<std::net::Ipv4Addr>,
}

/// A transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A port of the node published to a port of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// Whether `name` holds only letters, digits, '_', '-' and '.': what a name may hold that
/// goes into netlink requests, nft scripts and comments.
pub(crate) fn is_plain(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// 64-bit FNV-1a: a hash that stays the same across builds and Rust releases, unlike
/// `DefaultHasher`, because names derived from it must survive a daemon upgrade.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
#[path = "lib_test.rs"]
mod tests;
