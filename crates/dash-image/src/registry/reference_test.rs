use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn references_get_docker_defaults() {
    let digest = format!("sha256:{HEX}");
    let cases = [
        (
            "busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        (
            "busybox:1.36",
            "docker.io",
            "library/busybox",
            Some("1.36"),
            None,
        ),
        ("team/app", "docker.io", "team/app", Some("latest"), None),
        (
            "docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
        ),
        (
            "index.docker.io/library/busybox:1",
            "docker.io",
            "library/busybox",
            Some("1"),
            None,
        ),
        ("localhost/bb", "localhost", "bb", Some("latest"), None),
        (
            "127.0.0.1:5000/a/b:v1",
            "127.0.0.1:5000",
            "a/b",
            Some("v1"),
            None,
        ),
        ("ghcr.io/org/img:2", "ghcr.io", "org/img", Some("2"), None),
    ];
    for (input, registry, repository, tag, digest) in cases {
        let r = parse_reference(input).unwrap();
        assert_eq!(r.registry, registry, "{input}");
        assert_eq!(r.repository, repository, "{input}");
        assert_eq!(r.tag.as_deref(), tag, "{input}");
        assert_eq!(r.digest.as_deref(), digest, "{input}");
    }
    let r = parse_reference(&format!("127.0.0.1:5000/bb@{digest}")).unwrap();
    assert_eq!(r.tag, None);
    assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(r.to_string(), format!("127.0.0.1:5000/bb@{digest}"));
    let r = parse_reference(&format!("bb:1@{digest}")).unwrap();
    assert_eq!(r.to_string(), format!("docker.io/library/bb:1@{digest}"));
    assert_eq!(
        parse_reference("busybox").unwrap().to_string(),
        "docker.io/library/busybox:latest"
    );
}

#[test]
fn bad_references_say_why() {
    for (input, want) in [
        ("", "empty"),
        ("BusyBox", "lowercase"),
        ("bb@sha256:abc", "digest references"),
        ("bb:", "empty"),
    ] {
        let err = parse_reference(input).unwrap_err().to_string();
        assert!(err.starts_with("invalid image reference"), "{err}");
        assert!(err.contains(want), "{input:?}: {err}");
    }
}

#[test]
fn loopback_registries_are_recognised() {
    for r in [
        "localhost",
        "localhost:5000",
        "127.0.0.1:5000",
        "127.3.4.5",
        "[::1]:5000",
    ] {
        assert!(is_loopback(r), "{r}");
    }
    for r in [
        "docker.io",
        "10.0.0.1:5000",
        "example.com:5000",
        "localhost.example.com",
    ] {
        assert!(!is_loopback(r), "{r}");
    }
}

#[test]
fn registry_names_are_canonical() {
    assert_eq!(
        check_registry("https://index.docker.io/v1/").unwrap(),
        "docker.io"
    );
    assert_eq!(check_registry("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
    assert_eq!(check_registry("localhost").unwrap(), "localhost");
    assert!(check_registry("").is_err());
    assert!(check_registry("bad host").is_err());
    assert!(check_registry("justaname").is_err());
}
