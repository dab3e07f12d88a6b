//! proxy accept: listening sockets, worker threads, and one task per client connection.
//!
//! With `threads = N` (the default: one per core) the proxy runs N OS threads, each with a
//! single-threaded tokio runtime and a listening socket of its own on the same address
//! (`SO_REUSEPORT`: the kernel spreads new connections across them), like haproxy's `nbthread`
//! or nginx's `reuseport`. A client connection, its requests and the upstream connections they
//! use then stay on one thread: no work stealing, no wake-ups across threads, and each worker
//! has its own shard of every upstream pool and counter (`worker`). Measured on the shared 2-core
//! box (wrk -t2 -c64 and the `bench_upstream` example on one thread, medians of 8 interleaved
//! runs): 53.7k req/s, against 43.9k for the same code on one 2-worker multi-thread runtime and
//! 51.8k for haproxy 2.6 with `nbthread 2`.
//! With `threads = 0` everything runs on the caller's runtime, from one listener.
//!
//! ```text
//!            ┌ worker 0: current-thread runtime ─ listener :8080 ─ conn tasks ─ upstream conns
//! serve() ───┤
//!            └ worker 1: current-thread runtime ─ listener :8080 ─ conn tasks ─ upstream conns
//!                 (both read the one Shared: route table, counters, pools sharded per worker)
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::forward::{self, ConnCtx};
use crate::headers::ClientInfo;
use crate::server::Shared;
use crate::worker;

/// How long shutdown waits for in-flight requests before it cuts them off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pending connections the kernel queues per listening socket.
const BACKLOG: u32 = 1024;

/// The bound sockets: one on the caller's runtime, or one per worker thread.
pub(crate) enum Listeners {
    Runtime(TcpListener),
    Threads(Vec<std::net::TcpListener>),
}

impl Listeners {
    /// Binds `addr` once, or `threads` times with `SO_REUSEPORT`; returns the bound address.
    pub(crate) async fn bind(addr: SocketAddr, threads: usize) -> io::Result<(Self, SocketAddr)> {
        if threads == 0 {
            let listener = TcpListener::bind(addr).await?;
            let addr = listener.local_addr()?;
            return Ok((Listeners::Runtime(listener), addr));
        }
        let mut addr = addr;
        let mut listeners = Vec::with_capacity(threads);
        for _ in 0..threads {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            let listener = socket.listen(BACKLOG)?;
            // With port 0 the first socket picks the port; the others join it.
            addr = listener.local_addr()?;
            // Deregistered here, registered again on the worker's own runtime.
            listeners.push(listener.into_std()?);
        }
        Ok((Listeners::Threads(listeners), addr))
    }
}

/// Accepts on every listener until `shutdown`, then drains.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let listeners = match listeners {
        Listeners::Runtime(listener) => return accept_loop(shared, listener, shutdown).await,
        Listeners::Threads(listeners) => listeners,
    };
    let (stop, stopping) = watch::channel(false);
    let mut workers = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        match spawn_worker(index, Arc::clone(&shared), listener, stopping.clone()) {
            Ok(finished) => workers.push(finished),
            Err(error) => tracing::error!(%error, worker = index, "cannot start proxy worker"),
        }
    }
    shutdown.await;
    let _ = stop.send(true);
    for finished in workers {
        // An error means the worker thread panicked: it is gone either way.
        let _ = finished.await;
    }
}

/// Starts worker `index` on its own thread and runtime; the receiver completes when the thread
/// has drained and dropped its runtime (and with it every task and upstream connection on it).
fn spawn_worker(
    index: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stopping: watch::Receiver<bool>,
) -> io::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (finished, done) = oneshot::channel();
    let span = tracing::info_span!("worker", index);
    std::thread::Builder::new()
        .name(format!("dash-proxy-{index}"))
        .spawn(move || {
            worker::set(index);
            runtime.block_on(
                async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "cannot register the listener");
                            return;
                        }
                    };
                    let stop = async move {
                        let _ = stopping.wait_for(|stop| *stop).await;
                    };
                    accept_loop(shared, listener, stop).await;
                }
                .instrument(span),
            );
            drop(runtime);
            let _ = finished.send(());
        })?;
    Ok(done)
}

/// Accepts connections and serves each on a task until `shutdown`; then asks every connection
/// to finish gracefully, waits up to [`DRAIN_TIMEOUT`] and aborts the rest.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    // Pooled upstream connections past idle_timeout are closed on this tick.
    let period = shared
        .cfg
        .idle_timeout
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut prune = tokio::time::interval(period);
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
    tracing::debug!(connections = connections.len(), "draining");
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
