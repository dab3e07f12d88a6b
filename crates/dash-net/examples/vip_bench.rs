//! Times the programming of services' virtual IPs on a throwaway network: the whole chain of
//! virtual IP ports written in one nft transaction, as every node does on each change.
//!
//! ```text
//! vip_bench [SERVICES] [PORTS] [BACKENDS] [N]
//!     SERVICES services (default 1000) with PORTS tcp ports each (default 10) and BACKENDS
//!     ready replicas each (default 2): N rewrites (default 10), each after one service's
//!     replicas changed (the first is the table from nothing); then one service scaled from
//!     1 to 20 replicas (one rewrite). Needs root and nft
//! ```
//! Prints min/median/max in ms. Uses bridge `dashvip0`, table `dash_vip_bench`, subnet
//! 10.203.0.0/24 and a temp netns dir, and removes them at the end.

#[path = "support/mod.rs"]
mod support;

use std::net::Ipv4Addr;
use std::time::Instant;

use dash_net::{NetConfig, Network, Protocol, VipPort};

fn arg<T: std::str::FromStr>(i: usize, default: T, what: &str) -> Result<T, String> {
    match std::env::args().nth(i) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("{what} must be a number, got {a:?}")),
        None => Ok(default),
    }
}

/// Service `s`'s virtual IP ports with `backends` replicas (addresses from 10.204.0.0/14).
fn service(s: u32, ports: u16, backends: u32) -> Vec<VipPort> {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + s);
    let replicas: Vec<Ipv4Addr> = (0..backends)
        .map(|b| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 204, 0, 0)) + s * 32 + b))
        .collect();
    (0..ports)
        .map(|p| VipPort {
            vip,
            protocol: Protocol::Tcp,
            port: 8000 + p,
            backends: replicas.clone(),
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let services: u32 = arg(1, 1000, "SERVICES")?;
    let ports: u16 = arg(2, 10, "PORTS")?;
    let backends: u32 = arg(3, 2, "BACKENDS")?.min(31);
    let n: usize = arg(4, 10, "N")?;
    let dir = tempfile::tempdir()?;
    let cfg = NetConfig {
        bridge: "dashvip0".into(),
        subnet: "10.203.0.0/24".parse()?,
        nft_table: "dash_vip_bench".into(),
        netns_dir: dir.path().join("netns"),
    };
    let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    let net = Network::init(cfg).await?;
    let mut all: Vec<Vec<VipPort>> = (0..services).map(|s| service(s, ports, backends)).collect();
    let flat = |all: &[Vec<VipPort>]| all.iter().flatten().cloned().collect::<Vec<_>>();
    println!(
        "{services} services × {ports} ports × {backends} replicas: {} port chains, {} dnat rules, one verdict map",
        services * u32::from(ports),
        services * u32::from(ports) * backends
    );
    let (mut rewrites, mut scale) = (Vec::new(), Vec::new());
    let result = async {
        for i in 0..n {
            if i > 0 {
                // One service's replicas changed: the chain is rewritten whole.
                let s = (i as u32) % services.max(1);
                let now = all[s as usize][0].backends.len() as u32;
                all[s as usize] = service(s, ports, if now > 1 { now - 1 } else { backends });
            }
            let vips = flat(&all);
            let t = Instant::now();
            net.set_vips(&vips).await?;
            rewrites.push(t.elapsed());
        }
        if services > 0 {
            all[0] = service(0, ports, 1);
            net.set_vips(&flat(&all)).await?;
            all[0] = service(0, ports, 20);
            let vips = flat(&all);
            let t = Instant::now();
            net.set_vips(&vips).await?;
            scale.push(t.elapsed());
        }
        Ok::<(), dash_net::NetError>(())
    }
    .await;
    net.teardown().await?;
    support::restore_forward(&forward_before)?;
    result?;
    support::summary("whole chain written (one batch)", 34, rewrites);
    support::summary("one service scaled 1 → 20", 34, scale);
    Ok(())
}
