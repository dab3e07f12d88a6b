//! proxy server: the [`Proxy`] and its [`ProxyHandle`]: binding, live table updates, stats, and
//! serving until shutdown (the listening itself is in `accept`).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tracing::Instrument;

use crate::accept::{self, Listeners};
use crate::config::ProxyConfig;
use crate::routes::RouteTable;
use crate::stats::{self, RouteStats};

/// The proxy: bound, not yet serving. Keep a [`ProxyHandle`] to update routes and read stats
/// while [`Proxy::serve`] runs.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Listeners,
    local_addr: SocketAddr,
}

/// A cheap, cloneable handle to a proxy's routes and stats; valid before, during and after
/// [`Proxy::serve`].
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

/// Tells proxies apart in [`CACHED`] (an address could be reused by a later proxy).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The table this thread last routed with.
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

struct Cached {
    proxy: u64,
    version: u64,
    table: Arc<TableRef>,
}

/// A thread's own `Arc` around the shared table: cloning it per request writes only memory of
/// that thread.
pub(crate) struct TableRef(Arc<RouteTable>);

impl std::ops::Deref for TableRef {
    type Target = RouteTable;

    fn deref(&self) -> &RouteTable {
        &self.0
    }
}

/// State shared by every listener, connection and handle, across worker threads.
pub(crate) struct Shared {
    pub(crate) cfg: ProxyConfig,
    id: u64,
    table: RwLock<Arc<RouteTable>>,
    /// Bumped after each table swap.
    version: AtomicU64,
    /// Serializes updates, so each one inherits state from the table it replaces.
    updating: Mutex<()>,
    /// Turns true when spliced (upgraded) connections must end.
    pub(crate) abort: watch::Sender<bool>,
    pub(crate) http: auto::Builder<TokioExecutor>,
}

impl Shared {
    /// The current table; a read lock held only to clone the `Arc`.
    pub(crate) fn table(&self) -> Arc<RouteTable> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The current table for a request. On the request path the shared lock and the table's
    /// reference count would be written by every request on every core, bouncing their cache
    /// lines between cores; this reads one shared version number instead and clones a
    /// thread-private `Arc` (after an update, the first request on each thread takes the lock).
    pub(crate) fn table_for_request(&self) -> Arc<TableRef> {
        let version = self.version.load(Ordering::Acquire);
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if let Some(c) = &*cached
                && c.proxy == self.id
                && c.version == version
            {
                return Arc::clone(&c.table);
            }
            let table = Arc::new(TableRef(self.table()));
            *cached = Some(Cached {
                proxy: self.id,
                version,
                table: Arc::clone(&table),
            });
            table
        })
    }

    fn update(&self, mut table: RouteTable) {
        let _updating = self.updating.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.table();
        table.inherit(&old);
        tracing::debug!(routes = table.len(), "route table updated");
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        // After the swap: a thread that sees the new version finds the new table.
        self.version.fetch_add(1, Ordering::Release);
    }

    fn stats(&self) -> Vec<RouteStats> {
        let now = Instant::now();
        let table = self.table();
        let entries = table.entries().iter();
        entries.map(|e| stats::snapshot(e, now)).collect()
    }

    /// Closes pooled upstream connections idle past `idle_timeout` or closed by the upstream.
    pub(crate) fn prune_pools(&self) {
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
    /// Validates `cfg` and binds its listen address (once per worker thread, see
    /// [`ProxyConfig::threads`]); serves nothing until [`Proxy::serve`]. Starts with an empty
    /// route table: every request gets 404 until the first update.
    pub async fn bind(cfg: ProxyConfig) -> io::Result<Proxy> {
        let cfg = cfg
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (listeners, local_addr) = Listeners::bind(cfg.listen, cfg.threads).await?;

        let mut http = auto::Builder::new(TokioExecutor::new());
        // An HTTP/1 connection waiting for its next request head longer than idle_timeout is
        // closed: that is the keep-alive idle timeout (hyper starts this timer between requests).
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.idle_timeout)
            // One buffer and send(2) instead of writev(2) (see `pool::connect`).
            .writev(false);
        // HTTP/2 has no idle timer in hyper; PINGs at least find dead peers.
        http.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(cfg.idle_timeout);

        let (abort, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            table: RwLock::new(Arc::new(RouteTable::default())),
            version: AtomicU64::new(0),
            updating: Mutex::new(()),
            abort,
            http,
        });
        tracing::info!(listen = %local_addr, threads = shared.cfg.threads, "proxy bound");
        Ok(Proxy {
            shared,
            listeners,
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

    /// Serves clients until `shutdown` completes, then drains and returns: stop accepting, let
    /// in-flight requests finish and close idle keep-alive connections, wait up to 10 s for them,
    /// cut off what is left, end spliced (upgraded) connections and close pooled upstream
    /// connections.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Proxy {
            shared,
            listeners,
            local_addr,
        } = self;
        let span = tracing::info_span!("proxy", listen = %local_addr);
        accept::serve(Arc::clone(&shared), listeners, shutdown)
            .instrument(span)
            .await;
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
