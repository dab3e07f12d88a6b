//! network: the node's container [`Network`]: init once, attach and detach replicas, teardown.
//!
//! ```text
//!  init: nft table (chain `published` kept) ── read `published` back ──▶ ports state (in memory)
//!
//!  attach(replica, ip, ports, owner)              detach(replica, ip, ports)
//!  ├─ ports state: refuse another owner's port    ├─ netns: umount + rm the file; the kernel frees
//!  ├─ netns: pin a new one (or enter the pinned)  │  the netns and its veth in the background
//!  │  ├─ veth vd<hash> ⇄ eth0 (peer made inside)  └─ ports state − its backends ─▶ nft: rewrite
//!  │  └─ inside: lo up, eth0 ip/prefix, default      `published` (one batch, if anything changed)
//!  └─ ports state + its backends ─▶ nft: rewrite `published` (one batch, if anything changed)
//!     (the netns and nft branches run concurrently)
//! ```
//! Every step is idempotent, so a step that failed or a daemon that restarted is fixed by doing
//! it again: re-attaching a replica whose netns is pinned keeps that netns (its container keeps
//! running in it) and only repairs what is missing; detaching what is gone succeeds.
//!
//! The ports state sits behind an async mutex that is held across the nft run on purpose: it
//! serialises the rewrites, so two concurrent changes cannot each write a chain missing the
//! other's backends. After a restart the state is read back from nft, so a daemon that
//! re-attaches its replicas one by one never drops the backends of those not yet re-attached.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;

use crate::bridge::{self, netlink_err};
use crate::conntrack::{self, Forget};
use crate::netns::{self, AbortOnDrop};
use crate::nftables::{self, Nft};
use crate::ports::PublishedPorts;
use crate::{NetConfig, NetError, PortMapping, veth};

/// The node's container network: a bridge, its gateway, Dash's nft table and the replicas'
/// namespaces. Holds a netlink connection to the host's namespace (a task on the runtime that
/// called [`Network::init`], ended when the `Network` is dropped).
pub struct Network {
    cfg: NetConfig,
    bridge_index: u32,
    host: rtnetlink::Handle,
    nft: Nft,
    /// What the chain `published` holds; see the module doc for why the lock spans the nft run.
    ports: tokio::sync::Mutex<PublishedPorts>,
    /// The peer subnets last written to the nft set (written again only when they change).
    peers: tokio::sync::Mutex<Option<Vec<String>>>,
    /// The virtual IP ports last written (see [`Network::set_vips`]).
    vips: tokio::sync::Mutex<Option<Vec<crate::VipPort>>>,
    /// The networks' members last written (see [`Network::set_isolation`]).
    isolation: tokio::sync::Mutex<Option<std::collections::BTreeMap<String, Vec<Ipv4Addr>>>>,
    _connection: AbortOnDrop,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("cfg", &self.cfg)
            .field("bridge_index", &self.bridge_index)
            .finish_non_exhaustive()
    }
}

/// What [`Network::attach`] set up for one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The pinned netns: give it to the OCI runtime (`{"type": "network", "path": ...}`).
    pub netns_path: PathBuf,
    /// The host end of the veth pair, in the bridge.
    pub host_veth: String,
    /// The replica's address on eth0.
    pub ip: Ipv4Addr,
}

/// The host end of a replica's veth pair: `vd` + 12 hex digits of a stable hash of the replica
/// id (48 bits: two ids of 10 000 replicas collide with odds of about 1 in 5 million).
pub fn host_veth_name(replica: &str) -> String {
    format!(
        "vd{:012x}",
        crate::fnv1a(replica.as_bytes()) & 0xffff_ffff_ffff
    )
}

fn validate_replica(replica: &str) -> Result<(), NetError> {
    let bad = |reason| NetError::ReplicaId {
        replica: replica.to_string(),
        reason,
    };
    if replica.is_empty() || replica.len() > 200 {
        return Err(bad("must be 1 to 200 characters"));
    }
    if replica.starts_with('.') {
        return Err(bad("must not start with '.'"));
    }
    if !crate::is_plain(replica) {
        return Err(bad("may only hold letters, digits, '_', '-', '.'"));
    }
    Ok(())
}

