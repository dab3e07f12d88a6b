//! bridge: the node's bridge, its gateway address and sysctls, and the netlink helpers that the
//! host and the replicas' namespaces share (find a link, set it up, keep exactly one address).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use crate::NetError;
use crate::ipam::Ipv4Net;

pub(crate) fn netlink_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let op = op.into();
    move |source| NetError::Netlink { op, source }
}

/// The link called `name`, if any.
pub(crate) async fn find_link(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if NetError::netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(netlink_err(format!("get link {name}"))(e)),
    }
}

fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// A locally administered MAC address derived from the bridge name.
///
/// A bridge without an address of its own takes the lowest MAC of its ports, so it would change
/// whenever a veth with a lower MAC joins or leaves, and every container's ARP entry for the
/// gateway would go stale. A fixed, explicitly set address stays.
fn bridge_mac(name: &str) -> Vec<u8> {
    let h = crate::fnv1a(name.as_bytes()).to_be_bytes();
    // 0x02: locally administered, unicast.
    vec![0x02, h[0], h[1], h[2], h[3], h[4]]
}

/// Makes sure the bridge `name` exists and is up, with `gateway/prefix` as its only IPv4
/// address. Returns its interface index.
pub(crate) async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    subnet: &Ipv4Net,
) -> Result<u32, NetError> {
    let index = match find_link(handle, name).await? {
        Some(link) if is_bridge(&link) => link.header.index,
        Some(_) => {
            return Err(NetError::LinkKind {
                name: name.to_string(),
                expected: "bridge",
            });
        }
        None => {
            let msg = LinkBridge::new(name).address(bridge_mac(name)).build();
            match handle.link().add(msg).execute().await {
                Ok(()) => tracing::debug!(bridge = name, "created bridge"),
                // Someone created it in between: fine, it is checked below.
                Err(e) if NetError::netlink_errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(netlink_err(format!("add bridge {name}"))(e)),
            }
            match find_link(handle, name).await? {
                Some(link) if is_bridge(&link) => link.header.index,
                _ => {
                    return Err(NetError::LinkKind {
                        name: name.to_string(),
                        expected: "bridge",
                    });
                }
            }
        }
    };
    set_up(handle, index, name).await?;
    ensure_only_address(handle, index, name, subnet.gateway(), subnet.prefix()).await?;
    Ok(index)
}

/// Sets link `index` up.
pub(crate) async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink_err(format!("set link {name} up")))
}

/// Makes `ip/prefix` the only IPv4 address of link `index`: adds it if missing and removes any
/// other (left by an earlier config or an earlier attach).
pub(crate) async fn ensure_only_address(
    handle: &Handle,
    index: u32,
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetError> {
    let mut present = false;
    let mut stale = Vec::new();
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(netlink_err(format!("get addresses of {name}")))?
    {
        // The filter is applied in user space by rtnetlink, but be explicit about the family.
        if msg.header.family != AddressFamily::Inet || msg.header.index != index {
            continue;
        }
        let addr = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(a)) => Some(*a),
            _ => None,
        });
        if addr == Some(ip) && msg.header.prefix_len == prefix {
            present = true;
        } else {
            stale.push(msg);
        }
    }
    for msg in stale {
        handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(netlink_err(format!("delete stale address of {name}")))?;
    }
    if !present {
        handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .replace()
            .execute()
            .await
            .map_err(netlink_err(format!("add address {ip}/{prefix} to {name}")))?;
    }
    Ok(())
}

/// Deletes link `name`; succeeds if it does not exist. Returns whether it existed.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<bool, NetError> {
    let Some(link) = find_link(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => {
            tracing::debug!(link = name, "deleted link");
            Ok(true)
        }
        Err(e) if NetError::netlink_errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(netlink_err(format!("delete link {name}"))(e)),
    }
}

/// Writes `value` to the sysctl at /proc/sys/`parts`... unless it already holds it (writing
/// `ip_forward` resets per-interface forwarding settings, so an unneeded write is not harmless).
/// Parts, not a dotted key: an interface name may contain a dot.
/// Whether frames switched inside a bridge pass through the ip family's hooks and conntrack
/// (`br_netfilter` loaded and `net.bridge.bridge-nf-call-iptables=1`), a host-wide setting
/// Dash reads but never changes.
pub(crate) fn bridged_conntrack() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1")
}

pub(crate) fn ensure_sysctl(parts: &[&str], value: &str) -> Result<(), NetError> {
    let path: PathBuf = ["/proc/sys"].iter().chain(parts).collect();
    let current = std::fs::read_to_string(&path).map_err(|source| NetError::Io {
        op: "reading sysctl",
        path: path.clone(),
        source,
    })?;
    if current.trim() == value {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| NetError::Io {
        op: "writing sysctl",
        path: path.clone(),
        source,
    })?;
    tracing::debug!(path = %path.display(), value, "set sysctl");
    Ok(())
}
