//! The node's proxy on the masters' routing table, and the proxy's counters per route.
//!
//! ```text
//!  Vec<RouteEntry> ── routes feed (watch) ──► table() ──► ProxyHandle::update (atomic swap)
//!   master: rebuilt after every event       worker: Routes from the masters (a long poll)
//!  ProxyHandle::stats + the latest entries ──► route_infos() ──► GET /v1/routes (a master's)
//! ```

use std::net::{Ipv4Addr, SocketAddr};

use dash_core::api::{RouteEntry, RouteInfo, UpstreamInfo};
use dash_proxy::{ProxyHandle, Route, RouteTable, Upstream};
use tokio::sync::watch;

/// The proxy's table for `entries`: one route per entry, its replicas as upstreams on the
/// route's port (replicas without a readable IPv4 address are left out).
pub fn table(entries: &[RouteEntry]) -> RouteTable {
    RouteTable::new(
        entries
            .iter()
            .map(|e| {
                let route = Route {
                    service: e.service.clone(),
                    host: e.route.host.clone(),
                    path_prefix: e.route.path_prefix.clone(),
                    strip_prefix: e.route.strip_prefix,
                    port: e.route.port,
                };
                let upstreams = e
                    .upstreams
                    .iter()
                    .filter_map(|(replica, ip)| {
                        let ip: Ipv4Addr = ip.parse().ok()?;
                        Some(Upstream {
                            replica: replica.clone(),
                            addr: SocketAddr::from((ip, e.route.port)),
                        })
                    })
                    .collect();
                (route, upstreams)
            })
            .collect(),
    )
}

/// The proxy's counters per route, with each route's settings from `entries`.
pub fn route_infos(proxy: &ProxyHandle, entries: &[RouteEntry]) -> Vec<RouteInfo> {
    proxy
        .stats()
        .into_iter()
        .map(|s| {
            let spec = entries
                .iter()
                .find(|e| e.route.host == s.host && e.route.path_prefix == s.path_prefix);
            let mut buckets: Vec<u64> = dash_proxy::LATENCY_BUCKETS_MS.to_vec();
            buckets.push(u64::MAX);
            RouteInfo {
                node: None,
                strip_prefix: spec.is_some_and(|e| e.route.strip_prefix),
                port: spec.map_or(0, |e| e.route.port),
                service: s.service,
                host: s.host,
                path_prefix: s.path_prefix,
                requests: s.requests,
                status: s.status,
                errors: s.errors,
                requests_per_second: s.requests_per_second,
                latency_buckets_ms: buckets,
                latency_counts: s.latency_ms.to_vec(),
                upstreams: s
                    .upstreams
                    .into_iter()
                    .map(|u| UpstreamInfo {
                        replica: u.replica,
                        addr: u.addr.to_string(),
                        state: if u.ejected {
                            "ejected".into()
                        } else {
                            "up".into()
                        },
                        in_flight: u.in_flight,
                        requests: u.requests,
                        failures: u.failures,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Swaps the proxy's table at every send on the feed, until `shutdown` (or until no feeder
/// is left).
pub(super) async fn follow(
    mut routes: watch::Receiver<Vec<RouteEntry>>,
    proxy: ProxyHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = routes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let next = table(&routes.borrow_and_update());
        proxy.update(next);
    }
}

#[cfg(test)]
mod tests {
    use dash_core::spec::RouteSpec;

    use super::*;

    fn entry(host: &str, upstreams: &[(&str, &str)]) -> RouteEntry {
        RouteEntry {
            service: "web".into(),
            route: RouteSpec {
                host: host.into(),
                path_prefix: "/".into(),
                strip_prefix: false,
                port: 8080,
            },
            upstreams: upstreams
                .iter()
                .map(|(r, ip)| (r.to_string(), ip.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_table_has_a_route_per_entry_and_skips_unreadable_addresses() {
        let t = table(&[
            entry(
                "web.local",
                &[("r1", "10.88.0.2"), ("r2", "not an ip"), ("r3", "")],
            ),
            entry("api.local", &[]),
        ]);
        assert_eq!(t.len(), 2);
        let web = t.lookup("web.local", "/").expect("web.local is routed");
        assert_eq!(web.route().port, 8080);
        let upstreams: Vec<_> = web.upstreams().collect();
        assert_eq!(upstreams.len(), 1);
        assert_eq!(upstreams[0].replica, "r1");
        assert_eq!(upstreams[0].addr, "10.88.0.2:8080".parse().unwrap());
    }
}
