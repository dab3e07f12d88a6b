use std::collections::BTreeSet;

use super::*;
use crate::spec::{DEFAULT_CAPABILITIES, Security};

fn caps(extra: &[&str]) -> BTreeSet<String> {
    DEFAULT_CAPABILITIES
        .iter()
        .chain(extra)
        .map(|c| c.to_string())
        .collect()
}

/// The action the resolved filter takes for `name` with no argument conditions, if a rule
/// without arguments names it.
fn plain(f: &OciSeccomp, name: &str) -> Option<Action> {
    f.syscalls
        .iter()
        .find(|r| r.args.is_empty() && r.names.iter().any(|n| n == name))
        .map(|r| r.action)
}

#[test]
fn the_default_denies_what_reaches_beyond_the_container() {
    let f = default_profile().resolve(&caps(&[]), "amd64", (6, 1));
    assert_eq!(f.default_action, Action::ScmpActErrno);
    assert_eq!(f.default_errno_ret, Some(1), "EPERM");
    // The node's architecture alone (see default_profile).
    assert_eq!(f.architectures, ["SCMP_ARCH_X86_64"]);
    for allowed in [
        "read",
        "write",
        "openat",
        "execve",
        "futex",
        "arch_prctl",
        "epoll_pwait",
    ] {
        assert_eq!(plain(&f, allowed), Some(Action::ScmpActAllow), "{allowed}");
    }
    for denied in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "ptrace",
        "process_vm_readv",
        "init_module",
        "reboot",
        "clock_settime",
        "swapon",
        "kexec_load",
        "open_by_handle_at",
        "userfaultfd",
    ] {
        assert_eq!(plain(&f, denied), None, "{denied} allowed");
    }
    // The s390 and arm rules are not written on amd64.
    assert_eq!(plain(&f, "s390_runtime_instr"), None);
    // clone only without namespace flags; clone3 answered ENOSYS (libc falls back to clone).
    let clone: Vec<&OciSyscall> = f.syscalls.iter().filter(|r| r.names == ["clone"]).collect();
    assert_eq!(clone.len(), 1);
    assert_eq!(
        clone[0].args,
        [Arg {
            index: 0,
            value: 0x7E02_0000,
            value_two: Some(0),
            op: Op::ScmpCmpMaskedEq
        }]
    );
    let clone3 = f.syscalls.iter().find(|r| r.names == ["clone3"]).unwrap();
    assert_eq!(
        (clone3.action, clone3.errno_ret),
        (Action::ScmpActErrno, Some(38))
    );
    // socket for every family but AF_VSOCK.
    let socket = f.syscalls.iter().find(|r| r.names == ["socket"]).unwrap();
    assert_eq!(
        (socket.args[0].value, socket.args[0].op),
        (40, Op::ScmpCmpNe)
    );
}

#[test]
fn a_capability_opens_the_system_calls_it_governs() {
    let f = default_profile().resolve(&caps(&["CAP_SYS_ADMIN"]), "amd64", (6, 1));
    for name in ["mount", "unshare", "setns", "clone", "clone3", "bpf"] {
        assert_eq!(plain(&f, name), Some(Action::ScmpActAllow), "{name}");
    }
    assert!(f.syscalls.iter().all(|r| r.action == Action::ScmpActAllow));
    let f = default_profile().resolve(&caps(&["CAP_SYS_PTRACE"]), "amd64", (6, 1));
    assert_eq!(plain(&f, "ptrace"), Some(Action::ScmpActAllow));
    assert_eq!(plain(&f, "mount"), None);
    // Another architecture: its own rules, its own architectures.
    let f = default_profile().resolve(&caps(&[]), "arm64", (6, 1));
    assert_eq!(f.architectures, ["SCMP_ARCH_AARCH64"]);
    assert_eq!(plain(&f, "cacheflush"), Some(Action::ScmpActAllow));
    assert_eq!(plain(&f, "arch_prctl"), None);
}

