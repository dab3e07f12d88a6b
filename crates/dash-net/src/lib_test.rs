use std::path::PathBuf;

use super::{NetConfig, NetError, PortMapping, Protocol, fnv1a};

#[test]
fn default_config_is_valid() {
    NetConfig::default().validate().unwrap();
}

#[test]
fn config_rejects() {
    let base = NetConfig::default();
    let cases: Vec<(NetConfig, &str)> = vec![
        (
            NetConfig {
                bridge: String::new(),
                ..base.clone()
            },
            "bridge",
        ),
        (
            NetConfig {
                bridge: "a-very-long-bridge".into(),
                ..base.clone()
            },
            "bridge",
        ),
        (
            NetConfig {
                bridge: "br 0".into(),
                ..base.clone()
            },
            "bridge",
        ),
        (
            NetConfig {
                bridge: "br/0".into(),
                ..base.clone()
            },
            "bridge",
        ),
        (
            NetConfig {
                bridge: "\"x".into(),
                ..base.clone()
            },
            "bridge",
        ),
        (
            NetConfig {
                nft_table: "1dash".into(),
                ..base.clone()
            },
            "nft_table",
        ),
        (
            NetConfig {
                nft_table: "da sh".into(),
                ..base.clone()
            },
            "nft_table",
        ),
        (
            NetConfig {
                nft_table: String::new(),
                ..base.clone()
            },
            "nft_table",
        ),
        (
            NetConfig {
                subnet: "10.0.0.0/31".parse().unwrap(),
                ..base.clone()
            },
            "subnet",
        ),
        (
            NetConfig {
                netns_dir: PathBuf::from("run/netns"),
                ..base.clone()
            },
            "netns_dir",
        ),
    ];
    for (cfg, field) in cases {
        match cfg.validate() {
            Err(NetError::Config { field: f, .. }) => assert_eq!(f, field, "{cfg:?}"),
            other => panic!("{cfg:?}: expected a {field} error, got {other:?}"),
        }
    }
}

#[test]
fn port_mapping_display() {
    let p = PortMapping {
        host_port: 18080,
        container_port: 80,
        protocol: Protocol::Udp,
    };
    assert_eq!(p.to_string(), "18080:80/udp");
}

#[test]
fn fnv1a_is_stable() {
    // Reference values of 64-bit FNV-1a; names derived from it must never change.
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
}
