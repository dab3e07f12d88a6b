//! autoscale-reaction: what `bench/autoscale.sh` runs. One `dash server` with the default
//! `--autoscale-interval` (5 s), a busybox httpd service behind a proxy route with
//! `[autoscale] max = 4, requests_per_second = 20` and the default `scale_down_delay` (60 s);
//! real containers, release binaries.
//!
//! Each trial: a steady load of about 100 requests per second through the proxy (one client,
//! a request every 10 ms), timed until 4 replicas run (scale-up); then the load stops, timed
//! until 1 replica runs again (scale-down). TRIALS times (default 5). Prints min / median /
//! max. No peer figure is computed here: what Kubernetes' horizontal pod autoscaler's
//! documented defaults imply is in docs/benchmarks.md, labelled as documented.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dash_e2e::Server;

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn running(s: &Server) -> usize {
    s.replicas("as")
        .iter()
        .filter(|r| r["state"] == "running" && r["desired"] == "run")
        .count()
}

fn main() {
    let trials: usize = std::env::var("TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(5);
    let s = Server::start_with(81, &[]);
    s.import_busybox("bb:1");
    let f = s.write(
        "as.toml",
        "name = \"as\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         stop_grace_period = \"1s\"\n[[routes]]\nhost = \"as.local\"\nport = 8080\n\
         [autoscale]\nmax = 4\nrequests_per_second = 20\n",
    );
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    s.wait_running("as", 1);

    let (mut up, mut down) = (Vec::new(), Vec::new());
    for t in 0..trials {
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (stop, proxy) = (stop.clone(), s.proxy_addr.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = dash_e2e::http_get_host(&proxy, "as.local", "/");
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let t0 = Instant::now();
        while running(&s) < 4 {
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "no scale-up in 3 min"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let up_ms = t0.elapsed().as_secs_f64() * 1000.0;
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        let t1 = Instant::now();
        while running(&s) > 1 {
            assert!(
                t1.elapsed() < Duration::from_secs(300),
                "no scale-down in 5 min"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let down_ms = t1.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "trial {}: 1 → 4 replicas in {up_ms:.0} ms under load; 4 → 1 in {down_ms:.0} ms after it stopped",
            t + 1
        );
        up.push(up_ms);
        down.push(down_ms);
    }
    let (umin, umed, umax) = stats(&mut up);
    let (dmin, dmed, dmax) = stats(&mut down);
    println!("autoscaling, {trials} trials (load ≈ 100 req/s, target 20 req/s per replica, max 4)");
    println!("scale-up 1 → 4 under load:");
    println!("  dash     min {umin:.0} ms  median {umed:.0} ms  max {umax:.0} ms");
    println!("scale-down 4 → 1 after the load stops (dash scale_down_delay 60 s):");
    println!("  dash     min {dmin:.0} ms  median {dmed:.0} ms  max {dmax:.0} ms");
    // Kubernetes cannot run here: no figure of its is computed. What its HPA's documented
    // defaults imply (a 15 s sync period, a 300 s scale-down stabilisation window) is in
    // docs/benchmarks.md, labelled as documented.
    println!(
        "peers: not measured here (Kubernetes' HPA defaults in docs/benchmarks.md, as documented)"
    );
}
