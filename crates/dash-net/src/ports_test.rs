use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Backend, Published, PublishedPorts};
use crate::{NetError, PortMapping, Protocol};
use port_mapping::{tcp, udp};

#[path = "../tests/common/port_mapping.rs"]
mod port_mapping;

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 88, 0, host)
}

/// Each port as (protocol, host port, owner, [(ip host byte, replica or "?", container port)]).
type Row = (Protocol, u16, String, Vec<(u8, String, u16)>);

fn rows(state: &PublishedPorts) -> Vec<Row> {
    state
        .iter()
        .map(|((proto, port), p)| {
            let backends = p
                .backends
                .iter()
                .map(|(addr, b)| {
                    (
                        addr.octets()[3],
                        b.replica.clone().unwrap_or_else(|| "?".into()),
                        b.container_port,
                    )
                })
                .collect();
            (*proto, *port, p.owner.clone(), backends)
        })
        .collect()
}

/// The rows of a state that holds only tcp 18080, owned by web, with `backends`.
fn web_18080(backends: &[(u8, &str, u16)]) -> [Row; 1] {
    [row(Protocol::Tcp, 18080, "web", backends)]
}

fn row(proto: Protocol, port: u16, owner: &str, backends: &[(u8, &str, u16)]) -> Row {
    (
        proto,
        port,
        owner.to_string(),
        backends
            .iter()
            .map(|(h, r, c)| (*h, r.to_string(), *c))
            .collect(),
    )
}

/// web-1, web-2, web-3 at .2 .. .4, all on tcp 18080 → 8080.
fn three() -> PublishedPorts {
    let mut s = PublishedPorts::default();
    for i in 1..=3u8 {
        s = s
            .attach(&format!("web-{i}"), ip(i + 1), &[tcp(18080, 8080)], "web")
            .unwrap();
    }
    s
}

#[test]
fn replicas_of_one_owner_share_a_port() {
    let s = three();
    assert_eq!(
        rows(&s),
        web_18080(&[(2, "web-1", 8080), (3, "web-2", 8080), (4, "web-3", 8080)])
    );
    assert_eq!(s.backend_count(), 3);
}

#[test]
fn another_owner_is_refused_and_nothing_changes() {
    let s = three();
    let err = s
        .attach("api-1", ip(9), &[tcp(18081, 80), tcp(18080, 80)], "api")
        .unwrap_err();
    match &err {
        NetError::PortOwned {
            protocol,
            host_port,
            owner,
            replicas,
            replica,
            requested,
        } => {
            assert_eq!(
                (*protocol, *host_port, owner.as_str(), *replicas),
                (Protocol::Tcp, 18080, "web", 3)
            );
            assert_eq!((replica.as_str(), requested.as_str()), ("api-1", "api"));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("tcp port 18080") && msg.contains("service web") && msg.contains("api-1"),
        "{msg}"
    );
    // Same number, other protocol: a different port.
    let s2 = s.attach("api-1", ip(9), &[udp(18080, 80)], "api").unwrap();
    assert_eq!(s2.iter().count(), 2);
}

#[test]
fn reattach_is_idempotent_and_declarative() {
    let s = three();
    assert_eq!(
        s.attach("web-2", ip(3), &[tcp(18080, 8080)], "web")
            .unwrap(),
        s
    );
    // Attached again with other ports: exactly those now.
    let moved = s
        .attach("web-2", ip(3), &[tcp(18090, 8080)], "web")
        .unwrap();
    assert_eq!(
        rows(&moved),
        [
            row(
                Protocol::Tcp,
                18080,
                "web",
                &[(2, "web-1", 8080), (4, "web-3", 8080)]
            ),
            row(Protocol::Tcp, 18090, "web", &[(3, "web-2", 8080)]),
        ]
    );
    // Attached again at a new address: the old backend goes.
    let readdressed = s
        .attach("web-2", ip(7), &[tcp(18080, 8080)], "web")
        .unwrap();
    assert_eq!(
        rows(&readdressed),
        web_18080(&[(2, "web-1", 8080), (4, "web-3", 8080), (7, "web-2", 8080)])
    );
}

#[test]
fn the_only_owner_may_hand_a_port_over() {
    // A port whose only backends are the attaching replica's own is free for its new owner.
    let s = PublishedPorts::default()
        .attach("a-1", ip(2), &[tcp(80, 80)], "a")
        .unwrap();
    let s = s.attach("a-1", ip(2), &[tcp(80, 80)], "b").unwrap();
    assert_eq!(rows(&s), [row(Protocol::Tcp, 80, "b", &[(2, "a-1", 80)])]);
}

#[test]
fn detach_removes_only_that_replica_and_the_last_one_the_port() {
    let s = three();
    let s = s.detach("web-2", ip(3), &[tcp(18080, 8080)]);
    assert_eq!(
        rows(&s),
        web_18080(&[(2, "web-1", 8080), (4, "web-3", 8080)])
    );
    // Idempotent.
    assert_eq!(s.detach("web-2", ip(3), &[tcp(18080, 8080)]), s);
    let s = s
        .detach("web-1", ip(2), &[tcp(18080, 8080)])
        .detach("web-3", ip(4), &[]);
    assert_eq!(s, PublishedPorts::default());
    // Free again: another owner may take it.
    s.attach("api-1", ip(9), &[tcp(18080, 80)], "api").unwrap();
}

#[test]
fn a_late_detach_leaves_the_new_holder_of_the_address_alone() {
    let s = PublishedPorts::default()
        .attach("new", ip(2), &[tcp(80, 80)], "svc")
        .unwrap();
    assert_eq!(s.detach("old", ip(2), &[tcp(80, 80)]), s);
}

/// What `nftables::parse_published` gives after a restart: addresses, no names.
fn read_back() -> PublishedPorts {
    let backends = |hosts: &[u8]| {
        hosts
            .iter()
            .map(|h| {
                (
                    ip(*h),
                    Backend {
                        replica: None,
                        container_port: 8080,
                    },
                )
            })
            .collect()
    };
    PublishedPorts::from_ports(BTreeMap::from([
        (
            (Protocol::Tcp, 18080),
            Published {
                owner: "web".into(),
                backends: backends(&[2, 3, 4]),
            },
        ),
        (
            (Protocol::Udp, 18080),
            Published {
                owner: "web".into(),
                backends: BTreeMap::new(),
            },
        ),
    ]))
}

#[test]
fn after_a_restart_replicas_are_found_by_address() {
    let s = read_back();
    assert_eq!(s.iter().count(), 1, "a port without backends is dropped");
    tracing::info!("--- re-attaching one names it and keeps the others");
    let s = s
        .attach("web-1", ip(2), &[tcp(18080, 8080)], "web")
        .unwrap();
    assert_eq!(
        rows(&s),
        web_18080(&[(2, "web-1", 8080), (3, "?", 8080), (4, "?", 8080)])
    );
    tracing::info!("--- detaching one not re-attached yet finds it by address");
    let s = s.detach("web-2", ip(3), &[tcp(18080, 8080)]);
    assert_eq!(rows(&s), web_18080(&[(2, "web-1", 8080), (4, "?", 8080)]));
    tracing::info!("--- the owner read back still holds the port");
    assert!(matches!(
        s.attach("api-1", ip(9), &[tcp(18080, 80)], "api"),
        Err(NetError::PortOwned { .. })
    ));
}
