use super::*;

fn route(service: &str, host: &str, prefix: &str) -> (Route, Vec<Upstream>) {
    let route = Route {
        service: service.to_owned(),
        host: host.to_owned(),
        path_prefix: prefix.to_owned(),
        strip_prefix: false,
        port: 80,
    };
    (route, Vec::new())
}

fn table() -> RouteTable {
    RouteTable::new(vec![
        route("web", "web.local", "/"),
        route("api", "web.local", "/api"),
        route("api-v2", "web.local", "/api/v2/"),
        route("shop", "*.example.com", ""),
        route("deep", "*.eu.example.com", "/"),
        route("exact", "www.example.com", "/only"),
        route("default", "*", "/"),
    ])
}

#[test]
fn lookup_picks_host_then_longest_prefix() {
    let table = table();
    let cases = [
        ("web.local", "/", Some("web")),
        ("web.local", "/index.html", Some("web")),
        ("WEB.Local", "/", Some("web")),
        ("web.local.", "/", Some("web")),
        ("web.local", "/api", Some("api")),
        ("web.local", "/api/users", Some("api")),
        ("web.local", "/apix", Some("web")),
        ("web.local", "/api/v2", Some("api")),
        ("web.local", "/api/v2/", Some("api-v2")),
        ("web.local", "/api/v2/x", Some("api-v2")),
        ("a.example.com", "/x", Some("shop")),
        ("a.b.example.com", "/x", Some("shop")),
        ("x.eu.example.com", "/x", Some("deep")),
        ("example.com", "/", Some("default")),
        // An exact host beats the wildcard, and does not fall back to it.
        ("www.example.com", "/only/x", Some("exact")),
        ("www.example.com", "/other", None),
        ("unknown.test", "/", Some("default")),
    ];
    for (host, path, want) in cases {
        let got = table.lookup(host, path).map(|e| e.route().service.as_str());
        assert_eq!(got, want, "{host}{path}");
    }
}

#[test]
fn misses_say_whether_host_or_path() {
    let table = RouteTable::new(vec![route("api", "web.local", "/api")]);
    assert_eq!(table.find("other.local", "/api").unwrap_err(), Miss::Host);
    assert_eq!(table.find("web.local", "/").unwrap_err(), Miss::Path);
    assert!(RouteTable::default().lookup("web.local", "/").is_none());
}

#[test]
fn first_of_two_equal_routes_wins() {
    let table = RouteTable::new(vec![route("one", "h", "/a"), route("two", "h", "/a")]);
    assert_eq!(table.lookup("h", "/a").unwrap().route().service, "one");
}

#[test]
fn prefix_matches_on_segment_boundaries() {
    let cases = [
        ("/", "/", true),
        ("/", "/x", true),
        ("/api", "/api", true),
        ("/api", "/api/", true),
        ("/api", "/api/x", true),
        ("/api", "/apix", false),
        ("/api", "/ap", false),
        ("/api/", "/api", false),
        ("/api/", "/api/x", true),
    ];
    for (prefix, path, want) in cases {
        assert_eq!(prefix_matches(prefix, path), want, "{prefix} vs {path}");
    }
}

#[test]
fn strip_path_keeps_a_leading_slash_and_the_query() {
    let cases = [
        ("/api", "/api/x", None, "/x"),
        ("/api", "/api", None, "/"),
        ("/api", "/api", Some("a=1"), "/?a=1"),
        ("/api/", "/api/x/y", Some("q"), "/x/y?q"),
        ("/", "/x", None, "/x"),
    ];
    for (prefix, path, query, want) in cases {
        assert_eq!(strip_path(prefix, path, query), want);
    }
}

#[test]
fn inherit_keeps_state_of_unchanged_routes_and_upstreams() {
    let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let up = |name: &str, addr| Upstream {
        replica: name.to_owned(),
        addr,
    };
    let (web, _) = route("web", "web.local", "/");
    let old = RouteTable::new(vec![(web.clone(), vec![up("web-1", a), up("web-2", b)])]);
    let mut new = RouteTable::new(vec![(web, vec![up("web-2", b), up("web-3", a)])]);
    new.inherit(&old);
    let (old, new) = (&old.entries[0], &new.entries[0]);
    assert!(Arc::ptr_eq(&old.counters, &new.counters));
    assert!(Arc::ptr_eq(&old.upstreams[1], &new.upstreams[0]));
    assert!(!Arc::ptr_eq(&old.upstreams[0], &new.upstreams[1]));
}
