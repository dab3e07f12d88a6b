//! nftables: Dash's firewall table, written as one `nft -f -` batch per change.
//!
//! This module is the only place that runs a program. Every change is one batch, which the
//! kernel applies as one transaction (all or nothing), and costs one process start (≈ 3–7 ms)
//! plus nft parsing it. Only the table `ip <table>` is ever named, so no other table is touched.
//!
//! ```text
//! table ip dash
//!   published                  one rule per published port: if the destination is local,
//!                              dnat to one of its replicas, round-robin (see `published_script`)
//!   services                   virtual IP . protocol . port vmap @vips (→ goto vip_<ip>_<proto>_<port>:
//!                              dnat to one of its ready replicas at random; none ready: drop),
//!                              then drop for any other port of a virtual IP (`services_script`)
//!   prerouting  (nat, dstnat)  jump services, jump published
//!   output      (nat, -100)    the same, for connections made on the host (127.0.0.1:port)
//!   postrouting (nat, srcnat)  masquerade: 127.0.0.0/8 → bridge, hairpin (dnat'd back to the
//!                              sender, @hairpin; with no bridged conntrack, any dnat'd subnet →
//!                              subnet), subnet → anywhere but the subnet
//!   forward     (filter)       replica → replica: jump isolate; accept from and to the bridge
//!   input       (filter)       drop packets to 127.0.0.0/8 from anywhere but lo, unless dnat'd
//!   isolate                    one rule per network: accept if both ends are on it; drop
//!   @replicas                  every replica's address in the cluster (set_isolation)
//! table bridge <same name>     the same filter for traffic switched inside the bridge (two
//!   forward, isolate, @replicas  replicas of this node), which the ip family never sees
//! ```
//! Attaching or detaching a replica rewrites the chain `published` (flush + every rule, one batch)
//! from the state in [`crate::ports`]; the other chains never change after [`init_script`].
//! Rewriting the whole chain costs more with more backends, but keeps nft and the state equal
//! by construction, with no rule handles to track.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::ipam::Ipv4Net;
use crate::ports::{Backend, PortKey, Published, PublishedPorts};
use crate::{NetError, Protocol};

/// How long one `nft` run may take before it is killed: a batch normally takes a few ms.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the `nft` program.
#[derive(Clone, Debug)]
pub(crate) struct Nft {
    program: PathBuf,
    timeout: Duration,
}

impl Nft {
    /// Finds `nft` in the usual sbin directories (a daemon's PATH may lack them), else on PATH.
    pub(crate) fn new() -> Nft {
        let program = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map_or_else(|| PathBuf::from("nft"), Path::to_path_buf);
        Nft {
            program,
            timeout: NFT_TIMEOUT,
        }
    }

    /// Applies `script` as one batch: `nft -f -`.
    pub(crate) async fn apply(&self, script: &str) -> Result<(), NetError> {
        self.run(&["-f", "-"], Some(script)).await.map(drop)
    }