#[test]
fn a_docker_format_profile_is_read_and_resolved_with_its_conditions() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.1"}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN"]}}
        ]
    }"#;
    let p = parse_profile(json).unwrap();
    let f = p.resolve(&caps(&[]), "amd64", (6, 18));
    assert_eq!(f.architectures, ["SCMP_ARCH_X86_64"]);
    let names: Vec<&str> = f
        .syscalls
        .iter()
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect();
    assert_eq!(
        names,
        ["read", "write", "ptrace"],
        "minKernel and excludes by a held cap"
    );
    // The OCI form: what config.json gets.
    let oci = serde_json::to_value(&f).unwrap();
    assert_eq!(oci["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(oci["syscalls"][0]["names"][1], "write");
    // An OCI-form profile (architectures listed) keeps its list.
    let p = parse_profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": []}"#,
    )
    .unwrap();
    assert_eq!(
        p.resolve(&caps(&[]), "amd64", (6, 1)).architectures,
        ["SCMP_ARCH_X86_64"]
    );
}

#[test]
fn bad_profiles_are_refused_saying_where_and_why() {
    let huge = format!(
        "{{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"x\": \"{}\"}}",
        "a".repeat(300 * 1024)
    );
    for (json, want) in [
        ("", "empty"),
        ("   ", "empty"),
        ("[1, 2]", "not a seccomp profile"),
        ("{\"syscalls\": []}", "defaultAction"),
        ("{\"defaultAction\": \"SCMP_ACT_MAYBE\"}", "SCMP_ACT_MAYBE"),
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [], \"action\": \"SCMP_ACT_ALLOW\"}]}",
            "syscalls[0]: names is empty",
        ),
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"Read!\"], \"action\": \"SCMP_ACT_ALLOW\"}]}",
            "\"Read!\" is not a system call name",
        ),
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"args\": [{\"index\": 9, \"value\": 1, \"op\": \"SCMP_CMP_EQ\"}]}]}",
            "args index 9",
        ),
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"includes\": {\"caps\": [\"CAP_NOPE\"]}}]}",
            "\"CAP_NOPE\" is not a capability",
        ),
        (
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_ALLOW\", \"includes\": {\"minKernel\": \"new\"}}]}",
            "minKernel \"new\"",
        ),
        (huge.as_str(), "more than 256 KiB"),
    ] {
        let e = parse_profile(json).unwrap_err();
        assert!(e.contains(want), "{json:.60}: {e}");
    }
}

#[test]
fn capabilities_are_the_default_set_without_net_raw_plus_and_minus_the_service_s() {
    let set = Security::default().capabilities();
    assert!(!set.contains("CAP_NET_RAW"));
    assert!(set.contains("CAP_CHOWN") && set.contains("CAP_NET_BIND_SERVICE"));
    let s = Security {
        cap_add: vec!["CAP_NET_RAW".into()],
        cap_drop: vec!["CAP_CHOWN".into()],
        ..Security::default()
    };
    let set = s.capabilities();
    assert!(set.contains("CAP_NET_RAW") && !set.contains("CAP_CHOWN"));
    let s = Security {
        cap_add: vec!["CAP_KILL".into()],
        cap_drop: vec!["ALL".into()],
        ..Security::default()
    };
    assert_eq!(
        s.capabilities().into_iter().collect::<Vec<_>>(),
        ["CAP_KILL"]
    );
    let s = Security {
        cap_add: vec!["ALL".into()],
        ..Security::default()
    };
    assert_eq!(s.capabilities().len(), crate::spec::CAPABILITIES.len());
}

#[test]
fn kernel_releases_and_architectures() {
    assert_eq!(parse_kernel("6.18.44-fc-v1300"), Some((6, 18)));
    assert_eq!(parse_kernel("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel("six"), None);
    assert_eq!(go_arch("x86_64"), "amd64");
    assert_eq!(go_arch("aarch64"), "arm64");
}
