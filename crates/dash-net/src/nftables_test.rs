use std::net::Ipv4Addr;

use super::{delete_table_script, init_script, parse_published, published_script};
use crate::ports::PublishedPorts;
use crate::{NetError, PortMapping, Protocol};

fn ports() -> Vec<PortMapping> {
    vec![
        PortMapping {
            host_port: 18080,
            container_port: 8080,
            protocol: Protocol::Tcp,
        },
        PortMapping {
            host_port: 15353,
            container_port: 53,
            protocol: Protocol::Udp,
        },
    ]
}

#[test]
fn init_names_only_its_own_table() {
    let s = init_script("dash", "dash0", &"10.88.0.0/24".parse().unwrap(), false);
    for line in s.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // Its ip table, and the bridge table of the same name (isolation inside the bridge).
        assert!(
            words[2..4] == ["ip", "dash"] || words[2..4] == ["bridge", "dash"],
            "{line}"
        );
    }
    assert!(
        s.contains("add rule ip dash forward ip saddr @replicas ip daddr @replicas jump isolate\n")
    );
    assert!(s.contains(
        "add rule bridge dash forward iifname \"vd*\" ip saddr @replicas ip daddr @replicas jump isolate\n"
    ));
    // The bridge rule names replicas' ports by the prefix of their host veths.
    assert!(crate::host_veth_name("web-1").starts_with("vd"));
    // The jump comes before the accepts of the bridge.
    assert!(s.find("jump isolate").unwrap() < s.find("forward iifname").unwrap());
    assert!(s.starts_with("add table ip dash\n"));
    // Hooked chains are flushed before their rules are added, so init can run again; the chain
    // of published ports is not: they keep answering across a daemon restart.
    assert!(s.contains("flush chain ip dash prerouting\n"));
    assert!(s.contains("add chain ip dash published\n"));
    assert!(!s.contains("flush chain ip dash published"));
    assert!(s.contains("add rule ip dash prerouting jump published\n"));
    assert!(s.contains("add rule ip dash output jump published\n"));
    assert!(s.contains("ip saddr 127.0.0.0/8 oifname \"dash0\" masquerade\n"));
    assert!(s.contains("ct status dnat ip saddr 10.88.0.0/24 ip daddr 10.88.0.0/24 masquerade\n"));
    assert!(s.contains("ip saddr 10.88.0.0/24 ip daddr != 10.88.0.0/24 masquerade\n"));
    assert!(s.contains("add rule ip dash forward iifname \"dash0\" accept\n"));
    // Replicas cannot reach the host's loopback (route_localnet on the bridge).
    assert!(s.contains(
        "add rule ip dash input iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop\n"
    ));
    assert!(s.contains("flush chain ip dash input\n"));
}

#[test]
fn with_bridged_conntrack_only_a_replica_reaching_itself_is_masqueraded() {
    let s = init_script("dash", "dash0", &"10.88.0.0/24".parse().unwrap(), true);
    // Every container address paired with itself: not the network, gateway or broadcast.
    assert!(
        s.contains("add element ip dash hairpin { 10.88.0.2 . 10.88.0.2, 10.88.0.3 . 10.88.0.3, ")
    );
    assert!(s.contains(", 10.88.0.254 . 10.88.0.254 }\n"));
    assert!(!s.contains("10.88.0.1 . 10.88.0.1") && !s.contains("10.88.0.255 ."));
    assert!(s.contains(
        "add rule ip dash postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade\n"
    ));
    assert!(!s.contains("ip saddr 10.88.0.0/24 ip daddr 10.88.0.0/24 masquerade"));
    // A /20 is listed, a /19 is not: every dnat'd packet inside it is masqueraded.
    let s = init_script("dash", "dash0", &"10.88.0.0/20".parse().unwrap(), true);
    assert!(s.contains("10.88.15.254 . 10.88.15.254 }"));
    let s = init_script("dash", "dash0", &"10.88.0.0/19".parse().unwrap(), true);
    assert!(!s.contains("@hairpin"));
    assert!(s.contains("ct status dnat ip saddr 10.88.0.0/19 ip daddr 10.88.0.0/19 masquerade\n"));
}

