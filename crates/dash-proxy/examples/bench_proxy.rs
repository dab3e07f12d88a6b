//! Runs the proxy alone, for benchmarks: every host and path goes to the given upstreams.
//!
//! ```text
//! cargo run --release -p dash-proxy --example bench_upstream -- 9000 &
//! cargo run --release -p dash-proxy --example bench_proxy -- 127.0.0.1:8080 2 127.0.0.1:9000
//! wrk -t2 -c64 -d10s http://127.0.0.1:8080/
//! ```
//! Arguments: LISTEN THREADS UPSTREAM... (round robin; THREADS is `ProxyConfig::threads`). Stops
//! on Ctrl-C and prints the stats.

use std::io;
use std::net::SocketAddr;

use dash_proxy::{Proxy, ProxyConfig, Route, RouteTable, Upstream};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || io::Error::new(io::ErrorKind::InvalidInput, "LISTEN THREADS UPSTREAM...");
    let listen: SocketAddr = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let threads: usize = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let upstreams = args
        .enumerate()
        .map(|(i, addr)| {
            Ok(Upstream {
                replica: format!("bench-{i}"),
                addr: addr.parse().map_err(|_| usage())?,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let route = Route {
        service: "bench".to_owned(),
        host: "*".to_owned(),
        path_prefix: "/".to_owned(),
        strip_prefix: false,
        port: 80,
    };
    // The proxy runs its own worker threads; this runtime only waits for Ctrl-C.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cfg = ProxyConfig {
            listen,
            threads,
            ..ProxyConfig::default()
        };
        let proxy = Proxy::bind(cfg).await?;
        let handle = proxy.handle();
        handle.update(RouteTable::new(vec![(route, upstreams)]));
        eprintln!("bench_proxy listening on {}", proxy.local_addr());
        proxy
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        eprintln!("{:#?}", handle.stats());
        Ok(())
    })
}
