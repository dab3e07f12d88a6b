use super::{id_prefix, normalize};

#[test]
fn valid_references_are_normalised() {
    let cases = [
        ("busybox", "busybox:latest"),
        ("busybox:latest", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("library/busybox", "library/busybox:latest"),
        ("localhost/bb:1", "localhost/bb:1"),
        ("localhost:5000/bb", "localhost:5000/bb:latest"),
        (
            "localhost:5000/team/bb:v1.2-rc_3",
            "localhost:5000/team/bb:v1.2-rc_3",
        ),
        (
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
        ),
        (
            "Registry.Example.com/a/b",
            "Registry.Example.com/a/b:latest",
        ),
        ("my-app__x/web--front.y:_t", "my-app__x/web--front.y:_t"),
        ("localhost:5000", "localhost:5000"),
        ("a:B", "a:B"),
        (
            "localhost:5000/bb@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost:5000/bb@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        (
            "bb:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "bb@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(normalize(input).unwrap(), want, "input {input:?}");
    }
}

#[test]
fn invalid_references_are_rejected_with_a_reason() {
    let cases = [
        ("", "empty"),
        ("BusyBox", "lowercase"),
        ("busybox:", "tag after ':' is empty"),
        ("busybox:-x", "must start with"),
        ("busybox:a/b", "not a number"),
        ("busybox:a+b", "may only contain"),
        ("busybox@sha256:abcd", "digest references"),
        (
            "busybox@sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "digest references",
        ),
        (
            "BB@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "lowercase",
        ),
        ("bb@sha256:x@y", "digest references"),
        ("a//b", "empty path component"),
        ("/busybox", "empty path component"),
        ("busybox/", "empty path component"),
        ("-bb", "may only contain"),
        ("bb-", "may only contain"),
        ("b..b", "may only contain"),
        ("b___b", "may only contain"),
        ("host_x.com:5000/bb", "not a valid host name"),
        ("host.com:50a/bb", "not a number"),
        ("bu sy", "whitespace"),
    ];
    for (input, want) in cases {
        let err = normalize(input).unwrap_err().to_string();
        assert!(err.contains(want), "input {input:?}: {err}");
        assert!(err.starts_with("invalid image reference"), "{err}");
    }
    let long = "a".repeat(256);
    assert!(normalize(&long).is_err());
    let long_tag = format!("a:{}", "t".repeat(129));
    assert!(normalize(&long_tag).is_err());
}

#[test]
fn id_prefixes_need_twelve_lowercase_hex_digits() {
    assert_eq!(id_prefix("0123456789ab"), Some("0123456789ab"));
    assert_eq!(
        id_prefix("sha256:0123456789abcdef"),
        Some("0123456789abcdef")
    );
    assert_eq!(id_prefix("0123456789a"), None);
    assert_eq!(id_prefix("0123456789AB"), None);
    assert_eq!(id_prefix("busybox"), None);
    assert_eq!(id_prefix(&"a".repeat(65)), None);
}
