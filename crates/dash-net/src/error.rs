//! sysnet errors: one enum for the crate, each variant with the values that explain it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::Protocol;
use crate::ipam::Ipv4Net;

/// Everything that can go wrong while setting up or tearing down container networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A [`crate::NetConfig`] field that cannot be used.
    #[error("network config: {field} = {value:?}: {reason}")]
    Config {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A subnet in `a.b.c.d/len` notation that does not parse.
    #[error("subnet {value:?}: {reason}")]
    Subnet { value: String, reason: String },
    /// A replica id that cannot name a netns file.
    #[error("replica id {replica:?}: {reason}")]
    ReplicaId {
        replica: String,
        reason: &'static str,
    },
    /// An address outside the subnet, or one of its reserved addresses.
    #[error(
        "address {ip} is not a container address of {subnet} (the network, gateway and broadcast addresses are reserved)"
    )]
    Address { ip: Ipv4Addr, subnet: Ipv4Net },
    /// A port mapping that cannot be published.
    #[error("replica {replica}: port mapping {mapping}: {reason}")]
    PortMapping {
        replica: String,
        mapping: String,
        reason: &'static str,
    },
    /// A service name that cannot own a published port (it is written in an nft comment).
    #[error("owner {owner:?}: {reason}")]
    Owner { owner: String, reason: &'static str },
    /// A port that replicas of another service publish: only replicas of one service share one.
    #[error(
        "{protocol} port {host_port} is published by service {owner} ({replicas} replicas); replica {replica} of service {requested} cannot publish it too"
    )]
    PortOwned {
        protocol: Protocol,
        host_port: u16,
        owner: String,
        replicas: usize,
        replica: String,
        requested: String,
    },
    /// Every container address of the subnet is taken.
    #[error("subnet {subnet} has no free address")]
    SubnetExhausted { subnet: Ipv4Net },
    /// A link that exists but is not what Dash expects under that name.
    #[error("link {name} exists but is not a {expected}")]
    LinkKind {
        name: String,
        expected: &'static str,
    },
    /// A netlink request that the kernel refused.
    #[error("netlink: {op}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A file or socket operation.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A system call on a namespace or mount (unshare, setns, mount, umount).
    #[error("{op} {path}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    /// The thread that enters a netns ended without an answer (it panicked).
    #[error("netns thread for {path} ended without an answer")]
    NetnsThread { path: PathBuf },
    /// `nft` could not be started or fed.
    #[error("`{argv}` could not run")]
    NftSpawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    /// `nft` ran and failed.
    #[error("`{argv}` exited with {status}: {stderr}")]
    Nft {
        argv: String,
        status: ExitStatus,
        stderr: String,
    },
    /// `nft` did not finish in time and was killed.
    #[error("`{argv}` did not finish within {timeout:?} and was killed")]
    NftTimeout { argv: String, timeout: Duration },
    /// `nft -j` printed something that is not the JSON we expect.
    #[error("`{argv}` printed unexpected JSON: {reason}")]
    NftOutput { argv: String, reason: String },
}

impl NetError {
    /// The errno of a netlink error, if the kernel sent one (positive, like `libc::EEXIST`).
    pub(crate) fn netlink_errno(source: &rtnetlink::Error) -> Option<i32> {
        match source {
            rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
            _ => None,
        }
    }
}