#[test]
fn published_script_one_rule_per_port() {
    let state = PublishedPorts::default()
        .attach("web-1", Ipv4Addr::new(10, 88, 0, 2), &ports(), "web")
        .unwrap()
        .attach("web-2", Ipv4Addr::new(10, 88, 0, 3), &ports()[..1], "web")
        .unwrap();
    assert_eq!(
        published_script("dash", &state),
        "flush chain ip dash published\n\
         add rule ip dash published meta l4proto tcp th dport 18080 fib daddr type local \
         dnat ip to numgen inc mod 2 map { 0 : 10.88.0.2 . 8080, 1 : 10.88.0.3 . 8080 } \
         comment \"owner=web\"\n\
         add rule ip dash published meta l4proto udp th dport 15353 fib daddr type local \
         dnat ip to numgen inc mod 1 map { 0 : 10.88.0.2 . 53 } comment \"owner=web\"\n"
    );
    assert_eq!(
        published_script("dash", &PublishedPorts::default()),
        "flush chain ip dash published\n"
    );
    assert_eq!(
        delete_table_script("t1"),
        "add table ip t1\ndelete table ip t1\nadd table bridge t1\ndelete table bridge t1\n"
    );
}

#[test]
fn isolation_accepts_within_each_network_and_drops_the_rest() {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let networks = std::collections::BTreeMap::from([
        (
            "backend".to_string(),
            vec![ip("10.88.0.2"), ip("10.88.0.4")],
        ),
        (
            "frontend".to_string(),
            vec![ip("10.88.0.4"), ip("10.88.1.5")],
        ),
        ("empty".to_string(), vec![]),
    ]);
    let s = super::isolation_script("dash", &networks);
    for family in ["ip", "bridge"] {
        let t = format!("{family} dash");
        let want = format!(
            "flush set {t} replicas\n\
             add element {t} replicas {{ 10.88.0.2, 10.88.0.4, 10.88.1.5 }}\n\
             flush chain {t} isolate\n\
             add rule {t} isolate ip saddr {{ 10.88.0.2, 10.88.0.4 }} ip daddr {{ 10.88.0.2, 10.88.0.4 }} accept comment \"network backend\"\n\
             add rule {t} isolate ip saddr {{ 10.88.0.4, 10.88.1.5 }} ip daddr {{ 10.88.0.4, 10.88.1.5 }} accept comment \"network frontend\"\n\
             add rule {t} isolate drop\n"
        );
        assert!(s.contains(&want), "{s}");
    }
    // Nobody yet: the set is emptied and everything is dropped that matches it (nothing).
    let s = super::isolation_script("dash", &Default::default());
    assert!(!s.contains("add element"), "{s}");
}

/// `nft -j list chain ip t published` of nft 1.0.6 after the rules of `published_script`.
const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "ip", "table": "t", "name": "published", "handle": 1}},
{"rule": {"family": "ip", "table": "t", "chain": "published", "handle": 3, "comment": "owner=web", "expr": [
  {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 18081}},
  {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
  {"dnat": {"family": "ip", "addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": 3, "offset": 0}}, "data": {"set": [
    [0, {"concat": ["10.77.0.2", 8080]}], [1, {"concat": ["10.77.0.3", 8080]}], [2, {"concat": ["10.77.0.4", 8080]}]]}}}}}]}},
{"rule": {"family": "ip", "table": "t", "chain": "published", "handle": 6, "comment": "owner=web-2", "expr": [
  {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}},
  {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": 18083}},
  {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
  {"dnat": {"family": "ip", "addr": {"map": {"key": {"numgen": {"mode": "inc", "mod": 1, "offset": 0}}, "data": {"set": [
    [0, {"concat": ["10.77.0.2", 9000]}]]}}}}}]}}]}"#;

