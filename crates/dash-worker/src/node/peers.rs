//! Routes to the other nodes' container subnets, via those nodes.
//!
//! ```text
//!  (subnet, node address) ── peers feed (watch) ──► set_peer_routes ─► Network::set_peer_routes
//!   master: from its store, every 2 s         worker: Peers from the masters, every 2 s
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use dash_net::{Ipv4Net, Network};
use tokio::sync::watch;

/// Applies `(subnet, node address)` pairs as routes (an address is `10.0.0.2` or, as a
/// node's record may hold it, `10.0.0.2:7072`); bad entries and IPv6 nodes are skipped, a
/// failure is logged as a warning.
pub async fn set_peer_routes(net: &Network, peers: &[(String, String)]) {
    let routes: Vec<(Ipv4Net, Ipv4Addr)> = peers
        .iter()
        .filter_map(|(subnet, address)| {
            let net: Ipv4Net = subnet.parse().ok()?;
            let ip = address
                .parse::<SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| address.parse::<IpAddr>())
                .ok()?;
            match ip {
                IpAddr::V4(ip) => Some((net, ip)),
                IpAddr::V6(_) => None,
            }
        })
        .collect();
    if let Err(e) = net.set_peer_routes(&routes).await {
        tracing::warn!(error = %e, "setting routes to other nodes");
    }
}

/// Sets the routes at every send on the feed, until `shutdown` (or until no feeder is left).
pub(super) async fn follow(
    mut peers: watch::Receiver<Vec<(String, String)>>,
    net: Arc<Network>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = peers.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let list = peers.borrow_and_update().clone();
        set_peer_routes(&net, &list).await;
    }
}
