//! proxy: Dash's built-in L7 HTTP reverse proxy. Clients speak HTTP/1.1 or h2c (prior
//! knowledge) to one listener; each request is routed by host and path prefix to a service's
//! replicas, balanced across those not ejected, and forwarded over pooled HTTP/1.1 keep-alive
//! connections. WebSocket and other HTTP/1.1 upgrades are spliced through.
//!
//! ```text
//!  client ─h1/h2c─▶ accept ─▶ forward ─▶ balance::pick ─▶ pool ─h1─▶ replica
//!          (a worker thread per   │   ▲          │
//!           core, SO_REUSEPORT)   │   └─ retry ──┘ nothing sent yet (refused, closed; ≤ 2)
//!                                 ▼
//!     RwLock<Arc<RouteTable>> ◀── update()        RouteCounters / UpstreamState (atomics) ─▶ stats()
//! ```
//!
//! Modules: `routes` (pure: the [`RouteTable`], host and prefix matching, path rewriting),
//! `balance` (round robin and power-of-two-choices over upstreams, passive ejection), `stats`
//! (lock-free counters and their snapshot), `headers` (hop-by-hop removal, `X-Forwarded-*` and
//! `Forwarded`), `pool` (keep-alive connections to each upstream), `body`, `forward` (one
//! request), `accept` (listeners, worker threads, client connections, draining), `worker`
//! (per-worker shards of hot state) and `server` (the [`Proxy`] and its [`ProxyHandle`]).
//!
//! The daemon owns the routing table; it builds a [`RouteTable`] from its services and replicas and
//! hands it over with [`ProxyHandle::update`]. This crate must not depend on the store, the runtime or
//! the APIs: it knows routes and socket addresses, nothing else.

#![forbid(unsafe_code)]

mod accept;
mod balance;
mod body;
mod clock;
mod config;
mod error;
mod forward;
mod headers;
mod pool;
mod routes;
mod server;
mod stats;
mod worker;

pub use balance::Balance;
pub use config::ProxyConfig;
pub use error::ConfigError;
pub use routes::{Route, RouteEntry, RouteTable, Upstream};
pub use server::{Proxy, ProxyHandle};
pub use stats::{LATENCY_BUCKETS_MS, RouteStats, UpstreamStats};