    /// Runs `nft ARGS`, feeding `stdin` if given; returns stdout.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
        let argv = self.argv(args);
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NetError::NftSpawn {
                argv: argv.clone(),
                source,
            })?;
        tracing::debug!(%argv, pid = child.id(), script = stdin.unwrap_or(""), "nft");
        let input = child.stdin.take();
        let feed = async move {
            match (input, stdin) {
                (Some(mut pipe), Some(text)) => {
                    pipe.write_all(text.as_bytes()).await?;
                    pipe.shutdown().await
                }
                _ => Ok(()),
            }
        };
        // Feed and wait together: nft may answer (or fail) before it has read everything.
        let both = async { tokio::join!(feed, child.wait_with_output()) };
        let (fed, output) = tokio::time::timeout(self.timeout, both)
            .await
            .map_err(|_| NetError::NftTimeout {
                argv: argv.clone(),
                timeout: self.timeout,
            })?;
        let output = output.map_err(|source| NetError::NftSpawn {
            argv: argv.clone(),
            source,
        })?;
        if !output.status.success() {
            return Err(NetError::Nft {
                argv,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        fed.map_err(|source| NetError::NftSpawn {
            argv: argv.clone(),
            source,
        })?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The published ports as the chain `published` holds them: `nft -j list chain`. Backends
    /// come back without replica names (nft does not keep them).
    pub(crate) async fn published_ports(&self, table: &str) -> Result<PublishedPorts, NetError> {
        let args = ["-j", "list", "chain", "ip", table, PUBLISHED_CHAIN];
        let argv = self.argv(&args);
        let out = self.run(&args, None).await?;
        parse_published(&argv, &parse_json(&argv, &out)?)
    }

    /// The names of the chains of `table` (`nft -j list chains`), of every table filtered.
    pub(crate) async fn chains(&self, table: &str) -> Result<Vec<String>, NetError> {
        let args = ["-j", "list", "chains", "ip"];
        let argv = self.argv(&args);
        let out = self.run(&args, None).await?;
        Ok(json_items(&parse_json(&argv, &out)?, "chain")
            .filter(|c| c["table"] == table)
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect())
    }

    fn argv(&self, args: &[&str]) -> String {
        format!("{} {}", self.program.display(), args.join(" "))
    }
}

fn parse_json(argv: &str, out: &str) -> Result<serde_json::Value, NetError> {
    serde_json::from_str(out).map_err(|e| NetError::NftOutput {
        argv: argv.to_string(),
        reason: e.to_string(),
    })
}

/// The objects of one kind (`"table"`, `"map"`) in `{"nftables": [{"table": {..}}, ..]}`.
fn json_items<'a>(
    json: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |item| item.get(kind))
}

/// The regular chain holding one dnat rule per published port; prerouting and output jump to it.
pub(crate) const PUBLISHED_CHAIN: &str = "published";
/// The set of other nodes' container subnets.
pub(crate) const PEERS_SET: &str = "peers";
/// Every replica's address in the cluster: traffic between two of them is kept to the
/// networks they share (chain `isolate`).
pub(crate) const REPLICAS_SET: &str = "replicas";
pub(crate) const ISOLATE_CHAIN: &str = "isolate";
/// The chain of the services' virtual IPs: one lookup in the verdict map `vips`, then a drop
/// for any other port of a virtual IP.
pub(crate) const SERVICES_CHAIN: &str = "services";
/// `virtual IP . protocol . port : goto <its chain>`.
pub(crate) const VIPS_MAP: &str = "vips";
/// Every virtual IP (for the final drop of `services`).
pub(crate) const VIP_ADDRS_SET: &str = "vip_addrs";
/// `address . address` for every container address of the node's subnet: a packet whose
/// destination is its source after dnat (a replica reaching itself) is masqueraded.
pub(crate) const HAIRPIN_SET: &str = "hairpin";
/// The largest subnet whose hairpin pairs are listed (a /20); larger ones masquerade every
/// dnat'd packet inside the subnet.
pub(crate) const HAIRPIN_MAX_HOSTS: u32 = 4096;
/// The prefix of a virtual IP port's own chain.
pub(crate) const VIP_CHAIN_PREFIX: &str = "vip_";

/// The chain of one virtual IP port: `vip_10_96_0_1_tcp_8080`.
pub(crate) fn vip_chain(v: &crate::VipPort) -> String {
    format!(
        "{VIP_CHAIN_PREFIX}{}_{}_{}",
        v.vip.to_string().replace('.', "_"),
        v.protocol,
        v.port
    )
}

