//! The cluster's container subnets: one /24 of the cluster CIDR (`--cluster-cidr`) per node.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Container subnets for joining nodes: the /24s of the cluster CIDR, in order, skipping
/// those in use (the masters' own subnets included). Picked by the master's state machine
/// (`Command::JoinNode`), so that two joins never get the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetPool {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl SubnetPool {
    /// The first /24 of the pool that is not in `used` (as `a.b.c.0/24`).
    pub fn next_free(&self, used: &[String]) -> Option<String> {
        let prefix = u32::from(self.prefix.min(24));
        let base = u32::from(self.base) & u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let count = 1u32 << (24 - prefix);
        // A set: with 10,000 nodes a scan of the list per candidate was 10^8 comparisons.
        let used: std::collections::HashSet<&str> = used.iter().map(String::as_str).collect();
        (0..count)
            .map(|i| Ipv4Addr::from(base.wrapping_add(i << 8)))
            .map(|net| format!("{net}/24"))
            .find(|s| !used.contains(s.as_str()))
    }
}

/// The range services' virtual IPs come from (`--service-cidr`, default
/// [`VipPool::DEFAULT`]): every address but the range's first and last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipPool {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl VipPool {
    pub const DEFAULT: &'static str = "10.96.0.0/16";

    /// `a.b.c.d/N` with 8 ≤ N ≤ 30; the address is taken as the range's first.
    pub fn parse(text: &str) -> Result<VipPool, String> {
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected an IPv4 range like {}", Self::DEFAULT))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{text:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                format!("{text:?}: the prefix length must be 8 to 30 (a /30 holds 2 services)")
            })?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(VipPool {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// How many services it holds.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))) - 2
    }

    /// The lowest address of the range that `used` does not hold.
    pub fn next_free(&self, used: &std::collections::HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let base = u32::from(self.base);
        (1..=self.size())
            .map(|i| Ipv4Addr::from(base + i))
            .find(|ip| !used.contains(ip))
    }
}

impl std::fmt::Display for VipPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl std::fmt::Display for SubnetPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_ranges_parse_and_hand_out_every_host_address_once() {
        let pool = VipPool::parse("10.96.1.7/30").unwrap();
        assert_eq!(pool.to_string(), "10.96.1.4/30");
        assert_eq!(pool.size(), 2);
        let mut used = std::collections::HashSet::new();
        for want in ["10.96.1.5", "10.96.1.6"] {
            let ip = pool.next_free(&used).unwrap();
            assert_eq!(ip.to_string(), want);
            used.insert(ip);
        }
        assert_eq!(pool.next_free(&used), None);
        for bad in [
            "10.96.0.0",
            "10.96.0.0/31",
            "10.96.0.0/7",
            "x/16",
            "10.96.0.0/x",
            "",
        ] {
            assert!(VipPool::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(VipPool::parse(VipPool::DEFAULT).unwrap().size(), 65534);
    }

    #[test]
    fn subnets_skip_used_ones_and_run_out() {
        let pool = SubnetPool {
            base: Ipv4Addr::new(10, 98, 0, 0),
            prefix: 23,
        };
        assert_eq!(pool.next_free(&[]).as_deref(), Some("10.98.0.0/24"));
        assert_eq!(
            pool.next_free(&["10.98.0.0/24".into()]).as_deref(),
            Some("10.98.1.0/24")
        );
        assert_eq!(
            pool.next_free(&["10.98.0.0/24".into(), "10.98.1.0/24".into()]),
            None
        );
        assert_eq!(pool.to_string(), "10.98.0.0/23");
    }
}
