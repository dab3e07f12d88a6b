use super::{host_veth_name, validate_owner, validate_ports, validate_replica};
use crate::{NetError, PortMapping, Protocol};

#[test]
fn host_veth_names() {
    let name = host_veth_name("web-1");
    assert_eq!(name.len(), 14);
    assert!(name.len() <= 15, "IFNAMSIZ");
    assert!(name.starts_with("vd"));
    assert!(name[2..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(name, host_veth_name("web-1"), "stable");
    assert_ne!(name, host_veth_name("web-2"));
}

#[test]
fn replica_ids() {
    for ok in [
        "web-1",
        "a",
        "svc_2.r-3",
        "0190f0e2-7a4b-7c3d-8e9f-0123456789ab",
    ] {
        validate_replica(ok).unwrap();
    }
    let long = "x".repeat(201);
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../x",
        "a b",
        long.as_str(),
    ] {
        assert!(
            matches!(validate_replica(bad), Err(NetError::ReplicaId { .. })),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn port_mappings() {
    let tcp = |h, c| PortMapping {
        host_port: h,
        container_port: c,
        protocol: Protocol::Tcp,
    };
    let udp = |h, c| PortMapping {
        host_port: h,
        container_port: c,
        protocol: Protocol::Udp,
    };
    validate_ports("r", &[]).unwrap();
    validate_ports("r", &[tcp(80, 8080), udp(80, 8080), tcp(81, 8080)]).unwrap();
    for bad in [
        vec![tcp(0, 1)],
        vec![tcp(1, 0)],
        vec![tcp(80, 1), tcp(80, 2)],
    ] {
        let err = validate_ports("r", &bad).unwrap_err();
        assert!(
            matches!(err, NetError::PortMapping { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn owners() {
    for ok in ["web", "a", "svc_2.x-3", &"x".repeat(64)] {
        validate_owner(ok).unwrap();
    }
    for bad in ["", "a b", "a\"b", "web/1", &"x".repeat(65)] {
        assert!(
            matches!(validate_owner(bad), Err(NetError::Owner { .. })),
            "{bad:?} accepted"
        );
    }
}
