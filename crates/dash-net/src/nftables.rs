//! nftables: Dash's firewall table, written as one `nft -f -` batch per change.
//!
//! This module is the only place that runs a program. Every change is one batch, which the
//! kernel applies as one transaction (all or nothing), and costs one process start (≈ 3–7 ms)
//! whatever its size. Only the table `ip <table>` is ever named, so no other table is touched.
//!
//! ```text
//! table ip dash
//!   map tcp_ports, udp_ports   published port → container ip . port
//!   prerouting  (nat, dstnat)  fib daddr type local: dnat ip to tcp dport map @tcp_ports (and udp)
//!   output      (nat, -100)    the same, for connections made on the host (127.0.0.1:port)
//!   postrouting (nat, srcnat)  masquerade: 127.0.0.0/8 → bridge, hairpin (dnat'd subnet → subnet),
//!                              subnet → anywhere but the subnet
//!   forward     (filter)       accept from and to the bridge
//! ```
//! Attaching a replica adds its map elements, detaching deletes them: the rules never change
//! after [`init_script`], so a change costs the same with 1 replica as with 1000.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::ipam::Ipv4Net;
use crate::{NetError, PortMapping, Protocol};

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
        let argv = format!("{} {}", self.program.display(), args.join(" "));
        tracing::debug!(%argv, script = stdin.unwrap_or(""), "nft");
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

    /// Whether the table `ip <table>` exists: `nft -j list tables`.
    pub(crate) async fn table_exists(&self, table: &str) -> Result<bool, NetError> {
        let args = ["-j", "list", "tables", "ip"];
        let out = self.run(&args, None).await?;
        let json = parse_json(&self.argv(&args), &out)?;
        Ok(json_items(&json, "table").any(|t| t["name"].as_str() == Some(table)))
    }

    /// The elements of a port map as (published port, container ip, container port):
    /// `nft -j list map ip <table> <map>`.
    pub(crate) async fn map_elements(
        &self,
        table: &str,
        protocol: Protocol,
    ) -> Result<Vec<(u16, Ipv4Addr, u16)>, NetError> {
        let map = map_name(protocol);
        let args = ["-j", "list", "map", "ip", table, map];
        let argv = self.argv(&args);
        let out = self.run(&args, None).await?;
        let json = parse_json(&argv, &out)?;
        let bad = |reason: &str| NetError::NftOutput {
            argv: argv.clone(),
            reason: reason.to_string(),
        };
        let mut elements = Vec::new();
        for m in json_items(&json, "map") {
            let Some(elems) = m.get("elem").and_then(|e| e.as_array()) else {
                continue; // an empty map has no "elem"
            };
            for e in elems {
                let parsed = (|| {
                    let host = u16::try_from(e.get(0)?.as_u64()?).ok()?;
                    let concat = e.get(1)?.get("concat")?;
                    let ip = concat.get(0)?.as_str()?.parse().ok()?;
                    let port = u16::try_from(concat.get(1)?.as_u64()?).ok()?;
                    Some((host, ip, port))
                })();
                elements.push(parsed.ok_or_else(|| bad("map element is not port : ip . port"))?);
            }
        }
        Ok(elements)
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

pub(crate) fn map_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp_ports",
        Protocol::Udp => "udp_ports",
    }
}

/// Creates the table if needed and (re)writes its chains, keeping the map elements, so published
/// ports of running replicas keep working across a daemon restart. Names were validated by
/// [`crate::NetConfig::validate`], so they need no quoting beyond the interface name's.
pub(crate) fn init_script(table: &str, bridge: &str, subnet: &Ipv4Net) -> String {
    let t = format!("ip {table}");
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("add table {t}"));
    for proto in [Protocol::Tcp, Protocol::Udp] {
        line(format!(
            "add map {t} {} {{ type inet_service : ipv4_addr . inet_service; }}",
            map_name(proto)
        ));
    }
    for (chain, spec) in [
        ("prerouting", "type nat hook prerouting priority dstnat"),
        ("output", "type nat hook output priority -100"),
        ("postrouting", "type nat hook postrouting priority srcnat"),
        ("forward", "type filter hook forward priority filter"),
    ] {
        line(format!("add chain {t} {chain} {{ {spec}; policy accept; }}"));
        line(format!("flush chain {t} {chain}"));
    }
    for chain in ["prerouting", "output"] {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            line(format!(
                "add rule {t} {chain} fib daddr type local dnat ip to {proto} dport map @{}",
                map_name(proto)
            ));
        }
    }
    // 127.0.0.1:published → container: the source must be rewritten or the reply goes nowhere
    // (route_localnet=1 on the bridge lets such packets leave it at all).
    line(format!(
        "add rule {t} postrouting ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade"
    ));
    // Hairpin: a container reaching a published port that leads back into the subnet (itself or
    // a neighbour) would get the reply straight from the target, not from the address it dialled.
    line(format!(
        "add rule {t} postrouting ct status dnat ip saddr {subnet} ip daddr {subnet} masquerade"
    ));
    line(format!(
        "add rule {t} postrouting ip saddr {subnet} ip daddr != {subnet} masquerade"
    ));
    line(format!("add rule {t} forward iifname \"{bridge}\" accept"));
    line(format!("add rule {t} forward oifname \"{bridge}\" accept"));
    s
}

fn element(mapping: &PortMapping, ip: Ipv4Addr) -> String {
    format!(
        "{{ {} : {ip} . {} }}",
        mapping.host_port, mapping.container_port
    )
}

/// Adds the published ports of one replica. Adding an element that is already there with the
/// same target is a no-op, so a re-attach succeeds; a port published by another replica fails
/// the whole batch ("File exists").
pub(crate) fn add_ports_script(table: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "add element ip {table} {} {}\n",
                map_name(p.protocol),
                element(p, ip)
            )
        })
        .collect()
}

/// Removes the published ports of one replica, and succeeds if they are already gone.
///
/// nft 1.0.6 has no `destroy element`, and `delete` of a missing element fails the batch. So each
/// element is added first (a no-op when present) and then deleted. If a port now points to
/// another replica, that add fails the batch and nothing changes: the caller then deletes only
/// the elements that still point to this replica (see [`delete_elements_script`]).
pub(crate) fn remove_ports_script(table: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> String {
    let mut s = add_ports_script(table, ip, ports);
    for p in ports {
        s.push_str(&format!(
            "delete element ip {table} {} {{ {} }}\n",
            map_name(p.protocol),
            p.host_port
        ));
    }
    s
}

/// Deletes the given published ports (known to exist) from their maps.
pub(crate) fn delete_elements_script(table: &str, keys: &[(Protocol, u16)]) -> String {
    keys.iter()
        .map(|(proto, port)| {
            format!(
                "delete element ip {table} {} {{ {port} }}\n",
                map_name(*proto)
            )
        })
        .collect()
}

/// Deletes the table with everything in it; succeeds when it does not exist.
pub(crate) fn delete_table_script(table: &str) -> String {
    // `add` first: `delete` of a missing table would fail the batch.
    format!("add table ip {table}\ndelete table ip {table}\n")
}

#[cfg(test)]
#[path = "nftables_test.rs"]
mod tests;