/// Rewrites the services' virtual IPs from `vips`, in one transaction, and deletes the chains
/// in `stale` (ports that are gone). Each port has a chain of its own, reached through the
/// verdict map `vips` (one lookup whatever the number of ports), that picks one of its ready
/// replicas at random with plain rules: the i-th of B replicas takes `numgen random mod (B-i)
/// 0`, the last the rest, so each gets 1/B. No anonymous maps: nft's cost for those grows with
/// the square of their number (measured: 4,000 of them 1.5 s, the same rules without 0.14 s).
/// A port without a ready replica drops; traffic to a virtual IP that leads nowhere is never
/// routed out as an address like any other. Only a connection's first packet passes a nat
/// chain: the rest follow conntrack.
pub(crate) fn services_script(table: &str, vips: &[crate::VipPort], stale: &[String]) -> String {
    let t = format!("ip {table}");
    let mut s = format!("flush map {t} {VIPS_MAP}\nflush set {t} {VIP_ADDRS_SET}\n");
    let mut elements = Vec::with_capacity(vips.len());
    let mut addresses: Vec<Ipv4Addr> = Vec::new();
    for v in vips {
        let chain = vip_chain(v);
        s.push_str(&format!("add chain {t} {chain}\nflush chain {t} {chain}\n"));
        let n = v.backends.len();
        if n == 0 {
            s.push_str(&format!("add rule {t} {chain} drop\n"));
        }
        for (i, b) in v.backends.iter().enumerate() {
            if i + 1 < n {
                s.push_str(&format!(
                    "add rule {t} {chain} numgen random mod {} 0 dnat ip to {b}\n",
                    n - i
                ));
            } else {
                s.push_str(&format!("add rule {t} {chain} dnat ip to {b}\n"));
            }
        }
        elements.push(format!(
            "{} . {} . {} : goto {chain}",
            v.vip, v.protocol, v.port
        ));
        addresses.push(v.vip);
    }
    if !elements.is_empty() {
        s.push_str(&format!(
            "add element {t} {VIPS_MAP} {{ {} }}\n",
            elements.join(", ")
        ));
    }
    addresses.sort();
    addresses.dedup();
    if !addresses.is_empty() {
        s.push_str(&format!(
            "add element {t} {VIP_ADDRS_SET} {{ {} }}\n",
            join(&addresses)
        ));
    }
    for chain in stale {
        s.push_str(&format!("delete chain {t} {chain}\n"));
    }
    s
}

/// Rewrites the isolation of replicas (both families, one transaction): `@replicas` holds every
/// replica address of the cluster, and `isolate` accepts a packet between two of them only if
/// some network has both (one rule per network, its members inline), else drops it. The rule
/// is symmetric, so replies pass without connection tracking (the bridge family has none
/// unless a module is loaded). A replica the feed does not list yet is not isolated.
pub(crate) fn isolation_script(table: &str, networks: &BTreeMap<String, Vec<Ipv4Addr>>) -> String {
    let mut all: Vec<Ipv4Addr> = networks.values().flatten().copied().collect();
    all.sort();
    all.dedup();
    let mut s = String::new();
    for family in ["ip", "bridge"] {
        let t = format!("{family} {table}");
        s.push_str(&format!(
            "flush set {t} {REPLICAS_SET}
"
        ));
        if !all.is_empty() {
            s.push_str(&format!(
                "add element {t} {REPLICAS_SET} {{ {} }}
",
                join(&all)
            ));
        }
        s.push_str(&format!(
            "flush chain {t} {ISOLATE_CHAIN}
"
        ));
        for (name, members) in networks {
            if members.is_empty() {
                continue;
            }
            let set = join(members);
            s.push_str(&format!(
                "add rule {t} {ISOLATE_CHAIN} ip saddr {{ {set} }} ip daddr {{ {set} }} accept comment \"network {name}\"\n"
            ));
        }
        s.push_str(&format!(
            "add rule {t} {ISOLATE_CHAIN} drop
"
        ));
    }
    s
}