#[test]
fn published_ports_read_back() {
    let json: serde_json::Value = serde_json::from_str(LISTED).unwrap();
    let state = parse_published("nft", &json).unwrap();
    let got: Vec<String> = state
        .iter()
        .flat_map(|((proto, port), p)| {
            p.backends.iter().map(move |(ip, b)| {
                assert_eq!(b.replica, None);
                format!("{proto} {port} {} {ip}:{}", p.owner, b.container_port)
            })
        })
        .collect();
    assert_eq!(
        got,
        [
            "tcp 18081 web 10.77.0.2:8080",
            "tcp 18081 web 10.77.0.3:8080",
            "tcp 18081 web 10.77.0.4:8080",
            "udp 18083 web-2 10.77.0.2:9000",
        ]
    );
    // What is read back renders to the same rules.
    let again = published_script("t", &state);
    assert!(again.contains("th dport 18081 fib daddr type local dnat ip to numgen inc mod 3 map { 0 : 10.77.0.2 . 8080, 1 : 10.77.0.3 . 8080, 2 : 10.77.0.4 . 8080 } comment \"owner=web\"\n"), "{again}");

    let empty: serde_json::Value =
        serde_json::from_str(r#"{"nftables": [{"chain": {"name": "published"}}]}"#).unwrap();
    assert_eq!(
        parse_published("nft", &empty).unwrap(),
        PublishedPorts::default()
    );
}

#[test]
fn foreign_rules_are_reported() {
    for (rule, why) in [
        (r#"{"handle": 9, "expr": []}"#, "no owner comment"),
        (
            r#"{"handle": 9, "comment": "owner=x", "expr": [{"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}]}"#,
            "no dnat to a numgen map",
        ),
        (
            r#"{"handle": 9, "comment": "owner=x", "expr": [{"match": {"left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}, {"dnat": {"addr": {"map": {"data": {"set": [[0, "10.0.0.1"]]}}}}}]}"#,
            "a map element is not n : ip . port",
        ),
    ] {
        let json: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"nftables": [{{"rule": {rule}}}]}}"#)).unwrap();
        let err = parse_published("nft -j list chain", &json).unwrap_err();
        assert!(
            matches!(&err, NetError::NftOutput { reason, .. } if reason == &format!("rule 9: {why}")),
            "{err:?}"
        );
    }
}

#[test]
fn virtual_ips_lead_to_ready_replicas_at_random_and_nowhere_else() {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let vips = [
        crate::VipPort {
            vip: ip("10.96.0.1"),
            protocol: Protocol::Tcp,
            port: 8080,
            backends: vec![ip("10.88.0.2"), ip("10.88.1.3"), ip("10.88.1.4")],
        },
        crate::VipPort {
            vip: ip("10.96.0.2"),
            protocol: Protocol::Udp,
            port: 53,
            backends: vec![],
        },
    ];
    assert_eq!(
        super::services_script("dash", &vips, &["vip_10_96_0_9_tcp_80".to_string()]),
        "flush map ip dash vips\n\
         flush set ip dash vip_addrs\n\
         add chain ip dash vip_10_96_0_1_tcp_8080\n\
         flush chain ip dash vip_10_96_0_1_tcp_8080\n\
         add rule ip dash vip_10_96_0_1_tcp_8080 numgen random mod 3 0 dnat ip to 10.88.0.2\n\
         add rule ip dash vip_10_96_0_1_tcp_8080 numgen random mod 2 0 dnat ip to 10.88.1.3\n\
         add rule ip dash vip_10_96_0_1_tcp_8080 dnat ip to 10.88.1.4\n\
         add chain ip dash vip_10_96_0_2_udp_53\n\
         flush chain ip dash vip_10_96_0_2_udp_53\n\
         add rule ip dash vip_10_96_0_2_udp_53 drop\n\
         add element ip dash vips { 10.96.0.1 . tcp . 8080 : goto vip_10_96_0_1_tcp_8080, \
         10.96.0.2 . udp . 53 : goto vip_10_96_0_2_udp_53 }\n\
         add element ip dash vip_addrs { 10.96.0.1, 10.96.0.2 }\n\
         delete chain ip dash vip_10_96_0_9_tcp_80\n"
    );
    assert_eq!(
        super::services_script("dash", &[], &[]),
        "flush map ip dash vips\nflush set ip dash vip_addrs\n"
    );
    // Hooked before the published ports, on both paths; the chain itself is written once.
    let init = init_script("dash", "dash0", &"10.88.0.0/24".parse().unwrap(), true);
    assert!(init.contains(
        "add rule ip dash services ip daddr . meta l4proto . th dport vmap @vips\n\
         add rule ip dash services ip daddr @vip_addrs drop\n"
    ));
    for chain in ["prerouting", "output"] {
        let services = init
            .find(&format!("add rule ip dash {chain} jump services"))
            .unwrap();
        let published = init
            .find(&format!("add rule ip dash {chain} jump published"))
            .unwrap();
        assert!(services < published, "{chain}");
    }
}
