//! What crosses the proxy: forwarding headers, WebSocket upgrades, h2c clients, shutdown.

mod support;

use bytes::Bytes;
use dash_proxy::RouteTable;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Client, DEADLINE, TestProxy, TestUpstream, route};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn web_proxy(up: &TestUpstream) -> TestProxy {
    TestProxy::start(RouteTable::new(vec![(
        route("web", "web.local", "/"),
        vec![up.upstream()],
    )]))
    .await
}

#[tokio::test]
async fn upstream_sees_forwarding_headers_and_no_hop_by_hop_headers() {
    let up = TestUpstream::start("web-1").await;
    let proxy = web_proxy(&up).await;
    let response = support::raw(
        proxy.addr,
        "GET /headers HTTP/1.1\r\n\
         Host: web.local:8080\r\n\
         X-Forwarded-For: 203.0.113.9\r\n\
         Connection: close, X-Secret\r\n\
         X-Secret: do-not-pass\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         TE: trailers\r\n\
         Accept: text/plain\r\n\
         \r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let seen: Vec<&str> = body.lines().collect();
    for want in [
        "host: web.local:8080",
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: web.local:8080",
        "forwarded: for=127.0.0.1;proto=http;host=\"web.local:8080\"",
        "accept: text/plain",
    ] {
        assert!(
            seen.contains(&want),
            "upstream lacks {want:?}; it saw {seen:#?}"
        );
    }
    for gone in ["x-secret", "keep-alive", "proxy-authorization", "te:"] {
        assert!(
            !seen.iter().any(|l| l.starts_with(gone)),
            "upstream got {gone}: {seen:#?}"
        );
    }
    // `connection` is the proxy's own keep-alive to the upstream, never the client's.
    assert!(!seen.iter().any(|l| l.contains("close")), "{seen:#?}");
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let up = TestUpstream::start("ws-1").await;
    let proxy = web_proxy(&up).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://web.local/ws", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["x-upstream"], "ws-1");

    for text in ["hello", "through the proxy"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
        assert_eq!(echoed.unwrap().unwrap(), Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    assert_eq!(
        echoed.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );

    // The upgraded connection counts as in flight until it closes.
    assert_eq!(proxy.handle.stats()[0].upstreams[0].in_flight, 1);
    ws.close(None).await.unwrap();
    // Read the upstream's close reply, then hang up.
    while let Some(Ok(_)) = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap() {}
    drop(ws);
    support::wait_until("the spliced connection ends", || {
        proxy.handle.stats()[0].upstreams[0].in_flight == 0
    })
    .await;
    assert_eq!(proxy.handle.stats()[0].status[0], 1);
}

#[tokio::test]
async fn h2c_prior_knowledge_client_is_served() {
    let up = TestUpstream::start("web-1").await;
    let proxy = web_proxy(&up).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    for path in ["/", "/headers"] {
        let req = Request::builder()
            .uri(format!("http://web.local{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        if path == "/" {
            assert_eq!(body, "web-1");
        } else {
            // HTTP/2's :authority becomes the upstream's Host.
            assert!(body.contains("host: web.local\n"), "{body}");
        }
    }
}

#[tokio::test]
async fn shutdown_lets_the_in_flight_request_finish() {
    let up = TestUpstream::start("web-1").await;
    let proxy = web_proxy(&up).await;
    let mut idle_client = Client::connect(proxy.addr).await;
    assert_eq!(idle_client.get("web.local", "/").await.body, "web-1");

    let addr = proxy.addr;
    let slow = tokio::spawn(async move { support::get(addr, "web.local", "/slow").await });
    support::wait_until("the slow request reached the upstream", || up.hits() == 2).await;
    proxy.shutdown().await;

    assert_eq!(slow.await.unwrap().body, "web-1");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_zero_serves_on_the_callers_runtime() {
    let up = TestUpstream::start("web-1").await;
    let cfg = dash_proxy::ProxyConfig {
        threads: 0,
        ..dash_proxy::ProxyConfig::default()
    };
    let table = RouteTable::new(vec![(route("web", "web.local", "/"), vec![up.upstream()])]);
    let proxy = TestProxy::with_config(cfg, table).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..5 {
        assert_eq!(client.get("web.local", "/").await.body, "web-1");
    }
    assert_eq!(up.connections(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let up = TestUpstream::start("web-1").await;
    let cfg = dash_proxy::ProxyConfig {
        idle_timeout: std::time::Duration::from_millis(300),
        ..dash_proxy::ProxyConfig::default()
    };
    let table = RouteTable::new(vec![(route("web", "web.local", "/"), vec![up.upstream()])]);
    let proxy = TestProxy::with_config(cfg, table).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: web.local\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].ends_with(b"web-1"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Nothing more is sent: the proxy hangs up once the connection has idled long enough.
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("the proxy closes the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn request_and_response_bodies_stream_through_and_head_has_none() {
    let up = TestUpstream::start("web-1").await;
    let proxy = web_proxy(&up).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    // 1 MiB each way, then a HEAD, on one keep-alive connection.
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..2 {
        let req = Request::post("/echo")
            .header(hyper::header::HOST, "web.local")
            .body(http_body_util::Full::new(Bytes::from(payload.clone())))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            body == payload,
            "echoed body differs ({} bytes)",
            body.len()
        );
    }
    sender.ready().await.unwrap();
    let req = Request::head("/")
        .header(hyper::header::HOST, "web.local")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "5");
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    assert_eq!(up.hits(), 3);
}
