//! Routing through a real proxy: host, wildcard, prefixes, misses and live table updates.

mod support;

use dash_proxy::{Route, RouteTable};
use hyper::StatusCode;
use support::{Client, TestProxy, TestUpstream, get, route};

#[tokio::test]
async fn host_picks_the_service() {
    let web = TestUpstream::start("web-1").await;
    let api = TestUpstream::start("api-1").await;
    let proxy = TestProxy::start(RouteTable::new(vec![
        (route("web", "web.local", "/"), vec![web.upstream()]),
        (route("api", "api.local", "/"), vec![api.upstream()]),
    ]))
    .await;

    assert_eq!(get(proxy.addr, "web.local", "/").await.body, "web-1");
    assert_eq!(get(proxy.addr, "api.local", "/").await.body, "api-1");
    // Any case, with a port.
    assert_eq!(get(proxy.addr, "API.Local:8080", "/x").await.body, "api-1");
}

#[tokio::test]
async fn wildcard_host_matches_subdomains_and_exact_host_wins() {
    let shop = TestUpstream::start("shop-1").await;
    let www = TestUpstream::start("www-1").await;
    let proxy = TestProxy::start(RouteTable::new(vec![
        (route("shop", "*.example.com", "/"), vec![shop.upstream()]),
        (route("www", "www.example.com", "/"), vec![www.upstream()]),
    ]))
    .await;

    assert_eq!(get(proxy.addr, "eu.example.com", "/").await.body, "shop-1");
    assert_eq!(get(proxy.addr, "a.b.example.com", "/").await.body, "shop-1");
    assert_eq!(get(proxy.addr, "www.example.com", "/").await.body, "www-1");
    let bare = get(proxy.addr, "example.com", "/").await;
    assert_eq!(bare.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn longest_prefix_wins_and_strip_prefix_rewrites_the_path() {
    let web = TestUpstream::start("web-1").await;
    let api = TestUpstream::start("api-1").await;
    let v2 = TestUpstream::start("v2-1").await;
    let stripped = |service: &str, prefix: &str| Route {
        strip_prefix: true,
        ..route(service, "web.local", prefix)
    };
    let proxy = TestProxy::start(RouteTable::new(vec![
        (route("web", "web.local", "/"), vec![web.upstream()]),
        (stripped("api", "/api"), vec![api.upstream()]),
        (stripped("v2", "/api/v2/"), vec![v2.upstream()]),
    ]))
    .await;
    let mut client = Client::connect(proxy.addr).await;

    let cases = [
        ("/", "web-1", "/"),
        ("/static/app.css?v=3", "web-1", "/static/app.css?v=3"),
        ("/apix", "web-1", "/apix"),
        ("/api", "api-1", "/"),
        ("/api/users?page=2", "api-1", "/users?page=2"),
        ("/api/v2", "api-1", "/v2"),
        ("/api/v2/items", "v2-1", "/items"),
    ];
    for (path, upstream, upstream_path) in cases {
        let reply = client.get("web.local", path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.upstream(), upstream, "{path}");
        assert_eq!(reply.headers["x-path"], upstream_path, "{path}");
    }
}

#[tokio::test]
async fn unknown_host_is_404_and_a_route_without_upstreams_is_503() {
    let web = TestUpstream::start("web-1").await;
    let proxy = TestProxy::start(RouteTable::new(vec![
        (route("web", "web.local", "/app"), vec![web.upstream()]),
        (route("empty", "empty.local", "/"), vec![]),
    ]))
    .await;

    let reply = get(proxy.addr, "nope.local", "/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body, "no route for host nope.local\n");

    let reply = get(proxy.addr, "web.local", "/other").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body, "no route for web.local/other\n");

    let reply = get(proxy.addr, "empty.local", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "no upstream for service empty\n");

    let stats = proxy.handle.stats();
    let empty = stats.iter().find(|s| s.service == "empty").unwrap();
    assert_eq!((empty.requests, empty.errors, empty.status[4]), (1, 1, 1));
}

#[tokio::test]
async fn update_keeps_in_flight_requests_and_routes_new_ones_by_the_new_table() {
    let old = TestUpstream::start("old-1").await;
    let new = TestUpstream::start("new-1").await;
    let proxy = TestProxy::start(RouteTable::new(vec![(
        route("web", "web.local", "/"),
        vec![old.upstream()],
    )]))
    .await;
    let mut client = Client::connect(proxy.addr).await;
    assert_eq!(client.get("web.local", "/").await.body, "old-1");

    let addr = proxy.addr;
    let slow = tokio::spawn(async move { get(addr, "web.local", "/slow").await });
    support::wait_until("the slow request reached the old upstream", || {
        old.hits() == 2
    })
    .await;

    proxy.handle.update(RouteTable::new(vec![(
        route("web", "web.local", "/"),
        vec![new.upstream()],
    )]));
    // The same keep-alive client connection follows the new table.
    assert_eq!(client.get("web.local", "/").await.body, "new-1");
    assert_eq!(get(proxy.addr, "web.local", "/").await.body, "new-1");

    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (StatusCode::OK, "old-1"));

    // The route's counters survived the update.
    let stats = proxy.handle.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].requests, 4);
    assert_eq!(stats[0].upstreams[0].replica, "new-1");
    proxy.shutdown().await;
}
