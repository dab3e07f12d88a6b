//! veth: the pair that links a replica's namespace to the bridge, and the replica's side of it.
//!
//! ```text
//!  host netns                                 replica netns (netns_path(replica))
//!  dash0 (gateway/prefix) ── vd<hash> ═══════ eth0 (ip/prefix), default via gateway
//!                                             lo up
//! ```
//! The pair is created in one netlink request with its peer already named `eth0`, inside the
//! namespace, so no `eth0` ever appears on the host (where it could clash).

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{
    Handle, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::NetError;
use crate::bridge::{ensure_only_address, find_link, netlink_err, set_up};
use crate::netns::Netns;

/// The name of the replica's end of the pair, inside its namespace.
pub(crate) const PEER_NAME: &str = "eth0";

/// The loopback device is always interface 1 in a network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// Makes sure the pair `host_name` ⇄ `eth0` exists between the host and `ns`, with the host end
/// in the bridge, in hairpin mode and up.
pub(crate) async fn ensure_pair(
    host: &Handle,
    ns: &Netns,
    host_name: &str,
    bridge_index: u32,
) -> Result<(), NetError> {
    ensure_pair_in_bridge(host, ns, host_name, bridge_index).await?;
    // Hairpin: with br_netfilter loaded (bridge-nf-call-iptables=1, as here), a packet DNATed to
    // an address on the same bridge is bridged, not routed; a replica reaching its own published
    // port sends it back out the port it came in, which the bridge refuses without hairpin mode.
    // (Like the CNI bridge plugin's hairpinMode.)
    host.link()
        .set_port(
            LinkBridgePort::new(0)
                .name(host_name.to_string())
                .hairpin(true)
                .build(),
        )
        .execute()
        .await
        .map_err(netlink_err(format!("set hairpin mode on {host_name}")))
}

async fn ensure_pair_in_bridge(
    host: &Handle,
    ns: &Netns,
    host_name: &str,
    bridge_index: u32,
) -> Result<(), NetError> {
    match create_pair(host, ns, host_name, bridge_index).await {
        Ok(()) => return Ok(()),
        Err(NetError::Netlink { source, .. })
            if NetError::netlink_errno(&source) == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    // The host end exists already. In a namespace that was already there (re-attach after a
    // daemon restart) it is normally this replica's pair: keep it, so the running container keeps
    // its network. In a new namespace it is left over from a namespace the kernel is still
    // freeing (detach only unpins it), or from a crash: replace it.
    if !ns.created && find_link(&ns.handle, PEER_NAME).await?.is_some() {
        return host
            .link()
            .set(
                LinkUnspec::new_with_name(host_name)
                    .controller(bridge_index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink_err(format!(
                "set {host_name} up in bridge {bridge_index}"
            )));
    }
    tracing::debug!(veth = host_name, "replacing leftover veth");
    crate::bridge::delete_link(host, host_name).await?;
    create_pair(host, ns, host_name, bridge_index).await
}

async fn create_pair(
    host: &Handle,
    ns: &Netns,
    host_name: &str,
    bridge_index: u32,
) -> Result<(), NetError> {
    // The peer is created directly inside the netns (IFLA_NET_NS_FD in the peer's message). It
    // cannot be created up: kernel 6.18 answers ENOTCONN (`ip link add .. peer .. up` too), so
    // configure_inside sets it up.
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(PEER_NAME.to_string())
        .setns_by_fd(ns.raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_name.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge_index)
        .up()
        .build();
    host.link()
        .add(msg)
        .execute()
        .await
        .map_err(netlink_err(format!(
            "add veth {host_name} peer {PEER_NAME} in bridge {bridge_index}"
        )))?;
    tracing::debug!(veth = host_name, "created veth pair");
    Ok(())
}

/// Configures the replica's side: lo up, eth0 up with `ip/prefix` as its only address, and the
/// default route via `gateway`. Every step is idempotent.
pub(crate) async fn configure_inside(
    ns: &Handle,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    // Without lo up nothing inside reaches 127.0.0.1, nor even its own address.
    let lo = set_up(ns, LOOPBACK_INDEX, "lo");
    let eth0 = async {
        let index = find_link(ns, PEER_NAME)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| NetError::LinkKind {
                name: PEER_NAME.to_string(),
                expected: "veth in the replica's netns (it is missing)",
            })?;
        set_up(ns, index, PEER_NAME).await?;
        ensure_only_address(ns, index, PEER_NAME, ip, prefix).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        ns.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(netlink_err(format!("add default route via {gateway}")))
    };
    tokio::try_join!(lo, eth0)?;
    tracing::debug!(%ip, prefix, %gateway, "configured eth0 in the netns");
    Ok(())
}
