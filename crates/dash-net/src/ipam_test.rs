use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use super::{Ipv4Net, allocate};
use crate::NetError;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn parse_and_display() {
    let n = net("10.88.0.0/24");
    assert_eq!(n.addr(), ip("10.88.0.0"));
    assert_eq!(n.prefix(), 24);
    assert_eq!(n.to_string(), "10.88.0.0/24");
    assert_eq!(n.gateway(), ip("10.88.0.1"));
    assert_eq!(n.broadcast(), ip("10.88.0.255"));
    assert_eq!(net("0.0.0.0/0").broadcast(), ip("255.255.255.255"));
    assert_eq!(net("10.1.2.3/32").broadcast(), ip("10.1.2.3"));
}

#[test]
fn parse_rejects() {
    for (input, needle) in [
        ("10.88.0.0", "expected address/prefix"),
        ("10.88.0/24", "not an IPv4 address"),
        ("10.88.0.0/33", "0 to 32"),
        ("10.88.0.0/x", "0 to 32"),
        ("10.88.0.5/24", "use 10.88.0.0/24"),
        ("", "expected address/prefix"),
    ] {
        let err = input.parse::<Ipv4Net>().unwrap_err();
        assert!(
            matches!(err, NetError::Subnet { .. }),
            "{input}: wrong variant {err:?}"
        );
        assert!(err.to_string().contains(needle), "{input}: {err}");
    }
}

#[test]
fn container_addresses() {
    let n = net("10.88.0.0/24");
    for (addr, ok) in [
        ("10.88.0.0", false),
        ("10.88.0.1", false),
        ("10.88.0.2", true),
        ("10.88.0.254", true),
        ("10.88.0.255", false),
        ("10.88.1.2", false),
    ] {
        assert_eq!(n.is_container_addr(ip(addr)), ok, "{addr}");
    }
    assert!(n.contains(ip("10.88.0.255")));
    assert!(!net("10.88.0.0/31").is_container_addr(ip("10.88.0.1")));
}

#[test]
fn allocate_table() {
    struct Case {
        subnet: &'static str,
        used: &'static [&'static str],
        want: Option<&'static str>,
    }
    let cases = [
        Case {
            subnet: "10.88.0.0/24",
            used: &[],
            want: Some("10.88.0.2"),
        },
        Case {
            subnet: "10.88.0.0/24",
            used: &["10.88.0.2", "10.88.0.3"],
            want: Some("10.88.0.4"),
        },
        // A hole is filled before the end.
        Case {
            subnet: "10.88.0.0/24",
            used: &["10.88.0.2", "10.88.0.4", "10.88.0.3", "10.88.0.6"],
            want: Some("10.88.0.5"),
        },
        // Reserved and foreign addresses in `used` change nothing; duplicates neither.
        Case {
            subnet: "10.88.0.0/24",
            used: &[
                "10.88.0.0",
                "10.88.0.1",
                "10.88.0.255",
                "10.9.0.2",
                "10.88.0.2",
                "10.88.0.2",
            ],
            want: Some("10.88.0.3"),
        },
        // /30: only .2 is a container address (.0 network, .1 gateway, .3 broadcast).
        Case {
            subnet: "10.88.0.0/30",
            used: &[],
            want: Some("10.88.0.2"),
        },
        Case {
            subnet: "10.88.0.0/30",
            used: &["10.88.0.2"],
            want: None,
        },
        Case {
            subnet: "10.88.0.0/31",
            used: &[],
            want: None,
        },
        Case {
            subnet: "10.88.0.0/32",
            used: &[],
            want: None,
        },
        Case {
            subnet: "255.255.255.255/32",
            used: &[],
            want: None,
        },
        Case {
            subnet: "255.255.255.252/30",
            used: &[],
            want: Some("255.255.255.254"),
        },
        Case {
            subnet: "10.0.0.0/8",
            used: &["10.0.0.2"],
            want: Some("10.0.0.3"),
        },
    ];
    for c in cases {
        let subnet = net(c.subnet);
        let used: Vec<Ipv4Addr> = c.used.iter().map(|s| ip(s)).collect();
        let got = allocate(&subnet, &used);
        match c.want {
            Some(want) => assert_eq!(got.unwrap(), ip(want), "{} {:?}", c.subnet, c.used),
            None => assert!(
                matches!(got, Err(NetError::SubnetExhausted { subnet: s }) if s == subnet),
                "{} {:?}: {got:?}",
                c.subnet,
                c.used
            ),
        }
    }
}

#[test]
fn allocate_fills_a_subnet_in_order() {
    let subnet = net("10.88.0.0/28");
    let mut used = HashSet::new();
    let mut order = Vec::new();
    while let Ok(next) = allocate(&subnet, &used) {
        assert!(subnet.is_container_addr(next));
        assert!(used.insert(next), "{next} handed out twice");
        order.push(next);
    }
    // 16 addresses minus network, gateway and broadcast.
    assert_eq!(order.len(), 13);
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    // Releasing one makes it the next answer.
    used.remove(&ip("10.88.0.7"));
    assert_eq!(allocate(&subnet, &used).unwrap(), ip("10.88.0.7"));
}

#[test]
fn allocate_accepts_owned_and_borrowed_sets() {
    let subnet = net("10.88.0.0/24");
    let used: BTreeSet<Ipv4Addr> = [ip("10.88.0.2")].into();
    assert_eq!(allocate(&subnet, &used).unwrap(), ip("10.88.0.3"));
    assert_eq!(allocate(&subnet, used).unwrap(), ip("10.88.0.3"));
}
