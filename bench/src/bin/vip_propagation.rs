//! vip-propagation: what `bench/vip-propagation.sh` runs. A master and three workers in
//! network namespaces (the e2e harness), real containers: a service with a port (so a virtual
//! IP) scaled 1 → 20 and 20 → 1, TRIALS times each (default 5). A watcher per node reads the
//! node's map of the virtual IP's port (`nft list chain ip dash vip_…` in its namespace) every
//! POLL_MS (default 10) and notes when it first holds the new number of replicas.
//!
//! Per change it prints the time from the `dash scale` command to each node's map, the
//! slowest node ("every node"), and the spread from the first node to the last: the part the
//! feed to the workers adds, whatever the scheduling and container starts before it. Scaling
//! up includes starting 19 containers; scaling down does not (replicas leave the maps before
//! they are stopped). Figures are ± POLL_MS (and each read is an nft run, ≈ 5 ms).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use dash_e2e::cluster::Cluster;

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// How many replicas the node's map of `chain` holds now.
fn backends(netns: &str, chain: &str) -> usize {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .args(["nft", "list", "chain", "ip", "dash", chain])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .matches("dnat to")
        .count()
}

/// Scales to `n` and returns, per node, the time from the command until its map holds `n`.
fn change(c: &Cluster, chain: &str, n: usize, poll: Duration) -> Vec<f64> {
    let t0 = Instant::now();
    let seen: Vec<f64> = std::thread::scope(|scope| {
        let watchers: Vec<_> = c
            .nodes
            .iter()
            .map(|node| {
                let netns = node.netns.clone();
                scope.spawn(move || {
                    loop {
                        if backends(&netns, chain) == n {
                            return t0.elapsed().as_secs_f64() * 1000.0;
                        }
                        assert!(
                            t0.elapsed() < Duration::from_secs(120),
                            "{netns}: map not at {n} in 2 min"
                        );
                        std::thread::sleep(poll);
                    }
                })
            })
            .collect();
        c.ok(&["scale", "api", &n.to_string()]);
        watchers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    seen
}

fn main() {
    let trials: usize = std::env::var("TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(5);
    let poll = Duration::from_millis(
        std::env::var("POLL_MS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(10),
    );
    let c = Cluster::start(67, 3);
    c.import_busybox("bb:vip");
    c.apply(
        "api.toml",
        "name = \"api\"\nimage = \"bb:vip\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         replicas = 1\nstop_grace_period = \"1s\"\n[[ports]]\ncontainer = 8080\n",
    );
    let vip = c.wait("api's virtual IP", Duration::from_secs(30), || {
        c.json(&["service", "inspect", "api"])["vip"]
            .as_str()
            .map(str::to_string)
    });
    let chain = format!("vip_{}_tcp_8080", vip.replace('.', "_"));
    c.wait("1 replica in every map", Duration::from_secs(60), || {
        c.nodes
            .iter()
            .all(|n| backends(&n.netns, &chain) == 1)
            .then_some(())
    });

    let (mut up_all, mut up_spread, mut down_all, mut down_spread) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in 0..trials {
        for (n, all, spread) in [
            (20, &mut up_all, &mut up_spread),
            (1, &mut down_all, &mut down_spread),
        ] {
            let mut per_node = change(&c, &chain, n, poll);
            let (first, _, last) = stats(&mut per_node);
            eprintln!(
                "trial {}: scale → {n:2}: nodes' maps at {} ms",
                t + 1,
                per_node
                    .iter()
                    .map(|ms| format!("{ms:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            all.push(last);
            spread.push(last - first);
            // Let stopped replicas go before the next change.
            c.wait("replicas settled", Duration::from_secs(60), || {
                let reps = c.replicas("api");
                (reps.len() == n && reps.iter().all(|r| r["state"] == "running")).then_some(())
            });
        }
    }

    println!(
        "a change of a virtual IP's replicas reaching every node's map (master + 3 workers, {trials} trials each, nft read every {} ms)",
        poll.as_millis()
    );
    for (what, all, spread) in [
        (
            "scale 1 → 20 (includes starting 19 containers)",
            &mut up_all,
            &mut up_spread,
        ),
        ("scale 20 → 1", &mut down_all, &mut down_spread),
    ] {
        let (amin, amed, amax) = stats(all);
        let (smin, smed, smax) = stats(spread);
        println!("  {what}");
        println!(
            "    command → every node's map   min {amin:.0} ms  median {amed:.0} ms  max {amax:.0} ms"
        );
        println!(
            "    first node → last node       min {smin:.0} ms  median {smed:.0} ms  max {smax:.0} ms"
        );
    }
    c.finish();
}
