//! Test fixtures: small hyper upstreams that answer their own name, a proxy on a free loopback
//! port, and clients (HTTP/1.1, raw TCP).
#![allow(dead_code)] // each test file uses a different part
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dash_proxy::{Balance, Proxy, ProxyConfig, ProxyHandle, Route, RouteTable, Upstream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A hyper server on 127.0.0.1 that answers with its name in the body and `x-upstream`.
///
/// Paths: `/slow` waits 400 ms; `/hold` waits for [`TestUpstream::release`]; `/headers` answers
/// with the request headers, one `name: value` a line; `/echo` answers with the request body;
/// `/ws` accepts a WebSocket and echoes it.
/// Every response carries `x-path` (the path and query it got). A failing upstream answers 500.
pub struct TestUpstream {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    task: JoinHandle<()>,
}

struct UpstreamState {
    name: String,
    fail: bool,
    hits: AtomicUsize,
    connections: AtomicUsize,
    gate: Semaphore,
}

impl TestUpstream {
    pub async fn start(name: &str) -> Self {
        Self::spawn(name, false).await
    }

    /// An upstream that answers every request with 500.
    pub async fn failing(name: &str) -> Self {
        Self::spawn(name, true).await
    }

    async fn spawn(name: &str, fail: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            name: name.to_owned(),
            fail,
            hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        TestUpstream {
            name: name.to_owned(),
            addr,
            state,
            task,
        }
    }

    pub fn upstream(&self) -> Upstream {
        Upstream {
            replica: self.name.clone(),
            addr: self.addr,
        }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Lets `n` requests waiting on `/hold` answer.
    pub fn release(&self, n: usize) {
        self.state.gate.add_permits(n);
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<UpstreamState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(Arc::clone(&state), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn answer(
    state: Arc<UpstreamState>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |pq| pq.to_string());
    let mut body = state.name.clone();
    let mut status = if state.fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let mut extra = HeaderMap::new();
    match req.uri().path() {
        "/slow" => tokio::time::sleep(Duration::from_millis(400)).await,
        "/hold" => state.gate.acquire().await.unwrap().forget(),
        "/echo" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut response = Response::new(Full::new(body));
            response
                .headers_mut()
                .insert("x-upstream", state.name.parse().unwrap());
            return Ok(response);
        }
        "/headers" => {
            body = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
                .collect();
        }
        "/ws" => {
            let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.unwrap();
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
            status = StatusCode::SWITCHING_PROTOCOLS;
            body = String::new();
            extra.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            extra.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            extra.insert(
                "sec-websocket-accept",
                derive_accept_key(&key).parse().unwrap(),
            );
        }
        _ => {}
    }
    // Read the request body so the connection stays reusable.
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.extend(extra);
    headers.insert("x-upstream", state.name.parse().unwrap());
    headers.insert("x-path", path.parse().unwrap());
    Ok(response)
}

/// A route to `service` with the given host and prefix, no stripping.
pub fn route(service: &str, host: &str, prefix: &str) -> Route {
    Route {
        service: service.to_owned(),
        host: host.to_owned(),
        path_prefix: prefix.to_owned(),
        strip_prefix: false,
        port: 80,
    }
}

/// A proxy serving on a free loopback port; shut down (and drained) on drop.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub handle: ProxyHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    pub async fn start(table: RouteTable) -> Self {
        Self::with_config(ProxyConfig::default(), table).await
    }

    pub async fn with_balance(balance: Balance, table: RouteTable) -> Self {
        let cfg = ProxyConfig {
            balance,
            ..ProxyConfig::default()
        };
        Self::with_config(cfg, table).await
    }

    pub async fn with_config(cfg: ProxyConfig, table: RouteTable) -> Self {
        let cfg = ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..cfg
        };
        let proxy = Proxy::bind(cfg).await.unwrap();
        let addr = proxy.local_addr();
        let handle = proxy.handle();
        handle.update(table);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(async move {
            let _ = stopped.await;
        }));
        TestProxy {
            addr,
            handle,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the proxy and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, self.task.take().unwrap())
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The upstream that answered, from `x-upstream`.
    pub fn upstream(&self) -> &str {
        self.headers
            .get("x-upstream")
            .map_or("", |v| v.to_str().unwrap())
    }
}

/// One HTTP/1.1 keep-alive connection to the proxy.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Client {
    pub async fn connect(proxy: SocketAddr) -> Self {
        let stream = TcpStream::connect(proxy).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    pub async fn request(&mut self, method: &str, host: &str, path: &str) -> Reply {
        self.sender.ready().await.unwrap();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(DEADLINE, self.sender.send_request(req))
            .await
            .expect("response within the deadline")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Reply {
        self.request("GET", host, path).await
    }
}

/// One GET on a new connection.
pub async fn get(proxy: SocketAddr, host: &str, path: &str) -> Reply {
    Client::connect(proxy).await.get(host, path).await
}

/// Sends `raw` bytes as a whole HTTP/1.1 request (with `Connection: close`) and returns the
/// response text.
pub async fn raw(proxy: SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("response within the deadline")
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Polls `check` every 20 ms until it holds; panics with `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address on 127.0.0.1 where nothing listens.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
