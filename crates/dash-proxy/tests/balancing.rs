//! Load balancing, passive health, retries, connection reuse and stats through a real proxy.

mod support;

use std::time::Duration;

use dash_proxy::{Balance, ProxyConfig, RouteTable, Upstream};
use hyper::StatusCode;
use support::{Client, TestProxy, TestUpstream, dead_addr, route, wait_until};

fn web(upstreams: Vec<Upstream>) -> RouteTable {
    RouteTable::new(vec![(route("web", "web.local", "/"), upstreams)])
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let ups = [
        TestUpstream::start("web-1").await,
        TestUpstream::start("web-2").await,
        TestUpstream::start("web-3").await,
    ];
    let table = web(ups.iter().map(TestUpstream::upstream).collect());
    let proxy = TestProxy::with_balance(Balance::RoundRobin, table).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..30 {
        assert_eq!(client.get("web.local", "/").await.status, StatusCode::OK);
    }
    let hits: Vec<_> = ups.iter().map(TestUpstream::hits).collect();
    assert_eq!(hits, [10, 10, 10]);

    let stats = proxy.handle.stats();
    let upstream_requests: Vec<_> = stats[0].upstreams.iter().map(|u| u.requests).collect();
    assert_eq!(upstream_requests, [10, 10, 10]);
    assert_eq!(stats[0].requests, 30);
    assert_eq!(stats[0].status, [0, 30, 0, 0, 0]);
    assert_eq!(stats[0].latency_ms.iter().sum::<u64>(), 30);
    assert!(stats[0].requests_per_second > 0.0);
}

#[tokio::test]
async fn least_requests_prefers_the_idle_upstream() {
    let busy = TestUpstream::start("busy").await;
    let idle = TestUpstream::start("idle").await;
    let table = web(vec![busy.upstream(), idle.upstream()]);
    let proxy = TestProxy::with_balance(Balance::LeastRequests, table).await;

    // Park requests on /hold until one sits on `busy` (those on `idle` are released at once).
    let mut parked = Vec::new();
    while busy.hits() == 0 {
        let addr = proxy.addr;
        parked.push(tokio::spawn(async move {
            support::get(addr, "web.local", "/hold").await
        }));
        wait_until("the held request reached an upstream", || {
            busy.hits() + idle.hits() == parked.len()
        })
        .await;
        idle.release(1);
    }
    wait_until("only the busy upstream has a request in flight", || {
        let stats = &proxy.handle.stats()[0];
        stats.upstreams[0].in_flight == 1 && stats.upstreams[1].in_flight == 0
    })
    .await;

    // With two upstreams both choices are always made: the idle one wins every time.
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..20 {
        assert_eq!(client.get("web.local", "/").await.upstream(), "idle");
    }
    busy.release(1);
    for request in parked {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
}

#[tokio::test]
async fn repeated_5xx_ejects_an_upstream_until_eject_for_has_passed() {
    let good = TestUpstream::start("good").await;
    let bad = TestUpstream::failing("bad").await;
    let cfg = ProxyConfig {
        eject_after: 3,
        eject_for: Duration::from_millis(500),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::with_config(cfg, web(vec![good.upstream(), bad.upstream()])).await;
    let mut client = Client::connect(proxy.addr).await;

    // Round robin alternates: the third 500 from `bad` ejects it.
    let mut server_errors = 0;
    for _ in 0..6 {
        let reply = client.get("web.local", "/").await;
        if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
            server_errors += 1;
        }
    }
    assert_eq!(server_errors, 3);
    let stats = &proxy.handle.stats()[0];
    assert!(stats.upstreams[1].ejected);
    assert_eq!(stats.upstreams[1].failures, 3);

    for _ in 0..6 {
        assert_eq!(client.get("web.local", "/").await.upstream(), "good");
    }
    assert_eq!(bad.hits(), 3);

    wait_until("the ejection ends", || {
        !proxy.handle.stats()[0].upstreams[1].ejected
    })
    .await;
    for _ in 0..4 {
        client.get("web.local", "/").await;
    }
    assert_eq!(bad.hits(), 5, "bad gets traffic again after eject_for");
}

#[tokio::test]
async fn requests_are_retried_on_another_upstream_when_a_connect_is_refused() {
    let good = TestUpstream::start("good").await;
    let dead = Upstream {
        replica: "dead".to_owned(),
        addr: dead_addr().await,
    };
    // Ejection would hide the retries: keep the dead upstream in rotation.
    let cfg = ProxyConfig {
        eject_after: 1000,
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::with_config(cfg, web(vec![dead, good.upstream()])).await;
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..10 {
        let reply = client.get("web.local", "/").await;
        assert_eq!((reply.status, reply.upstream()), (StatusCode::OK, "good"));
    }
    let stats = &proxy.handle.stats()[0];
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.upstreams[0].failures, 5);

    // A refused connect sent nothing: a POST goes to the other upstream as well.
    for _ in 0..4 {
        let reply = client.request("POST", "web.local", "/").await;
        assert_eq!((reply.status, reply.upstream()), (StatusCode::OK, "good"));
    }
    assert_eq!(proxy.handle.stats()[0].errors, 0);
}

#[tokio::test]
async fn a_route_whose_only_upstream_refuses_gets_502() {
    let dead = Upstream {
        replica: "dead".to_owned(),
        addr: dead_addr().await,
    };
    let proxy = TestProxy::start(web(vec![dead])).await;
    let reply = support::get(proxy.addr, "web.local", "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(proxy.handle.stats()[0].errors, 1);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let up = TestUpstream::start("web-1").await;
    // One worker: each worker keeps connections of its own.
    let cfg = ProxyConfig {
        threads: 1,
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::with_config(cfg, web(vec![up.upstream()])).await;
    for _ in 0..3 {
        // A new client connection each time: the upstream side is pooled regardless.
        let mut client = Client::connect(proxy.addr).await;
        for _ in 0..10 {
            assert_eq!(client.get("web.local", "/").await.body, "web-1");
        }
    }
    assert_eq!(up.hits(), 30);
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn a_slow_upstream_gets_504_after_header_timeout() {
    let up = TestUpstream::start("web-1").await;
    let cfg = ProxyConfig {
        header_timeout: Duration::from_millis(100),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::with_config(cfg, web(vec![up.upstream()])).await;
    let reply = support::get(proxy.addr, "web.local", "/slow").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    // The next request gets a fresh connection and an answer.
    assert_eq!(
        support::get(proxy.addr, "web.local", "/").await.status,
        StatusCode::OK
    );
}
