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
        (0..count)
            .map(|i| Ipv4Addr::from(base.wrapping_add(i << 8)))
            .map(|net| format!("{net}/24"))
            .find(|s| !used.contains(s))
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
