//! proxy server: the listener, one task per client connection, live table updates and shutdown.
//!
//! Shutdown: stop accepting, ask every connection to finish gracefully (in-flight requests
//! complete, idle keep-alive connections close), wait up to [`DRAIN_TIMEOUT`] for them, then
//! abort what is left, end spliced (upgraded) connections and close pooled upstream connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::ProxyConfig;
use crate::forward::{self, ConnCtx};
use crate::headers::ClientInfo;
use crate::routes::RouteTable;
use crate::stats::{self, RouteStats};

/// How long shutdown waits for in-flight requests before it cuts them off.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy: bound, not yet serving. Keep a [`ProxyHandle`] to update routes and read stats
/// while [`Proxy::serve`] runs.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// A cheap, cloneable handle to a proxy's routes and stats; valid before, during and after
/// [`Proxy::serve`].
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

/// State shared by the listener, every connection and every handle.
pub(crate) struct Shared {
    pub(crate) cfg: ProxyConfig,
    table: RwLock<Arc<RouteTable>>,
    /// Serializes updates, so each one inherits state from the table it replaces.
    updating: Mutex<()>,
    /// Turns true when spliced (upgraded) connections must end.
    pub(crate) abort: watch::Sender<bool>,
    http: auto::Builder<TokioExecutor>,
}

impl Shared {
    /// The current table; a read lock held only to clone the `Arc`.
    pub(crate) fn table(&self) -> Arc<RouteTable> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, mut table: RouteTable) {
        let _updating = self.updating.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.table();
        table.inherit(&old);
        tracing::debug!(routes = table.len(), "route table updated");
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }

    fn stats(&self) -> Vec<RouteStats> {
        let now = Instant::now();
        let table = self.table();
        table
            .entries()
            .iter()
            .map(|e| stats::snapshot(e, now))
            .collect()
    }

    fn prune_pools(&self) {
        let now = Instant::now();
        for entry in self.table().entries() {
            for upstream in &entry.upstreams {
                upstream.pool.prune(now, self.cfg.idle_timeout);
            }
        }
    }

    fn clear_pools(&self) {
        for entry in self.table().entries() {
            for upstream in &entry.upstreams {
                upstream.pool.clear();
            }
        }
    }
}

impl Proxy {
    /// Validates `cfg` and binds its listen address; serves nothing until [`Proxy::serve`].
    /// Starts with an empty route table: every request gets 404 until the first update.
    pub async fn bind(cfg: ProxyConfig) -> io::Result<Proxy> {
        let cfg = cfg
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;

        let mut http = auto::Builder::new(TokioExecutor::new());
        // An HTTP/1 connection waiting for its next request head longer than idle_timeout is
        // closed: that is the keep-alive idle timeout (hyper starts this timer between requests).
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.idle_timeout);
        // HTTP/2 has no idle timer in hyper; PINGs at least find dead peers.
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(cfg.idle_timeout);

        let (abort, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            table: RwLock::new(Arc::new(RouteTable::default())),
            updating: Mutex::new(()),
            abort,
            http,
        });
        tracing::info!(listen = %local_addr, "proxy bound");
        Ok(Proxy {
            shared,
            listener,
            local_addr,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for updates and stats that outlives `serve`'s taking of `self`.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Swaps in a new route table; see [`ProxyHandle::update`].
    pub fn update(&self, table: RouteTable) {
        self.shared.update(table);
    }

    /// Per-route stats; see [`ProxyHandle::stats`].
    pub fn stats(&self) -> Vec<RouteStats> {
        self.shared.stats()
    }

    /// Serves clients until `shutdown` completes, then drains (see the module doc) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let span = tracing::info_span!("proxy", listen = %self.local_addr);
        self.run(shutdown).instrument(span).await;
    }

    async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Proxy {
            shared, listener, ..
        } = self;
        let (stop, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        // Pooled upstream connections past idle_timeout are closed on this tick.
        let mut prune = tokio::time::interval(
            shared
                .cfg
                .idle_timeout
                .clamp(Duration::from_secs(1), Duration::from_secs(10)),
        );
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let conn = serve_connection(Arc::clone(&shared), stream, peer, stopping.clone());
                        connections.spawn(conn.instrument(tracing::debug_span!("conn", %peer)));
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = prune.tick() => shared.prune_pools(),
            }
        }
        drop(listener);
        tracing::info!(connections = connections.len(), "proxy shutting down");
        let _ = stop.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "connections still open after {DRAIN_TIMEOUT:?}; closing them"
            );
            connections.shutdown().await;
        }
        let _ = shared.abort.send(true);
        shared.clear_pools();
    }
}

impl ProxyHandle {
    /// Swaps in a new route table at once, without a restart: requests already routed finish on
    /// the upstream they have; every later request, open connections included, uses `table`.
    /// Counters, ejections and pooled connections of routes and upstreams present in both
    /// tables carry over.
    pub fn update(&self, table: RouteTable) {
        self.shared.update(table);
    }

    /// Per-route stats for the routes in the current table, in table order.
    pub fn stats(&self) -> Vec<RouteStats> {
        self.shared.stats()
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let ctx = Arc::new(ConnCtx {
        shared: Arc::clone(&shared),
        client: ClientInfo::new(peer),
    });
    let service = service_fn(move |req| forward::handle(Arc::clone(&ctx), req));
    let conn = shared
        .http
        .serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "client connection ended with an error");
    }
}