/// An owner is written in an nft comment (at most 128 characters), so it is kept short and plain.
/// Service names (a DNS label of at most 48 characters) always pass.
fn validate_owner(owner: &str) -> Result<(), NetError> {
    let bad = |reason| NetError::Owner {
        owner: owner.to_string(),
        reason,
    };
    if owner.is_empty() || owner.len() > 64 {
        return Err(bad("must be 1 to 64 characters"));
    }
    if !crate::is_plain(owner) {
        return Err(bad("may only hold letters, digits, '_', '-', '.'"));
    }
    Ok(())
}

fn validate_ports(replica: &str, ports: &[PortMapping]) -> Result<(), NetError> {
    let mut seen = HashSet::new();
    for p in ports {
        let bad = |reason| NetError::PortMapping {
            replica: replica.to_string(),
            mapping: p.to_string(),
            reason,
        };
        if p.host_port == 0 || p.container_port == 0 {
            return Err(bad("ports must be 1 to 65535"));
        }
        if !seen.insert((p.protocol, p.host_port)) {
            return Err(bad("the host port is published twice"));
        }
    }
    Ok(())
}

impl Network {
    /// Sets up the node's network, reusing what exists: the bridge with the gateway (the first
    /// address of the subnet) up on it, `net.ipv4.ip_forward=1`, `route_localnet=1` on the bridge
    /// (so 127.0.0.1:published can be DNATed out of it), the netns dir, and the nft table with its
    /// chains rewritten but `published` kept: published ports keep answering while the daemon is
    /// down and across init, and are read back as the starting state.
    #[tracing::instrument(level = "debug", skip_all, fields(bridge = %cfg.bridge, subnet = %cfg.subnet))]
    pub async fn init(cfg: NetConfig) -> Result<Network, NetError> {
        cfg.validate()?;
        let (connection, host, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
            op: "opening a netlink socket in",
            path: PathBuf::from("/proc/self/ns/net"),
            source,
        })?;
        let connection = AbortOnDrop(tokio::spawn(connection));
        let bridge_index = bridge::ensure_bridge(&host, &cfg.bridge, &cfg.subnet).await?;
        bridge::ensure_sysctl(&["net", "ipv4", "ip_forward"], "1")?;
        bridge::ensure_sysctl(&["net", "ipv4", "conf", &cfg.bridge, "route_localnet"], "1")?;
        netns::ensure_dir(&cfg.netns_dir)?;
        let nft = Nft::new();
        let bridged_conntrack = bridge::bridged_conntrack();
        if !bridged_conntrack {
            tracing::info!(
                "br_netfilter is not on (net.bridge.bridge-nf-call-iptables): a replica reaching \
                 a neighbour through a virtual IP or published port is masqueraded, so the \
                 neighbour sees this node's gateway address, not the caller's"
            );
        }
        nft.apply(&nftables::init_script(
            &cfg.nft_table,
            &cfg.bridge,
            &cfg.subnet,
            bridged_conntrack,
        ))
        .await?;
        let ports = nft.published_ports(&cfg.nft_table).await?;
        tracing::debug!(
            ports = ports.iter().count(),
            backends = ports.backend_count(),
            "published ports read back"
        );
        Ok(Network {
            cfg,
            bridge_index,
            host,
            nft,
            ports: tokio::sync::Mutex::new(ports),
            peers: tokio::sync::Mutex::new(None),
            isolation: tokio::sync::Mutex::new(None),
            vips: tokio::sync::Mutex::new(None),
            _connection: connection,
        })
    }

    /// Leads each port of the services' virtual IPs to their ready replicas (see
    /// `nftables::services_script`). Rewritten in one nft transaction when it differs from the
    /// last one written.
    pub async fn set_vips(&self, vips: &[crate::VipPort]) -> Result<(), NetError> {
        let mut last = self.vips.lock().await;
        if last.as_deref() == Some(vips) {
            return Ok(());
        }
        // The chains of ports that are gone: the last ones written, or at the first write
        // those a previous run of the daemon left.
        let before: Vec<String> = match last.as_ref() {
            Some(l) => l.iter().map(nftables::vip_chain).collect(),
            None => self
                .nft
                .chains(&self.cfg.nft_table)
                .await?
                .into_iter()
                .filter(|c| c.starts_with(nftables::VIP_CHAIN_PREFIX))
                .collect(),
        };
        let now: std::collections::HashSet<String> = vips.iter().map(nftables::vip_chain).collect();
        let mut stale: Vec<String> = before.into_iter().filter(|c| !now.contains(c)).collect();
        stale.sort();
        stale.dedup();
        self.nft
            .apply(&nftables::services_script(
                &self.cfg.nft_table,
                vips,
                &stale,
            ))
            .await?;
        // UDP backends that left a port: their flows are balanced again from the next packet.
        let left: Vec<(Ipv4Addr, u16)> = match last.as_ref() {
            Some(before) => {
                let now = udp_backends(vips);
                udp_backends(before)
                    .into_iter()
                    .filter(|b| !now.contains(b))
                    .collect()
            }
            None => Vec::new(),
        };
        *last = Some(vips.to_vec());
        drop(last);
        forget_flows(Forget::UdpAnsweredBy(left)).await;
        Ok(())
    }

    /// Keeps replicas to the networks they share: `networks` maps each network to the
    /// addresses of every replica on it, cluster-wide (the masters' feed). Rewritten in one
    /// nft transaction when it differs from the last one written.
    pub async fn set_isolation(
        &self,
        networks: &std::collections::BTreeMap<String, Vec<Ipv4Addr>>,
    ) -> Result<(), NetError> {
        let mut last = self.isolation.lock().await;
        if last.as_ref() == Some(networks) {
            return Ok(());
        }
        self.nft
            .apply(&nftables::isolation_script(&self.cfg.nft_table, networks))
            .await?;
        *last = Some(networks.clone());
        Ok(())
    }

    /// Routes to other nodes' container subnets: each via that node's address (static routes:
    /// the nodes share a network). Replaces what is there; routes of nodes no longer listed are
    /// left (a node that left keeps its subnet reserved until it is removed).
    pub async fn set_peer_routes(
        &self,
        peers: &[(crate::Ipv4Net, Ipv4Addr)],
    ) -> Result<(), NetError> {
        let mut subnets: Vec<String> = peers
            .iter()
            .filter(|(net, _)| *net != self.cfg.subnet)
            .map(|(net, _)| net.to_string())
            .collect();
        subnets.sort();
        subnets.dedup();
        {
            let mut last = self.peers.lock().await;
            if last.as_ref() != Some(&subnets) {
                self.nft
                    .apply(&nftables::peers_script(&self.cfg.nft_table, &subnets))
                    .await?;
                *last = Some(subnets);
            }
        }
        for (net, via) in peers {
            if *net == self.cfg.subnet {
                continue;
            }
            let msg = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.addr(), net.prefix())
                .gateway(*via)
                .build();
            self.host
                .route()
                .add(msg)
                .replace()
                .execute()
                .await
                .map_err(|source| NetError::Netlink {
                    op: format!("adding the route to {net} via {via}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// The configuration this network was set up with.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// The gateway address, on the bridge: the first address of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cfg.subnet.gateway()
    }

    /// Where the netns of `replica` is pinned.
    pub fn netns_path(&self, replica: &str) -> PathBuf {
        self.cfg.netns_dir.join(replica)
    }

    /// The replicas that have a netns pinned here (their ids), for a sweep of leftovers.
    pub fn attached(&self) -> Result<Vec<String>, NetError> {
        Ok(netns::list(&self.cfg.netns_dir)?
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    /// Gives `replica` its own netns with `ip` on eth0, joined to the bridge, and makes it a
    /// backend of exactly `ports`. Replicas of one `owner` (the service) share a published port,
    /// load-balanced round-robin per new connection; a port published by replicas of another
    /// owner is refused with [`NetError::PortOwned`] before anything changes.
    ///
    /// The chain of published ports is rewritten in one nft batch, and not at all when its rules
    /// stay the same: a re-attach costs no nft run. Attaching a replica that is already attached
    /// succeeds and repairs its netns and veth, keeping the netns. On an error other than a
    /// refused port (or a port taken by a concurrent attach meanwhile), parts may be in place:
    /// [`Network::detach`] removes them.
    ///
    /// The replica takes connections from the moment this returns, so until its container
    /// listens, the connections given to it are refused.
    #[tracing::instrument(level = "debug", skip_all, fields(replica = %replica, ip = %ip, owner = %owner))]
    pub async fn attach(
        &self,
        replica: &str,
        ip: Ipv4Addr,
        ports: &[PortMapping],
        owner: &str,
    ) -> Result<Attachment, NetError> {
        validate_replica(replica)?;
        if !self.cfg.subnet.is_container_addr(ip) {
            return Err(NetError::Address {
                ip,
                subnet: self.cfg.subnet,
            });
        }
        validate_ports(replica, ports)?;
        validate_owner(owner)?;
        // Refuse another service's port before making a netns. A concurrent attach may still take
        // the port meanwhile; then the check below (under the same lock) refuses it.
        self.ports.lock().await.attach(replica, ip, ports, owner)?;
        let netns_path = self.netns_path(replica);
        let host_veth = host_veth_name(replica);
        let publish = self.change_ports(|p| p.attach(replica, ip, ports, owner));
        // join, not try_join: neither half is cancelled midway when the other fails.
        let (links, nft) = tokio::join!(self.attach_links(&netns_path, &host_veth, ip), publish);
        links?;
        nft?;
        Ok(Attachment {
            netns_path,
            host_veth,
            ip,
        })
    }

    /// Applies `change` to the ports state: rewrites the chain `published` if its rules change,
    /// and keeps the new state only once nft has taken it.
    async fn change_ports(
        &self,
        change: impl FnOnce(&PublishedPorts) -> Result<PublishedPorts, NetError>,
    ) -> Result<(), NetError> {
        let mut current = self.ports.lock().await;
        let next = change(&current)?;
        let table = &self.cfg.nft_table;
        let script = nftables::published_script(table, &next);
        // Equal rules, e.g. a re-attach, or names learned for backends read back after a restart.
        if script != nftables::published_script(table, &current) {
            self.nft.apply(&script).await?;
        }
        *current = next;
        Ok(())
    }

    async fn attach_links(
        &self,
        path: &Path,
        host_veth: &str,
        ip: Ipv4Addr,
    ) -> Result<(), NetError> {
        let ns = netns::enter(path).await?;
        let result = async {
            veth::ensure_pair(&self.host, &ns, host_veth, self.bridge_index).await?;
            veth::configure_inside(&ns.handle, ip, self.cfg.subnet.prefix(), self.gateway()).await
        }
        .await;
        if result.is_ok() {
            self.forget_neighbour(ip).await;
        }
        if result.is_err() && ns.created {
            // Don't leave a half-made namespace pinned; an existing one may hold a container.
            drop(ns);
            if let Err(e) = netns::remove(path) {
                tracing::warn!(error = %e, "removing a half-made netns");
            }
        }
        result
    }

    /// Drops the host's ARP entry for `ip` on the bridge. An address is reused by a new replica
    /// with a new MAC; a stale entry would send the host's packets (the proxy's, a health
    /// check's) to the old MAC for ≈ 5 s (the kernel's `delay_first_probe_time`) before it
    /// re-resolves. Nothing to drop is fine.
    async fn forget_neighbour(&self, ip: Ipv4Addr) {
        use rtnetlink::packet_route::AddressFamily;
        use rtnetlink::packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage,
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.bridge_index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.host.neighbours().del(msg).execute().await {
            Ok(()) => tracing::debug!(%ip, "dropped a stale neighbour entry"),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => {}
            Err(e) => tracing::debug!(%ip, error = %e, "dropping the neighbour entry"),
        }
    }

    /// Removes `replica` from the backends of every port it backs (one nft batch, none if it
    /// backs none; a port whose last backend goes is unpublished) and removes its netns. `ip` and
    /// `ports` are what it was attached with: after a daemon restart, until a replica is attached
    /// again, its backends are known by `ip` only. The kernel frees the netns, and the veth pair
    /// with it, in the background once no process is left in it: stop the container first.
    /// Detaching what is already gone succeeds.
    #[tracing::instrument(level = "debug", skip_all, fields(replica = %replica, ip = %ip))]
    pub async fn detach(
        &self,
        replica: &str,
        ip: Ipv4Addr,
        ports: &[PortMapping],
    ) -> Result<(), NetError> {
        validate_replica(replica)?;
        let path = self.netns_path(replica);
        // Unpinning takes microseconds; deleting the veth ourselves would cost the caller the
        // kernel's RCU wait (≈ 10-20 ms) that the netns cleanup does in the background.
        netns::remove(&path)?;
        self.change_ports(|p| Ok(p.detach(replica, ip, ports)))
            .await?;
        // Nothing of it stays in the connection table (its address goes to a later replica).
        forget_flows(Forget::Touching(vec![ip])).await;
        Ok(())
    }

    /// Removes everything [`Network::init`] and [`Network::attach`] made: the veths in the
    /// bridge, every netns pinned in `netns_dir`, the nft table and the bridge. The sysctl
    /// `ip_forward` stays 1 (other software may rely on it; the caller knows what it was).
    /// Succeeds when things are already gone.
    #[tracing::instrument(level = "debug", skip_all, fields(bridge = %self.cfg.bridge))]
    pub async fn teardown(&self) -> Result<(), NetError> {
        // Deleting the veths here (rather than leaving them to the netns cleanup) means nothing is
        // left when this returns; teardown is rare, so the RCU wait per veth does not matter.
        if let Some(bridge) = bridge::find_link(&self.host, &self.cfg.bridge).await? {
            let index = bridge.header.index;
            let mut ports = Vec::new();
            let mut links = self.host.link().get().execute();
            while let Some(link) = links.try_next().await.map_err(netlink_err("list links"))? {
                if link.attributes.contains(&LinkAttribute::Controller(index)) {
                    ports.push(link.header.index);
                }
            }
            for port in ports {
                match self.host.link().del(port).execute().await {
                    Ok(()) => {}
                    // Freed by the kernel meanwhile (its netns was unpinned earlier).
                    Err(e) if NetError::netlink_errno(&e) == Some(libc::ENODEV) => {}
                    Err(e) => return Err(netlink_err(format!("delete bridge port {port}"))(e)),
                }
            }
        }
        for path in netns::list(&self.cfg.netns_dir)? {
            netns::remove(&path)?;
        }
        {
            let mut ports = self.ports.lock().await;
            self.nft
                .apply(&nftables::delete_table_script(&self.cfg.nft_table))
                .await?;
            *ports = PublishedPorts::default();
        }
        bridge::delete_link(&self.host, &self.cfg.bridge).await?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "network_test.rs"]
mod tests;

/// Every `(replica, port)` behind a UDP port of a virtual IP.
fn udp_backends(vips: &[crate::VipPort]) -> std::collections::BTreeSet<(Ipv4Addr, u16)> {
    vips.iter()
        .filter(|v| v.protocol == crate::Protocol::Udp)
        .flat_map(|v| v.backends.iter().map(|b| (*b, v.port)))
        .collect()
}

/// Deletes the conntrack entries `which` names, on a blocking thread (this netns's table). A
/// failure is logged, not returned: the maps are already right, and the entries time out.
async fn forget_flows(which: Forget) {
    if which.is_empty() {
        return;
    }
    match tokio::task::spawn_blocking(move || conntrack::forget(&which)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::debug!(entries = n, "conntrack entries forgotten"),
        Ok(Err(e)) => tracing::warn!(error = %e, "deleting conntrack entries"),
        Err(e) => tracing::warn!(error = %e, "deleting conntrack entries"),
    }
}