fn join(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces the elements of the peers set.
pub(crate) fn peers_script(table: &str, subnets: &[String]) -> String {
    let mut s = format!("flush set ip {table} {PEERS_SET}\n");
    if !subnets.is_empty() {
        s.push_str(&format!(
            "add element ip {table} {PEERS_SET} {{ {} }}\n",
            subnets.join(", ")
        ));
    }
    s
}

/// What a published port's rule comment starts with; the owner follows.
const OWNER_COMMENT: &str = "owner=";

/// Reads the published ports back from `nft -j list chain ip <table> published`, as written by
/// [`published_script`]: one rule per port, its owner in the comment, its backends in the map.
pub(crate) fn parse_published(
    argv: &str,
    json: &serde_json::Value,
) -> Result<PublishedPorts, NetError> {
    let mut ports = BTreeMap::new();
    for rule in json_items(json, "rule") {
        let bad = |reason: String| NetError::NftOutput {
            argv: argv.to_string(),
            reason: format!("rule {}: {reason}", rule["handle"]),
        };
        let (key, published) = parse_rule(rule).map_err(bad)?;
        if ports.insert(key, published).is_some() {
            return Err(bad(format!("{} port {} has two rules", key.0, key.1)));
        }
    }
    Ok(PublishedPorts::from_ports(ports))
}

fn parse_rule(rule: &serde_json::Value) -> Result<(PortKey, Published), String> {
    let owner = rule["comment"]
        .as_str()
        .and_then(|c| c.strip_prefix(OWNER_COMMENT))
        .ok_or("no owner comment")?
        .to_string();
    let exprs = rule["expr"].as_array().ok_or("no expressions")?;
    let protocol_named = |name: &str| match name {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    };
    let (mut protocol, mut port, mut targets) = (None, None, None);
    for e in exprs {
        let m = &e["match"];
        // nft shows `meta l4proto tcp th dport N` as `tcp dport N`; older versions may show both.
        if m["left"]["payload"]["field"] == "dport" {
            port = m["right"].as_u64().and_then(|p| u16::try_from(p).ok());
            if let Some(p) = m["left"]["payload"]["protocol"]
                .as_str()
                .and_then(protocol_named)
            {
                protocol = Some(p);
            }
        }
        if m["left"]["meta"]["key"] == "l4proto" {
            protocol = m["right"].as_str().and_then(protocol_named).or(protocol);
        }
        if let Some(set) = e["dnat"]["addr"]["map"]["data"]["set"].as_array() {
            targets = Some(set);
        }
    }
    let protocol = protocol.ok_or("no tcp or udp match")?;
    let port = port.ok_or("no dport match")?;
    let targets = targets.ok_or("no dnat to a numgen map")?;
    let mut backends = BTreeMap::new();
    for t in targets {
        let target = (|| {
            let concat = t.get(1)?.get("concat")?;
            let ip: Ipv4Addr = concat.get(0)?.as_str()?.parse().ok()?;
            let container_port = u16::try_from(concat.get(1)?.as_u64()?).ok()?;
            Some((ip, container_port))
        })();
        let (ip, container_port) = target.ok_or("a map element is not n : ip . port")?;
        backends.insert(
            ip,
            Backend {
                replica: None,
                container_port,
            },
        );
    }
    Ok(((protocol, port), Published { owner, backends }))
}

/// Rewrites the chain `published` from `ports`, in one transaction: packets see the old rules or
/// the new ones, never none. One rule per port; nft picks its backends round-robin, per new
/// connection (conntrack sends the rest of a connection where its first packet went):
///
/// ```text
/// meta l4proto tcp th dport 18080 fib daddr type local
///     dnat ip to numgen inc mod 2 map { 0 : 10.88.0.2 . 8080, 1 : 10.88.0.3 . 8080 }
/// ```
/// Its cost grows with the number of backends (nft parses the whole chain): see `attach_bench`.
pub(crate) fn published_script(table: &str, ports: &PublishedPorts) -> String {
    let mut s = format!("flush chain ip {table} {PUBLISHED_CHAIN}\n");
    for ((protocol, host_port), published) in ports.iter() {
        let targets: Vec<String> = published
            .backends
            .iter()
            .enumerate()
            .map(|(i, (ip, b))| format!("{i} : {ip} . {}", b.container_port))
            .collect();
        // `mod 1` even for one backend: nft 1.0.6 refuses `dnat ip to 10.88.0.2 . 8080`, and one
        // form is simpler to read back.
        s.push_str(&format!(
            "add rule ip {table} {PUBLISHED_CHAIN} meta l4proto {protocol} th dport {host_port} \
             fib daddr type local dnat ip to numgen inc mod {} map {{ {} }} comment \"{OWNER_COMMENT}{}\"\n",
            targets.len(),
            targets.join(", "),
            published.owner,
        ));
    }
    s
}

/// Creates the table if needed and (re)writes its hooked chains, keeping the chain `published`
/// as it is, so published ports of running replicas keep answering across a daemon restart
/// (the daemon reads them back with [`Nft::published_ports`]). Names were validated by
/// [`crate::NetConfig::validate`], so they need no quoting beyond the interface name's.
pub(crate) fn init_script(
    table: &str,
    bridge: &str,
    subnet: &Ipv4Net,
    bridged_conntrack: bool,
) -> String {
    let t = format!("ip {table}");
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("add table {t}"));
    // Not flushed: its rules are the published ports (see `published_script`).
    line(format!("add chain {t} {PUBLISHED_CHAIN}"));
    // The virtual IPs: the map and the set are not flushed (virtual IPs keep leading to
    // running replicas across a restart; the first feed rewrites them), the chain is.
    line(format!(
        "add map {t} {VIPS_MAP} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    ));
    line(format!("add set {t} {VIP_ADDRS_SET} {{ type ipv4_addr; }}"));
    line(format!("add chain {t} {SERVICES_CHAIN}"));
    line(format!("flush chain {t} {SERVICES_CHAIN}"));
    line(format!(
        "add rule {t} {SERVICES_CHAIN} ip daddr . meta l4proto . th dport vmap @{VIPS_MAP}"
    ));
    line(format!(
        "add rule {t} {SERVICES_CHAIN} ip daddr @{VIP_ADDRS_SET} drop"
    ));
    for (chain, spec) in [
        ("prerouting", "type nat hook prerouting priority dstnat"),
        ("output", "type nat hook output priority -100"),
        ("postrouting", "type nat hook postrouting priority srcnat"),
        ("forward", "type filter hook forward priority filter"),
        ("input", "type filter hook input priority filter"),
    ] {
        line(format!(
            "add chain {t} {chain} {{ {spec}; policy accept; }}"
        ));
        line(format!("flush chain {t} {chain}"));
    }
    for chain in ["prerouting", "output"] {
        line(format!("add rule {t} {chain} jump {SERVICES_CHAIN}"));
        line(format!("add rule {t} {chain} jump {PUBLISHED_CHAIN}"));
    }
    // The host's loopback is not the replicas': route_localnet=1 on the bridge (below) would
    // let a replica that sends a packet to 127.0.0.1 out of its eth0 (a raw socket is enough)
    // reach whatever listens on the host's localhost (the admin API, the proxy, a user's own
    // services). Such packets are dropped unless they belong to a dnat'd connection (the
    // replies of 127.0.0.1:published). Kubernetes' CVE-2020-8558, fixed the same way.
    line(format!(
        "add rule {t} input iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop"
    ));
    // 127.0.0.1:published → container: the source must be rewritten or the reply goes nowhere
    // (route_localnet=1 on the bridge lets such packets leave it at all).
    line(format!(
        "add rule {t} postrouting ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade"
    ));
    // Hairpin: a replica reaching a virtual IP or a published port that leads back into the
    // subnet. Led back to itself, its reply would never leave it (it answers its own address
    // locally): masqueraded, always. Led to a neighbour, the reply is switched inside the
    // bridge, where only bridged conntrack (`br_netfilter`) rewrites it back to the address
    // dialled: with it, the neighbour sees the caller's own address; without it, masqueraded.
    match hairpin_pairs(subnet, bridged_conntrack) {
        Some(pairs) => {
            line(format!(
                "add set {t} {HAIRPIN_SET} {{ type ipv4_addr . ipv4_addr; }}"
            ));
            line(format!("flush set {t} {HAIRPIN_SET}"));
            line(format!("add element {t} {HAIRPIN_SET} {{ {pairs} }}"));
            line(format!(
                "add rule {t} postrouting ct status dnat ip saddr . ip daddr @{HAIRPIN_SET} masquerade"
            ));
        }
        None => line(format!(
            "add rule {t} postrouting ct status dnat ip saddr {subnet} ip daddr {subnet} masquerade"
        )),
    }
    // Other nodes' container subnets (set by `Network::set_peer_routes`): routed as they are,
    // so a replica on another node sees the replica's own address, not this node's.
    line(format!(
        "add set {t} {PEERS_SET} {{ type ipv4_addr; flags interval; }}"
    ));
    line(format!(
        "add rule {t} postrouting ip saddr {subnet} ip daddr @{PEERS_SET} accept"
    ));
    line(format!(
        "add rule {t} postrouting ip saddr {subnet} ip daddr != {subnet} masquerade"
    ));
    // An accept here ends only this chain: a drop in another table's forward chain (e.g. Docker's
    // `iptables -P FORWARD DROP`) still drops. Dash touches no other table, so such a host must
    // allow the bridge there itself.
    // Replica to replica (routed: across nodes, or through a virtual IP): kept to the
    // networks they share. The set and the chain are filled by `isolation_script`; rewritten
    // empty here, until the first feed (nothing is isolated before it).
    for family in ["ip", "bridge"] {
        let t = format!("{family} {table}");
        if family == "bridge" {
            line(format!("add table {t}"));
            line(format!(
                "add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}"
            ));
            line(format!("flush chain {t} forward"));
        }
        line(format!("add set {t} {REPLICAS_SET} {{ type ipv4_addr; }}"));
        line(format!("add chain {t} {ISOLATE_CHAIN}"));
    }
    line(format!(
        "add rule {t} forward ip saddr @{REPLICAS_SET} ip daddr @{REPLICAS_SET} jump {ISOLATE_CHAIN}"
    ));
    line(format!(
        // Only frames from Dash's replica ports (`vd…`, see `host_veth_name`): a bridge-family
        // hook sees every bridge of the host (matching the bridge by name, `meta ibrname`,
        // needs a module this kernel lacks).
        "add rule bridge {table} forward iifname \"vd*\" ip saddr @{REPLICAS_SET} ip daddr @{REPLICAS_SET} jump {ISOLATE_CHAIN}"
    ));
    line(format!("add rule {t} forward iifname \"{bridge}\" accept"));
    line(format!("add rule {t} forward oifname \"{bridge}\" accept"));
    s
}

/// The set of hairpin pairs: `a . a` for every container address of the subnet, when bridged
/// conntrack makes masquerading neighbours unnecessary and the subnet is small enough to list
/// (≤ [`HAIRPIN_MAX_HOSTS`]); `None`: masquerade every dnat'd packet inside the subnet.
fn hairpin_pairs(subnet: &Ipv4Net, bridged_conntrack: bool) -> Option<String> {
    if !bridged_conntrack || subnet.prefix() < 32 - HAIRPIN_MAX_HOSTS.trailing_zeros() as u8 {
        return None;
    }
    let first = u32::from(subnet.addr());
    let last = u32::from(subnet.broadcast());
    let pairs: Vec<String> = (first..=last)
        .map(Ipv4Addr::from)
        .filter(|ip| subnet.is_container_addr(*ip))
        .map(|ip| format!("{ip} . {ip}"))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join(", "))
}

/// Deletes the table with everything in it; succeeds when it does not exist.
pub(crate) fn delete_table_script(table: &str) -> String {
    // `add` first: `delete` of a missing table would fail the batch.
    format!(
        "add table ip {table}\ndelete table ip {table}\nadd table bridge {table}\ndelete table bridge {table}\n"
    )
}

#[cfg(test)]
#[path = "nftables_test.rs"]
mod tests;
