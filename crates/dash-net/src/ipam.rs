//! ipam: a node subnet and the pure allocator of container addresses in it.
//!
//! No I/O: the caller owns the set of used addresses (the worker keeps it in its store) and asks
//! for the lowest free one. In `10.88.0.0/24` the network (`.0`), the gateway (`.1`, on the
//! bridge) and the broadcast (`.255`) are never handed out, so `.2` comes first.

use std::borrow::Borrow;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::NetError;

/// An IPv4 network: a network address and a prefix length, written `10.88.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// A network from its address and prefix length; the address must have no host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, NetError> {
        let subnet_err = |reason: String| NetError::Subnet {
            value: format!("{addr}/{prefix}"),
            reason,
        };
        if prefix > 32 {
            return Err(subnet_err("the prefix length must be 0 to 32".into()));
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if network != addr {
            return Err(subnet_err(format!(
                "host bits are set; use {network}/{prefix}"
            )));
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// The network address (`10.88.0.0`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length (`24`).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address (`10.88.0.255`).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// The gateway: the first host address (`10.88.0.1`), which Dash puts on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }

    /// Whether `ip` lies in this network (reserved addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `ip` may be given to a container: in the network and not the network,
    /// gateway or broadcast address.
    pub fn is_container_addr(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.container_range();
        let ip = u32::from(ip);
        self.contains(ip.into()) && first <= ip && ip <= last
    }

    /// The first and last container address as integers; `first > last` when there is none
    /// (a /31 or /32 leaves nothing once network, gateway and broadcast are taken out).
    fn container_range(&self) -> (u32, u32) {
        let network = u64::from(u32::from(self.addr));
        let broadcast = u64::from(u32::from(self.broadcast()));
        let first = network + 2;
        let last = broadcast.saturating_sub(1);
        // In u64 because network + 2 overflows u32 for 255.255.255.254/31 and above.
        match (u32::try_from(first), u32::try_from(last)) {
            (Ok(f), Ok(l)) if f <= l => (f, l),
            _ => (1, 0),
        }
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Ipv4Net, NetError> {
        let subnet_err = |reason: &str| NetError::Subnet {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| subnet_err("expected address/prefix, e.g. 10.88.0.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| subnet_err("the address is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| subnet_err("the prefix length must be 0 to 32"))?;
        Ipv4Net::new(addr, prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// The lowest container address of `subnet` that is not in `used`.
///
/// Addresses in `used` outside the subnet are ignored. Costs O(k log k) for k used addresses,
/// whatever the size of the subnet.
pub fn allocate<I>(subnet: &Ipv4Net, used: I) -> Result<Ipv4Addr, NetError>
where
    I: IntoIterator,
    I::Item: Borrow<Ipv4Addr>,
{
    let (first, last) = subnet.container_range();
    let mut taken: Vec<u32> = used
        .into_iter()
        .map(|ip| u32::from(*ip.borrow()))
        .filter(|ip| (first..=last).contains(ip))
        .collect();
    taken.sort_unstable();
    taken.dedup();
    let mut candidate = first;
    for ip in taken {
        if ip != candidate {
            break;
        }
        candidate = match candidate.checked_add(1) {
            Some(next) => next,
            None => return Err(NetError::SubnetExhausted { subnet: *subnet }),
        };
    }
    if first <= candidate && candidate <= last {
        Ok(Ipv4Addr::from(candidate))
    } else {
        Err(NetError::SubnetExhausted { subnet: *subnet })
    }
}

#[cfg(test)]
#[path = "ipam_test.rs"]
mod tests;
