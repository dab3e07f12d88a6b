//! Times attach/detach cycles of one replica with one published port on a throwaway network.
//!
//! ```text
//! attach_bench [N] [PORTS] [SHARED]
//!     N cycles (default 50) of a replica of service `bench` publishing PORTS tcp ports from
//!     27900 (default 1; 0 skips nft entirely), while SHARED other replicas of the service
//!     (default 0, at most 200) back the same ports; needs root and nft
//! ```
//! Every attach and detach rewrites the chain of published ports, so its cost grows with
//! PORTS × (SHARED + 1) backends. Prints min/median/max in ms for attach, detach, and the time
//! until the kernel has freed the veth after detach (the netns is freed in the background). Uses
//! bridge `dashbench0`, table `dash_bench`, subnet 10.202.0.0/24 and a temp netns dir, and
//! removes them at the end.

#[path = "support/mod.rs"]
mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use dash_net::{NetConfig, Network, PortMapping, Protocol};

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("N must be a number, got {arg:?}"))?,
        None => 50,
    };
    let port_count: u16 = match std::env::args().nth(2) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("PORTS must be a number, got {arg:?}"))?,
        None => 1,
    };
    let shared: u8 = match std::env::args().nth(3) {
        Some(arg) => arg
            .parse()
            .ok()
            .filter(|n| *n <= 200)
            .ok_or_else(|| format!("SHARED must be a number from 0 to 200, got {arg:?}"))?,
        None => 0,
    };
    let dir = tempfile::tempdir()?;
    let cfg = NetConfig {
        bridge: "dashbench0".into(),
        subnet: "10.202.0.0/24".parse()?,
        nft_table: "dash_bench".into(),
        netns_dir: dir.path().join("netns"),
    };
    let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    let t = Instant::now();
    let net = Network::init(cfg).await?;
    println!(
        "init           {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let ports: Vec<PortMapping> = (0..port_count)
        .map(|i| PortMapping {
            host_port: 27900 + i,
            container_port: 8080,
            protocol: Protocol::Tcp,
        })
        .collect();
    let ip = Ipv4Addr::new(10, 202, 0, 2);
    let (mut attach, mut detach, mut freed) = (Vec::new(), Vec::new(), Vec::new());
    let result = async {
        let t = Instant::now();
        for i in 0..shared {
            let ip = Ipv4Addr::new(10, 202, 0, 10 + i);
            net.attach(&format!("shared-{i}"), ip, &ports, "bench")
                .await?;
        }
        if shared > 0 {
            println!(
                "shared         {shared} replicas attached in {:.2} ms",
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
        for i in 0..n {
            let replica = format!("bench-{i}");
            let t = Instant::now();
            let att = net.attach(&replica, ip, &ports, "bench").await?;
            attach.push(t.elapsed());
            let t = Instant::now();
            net.detach(&replica, ip, &ports).await?;
            detach.push(t.elapsed());
            while link_exists(&att.host_veth) && t.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            freed.push(t.elapsed());
        }
        Ok::<(), dash_net::NetError>(())
    }
    .await;
    net.teardown().await?;
    support::restore_forward(&forward_before)?;
    result?;
    support::summary("attach", 14, attach);
    support::summary("detach", 14, detach);
    support::summary("veth freed", 14, freed);
    Ok(())
}
