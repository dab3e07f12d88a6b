//! Replica security, end to end with real containers: the default seccomp profile and
//! capability set, `seccomp = "unconfined"`, a service's own profile, and bad profiles.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::collections::BTreeMap;

use dash_e2e::Server;

/// `syscall-probe` in replica `id` (through `dash exec`): system call → errno (0: it worked).
fn probe(s: &Server, id: &str) -> BTreeMap<String, i32> {
    let out = s.dash(&["exec", id, "--", "syscall-probe"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, errno) = l.split_once(' ')?;
            Some((name.to_string(), errno.trim().parse().ok()?))
        })
        .collect()
}

/// The effective capability mask of the replica's first process, from the host.
fn cap_eff(s: &Server, id: &str) -> u64 {
    let pid = std::fs::read_to_string(s.data_dir.join("containers").join(id).join("pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

const CAP_NET_RAW: u64 = 1 << 13;
const CAP_CHOWN: u64 = 1;

fn service(name: &str, security: &str) -> String {
    format!(
        "name = \"{name}\"\nimage = \"bb:sec\"\ncommand = [\"sleep\", \"100000\"]\n\
         stop_grace_period = \"1s\"\n{security}"
    )
}

fn one(s: &Server, name: &str) -> String {
    s.wait_running(name, 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn replicas_run_under_the_default_seccomp_profile_and_capabilities_unless_the_service_says() {
    let s = Server::start(48);
    let probe_bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_syscall-probe"));
    s.import_busybox_with("bb:sec", &[probe_bin.as_path()]);
    s.apply("confined.toml", &service("confined", ""));
    s.apply(
        "open.toml",
        &service("open", "[security]\nseccomp = \"unconfined\"\ncap_add = [\"NET_RAW\"]\ncap_drop = [\"CHOWN\"]\n"),
    );
    let confined = one(&s, "confined");
    let open = one(&s, "open");

    // Default: each of these fails with EPERM, as under Docker's default profile.
    let got = probe(&s, &confined);
    for call in [
        "unshare-user",
        "keyctl",
        "add_key",
        "bpf",
        "ptrace",
        "mount",
    ] {
        assert_eq!(got.get(call), Some(&libc::EPERM), "{call}: {got:?}");
    }
    // Unconfined: a user namespace can be made.
    let got = probe(&s, &open);
    assert_eq!(got.get("unshare-user"), Some(&0), "{got:?}");

    // Capabilities: the default set has no NET_RAW; the service adds it and drops CHOWN.
    let (c, o) = (cap_eff(&s, &confined), cap_eff(&s, &open));
    assert_eq!(c & CAP_NET_RAW, 0, "{c:x}");
    assert_ne!(c & CAP_CHOWN, 0, "{c:x}");
    assert_ne!(o & CAP_NET_RAW, 0, "{o:x}");
    assert_eq!(o & CAP_CHOWN, 0, "{o:x}");

    // A profile of the service's own, beside its file: mkdir refused, the rest allowed.
    s.write(
        "no-mkdir.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    );
    s.apply(
        "own.toml",
        &service("own", "[security]\nseccomp = \"no-mkdir.json\"\n"),
    );
    let own = one(&s, "own");
    let mkdir = s.dash(&["exec", &own, "--", "mkdir", "/tmp/x"]);
    assert!(!mkdir.status.success(), "{mkdir:?}");
    assert!(
        String::from_utf8_lossy(&mkdir.stderr).contains("Operation not permitted"),
        "{mkdir:?}"
    );
    assert!(
        s.dash(&["exec", &own, "--", "touch", "/tmp/y"])
            .status
            .success()
    );
    let inspect = s.json(&["service", "inspect", "own"]);
    assert_eq!(
        inspect["spec"]["security"]["seccomp"]["path"], "no-mkdir.json",
        "{inspect}"
    );

    // Bad profiles: refused naming the field, nothing created.
    for (file, text, words) in [
        ("empty.json", "", "empty"),
        (
            "broken.json",
            "{\"defaultAction\": ",
            "not a seccomp profile",
        ),
        (
            "badname.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mk dir"], "action": "SCMP_ACT_ERRNO"}]}"#,
            "is not a system call name",
        ),
    ] {
        s.write(file, text);
        let path = s.write(
            "bad.toml",
            &service("bad", &format!("[security]\nseccomp = \"{file}\"\n")),
        );
        let out = s.dash(&["apply", "-f", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("security.seccomp") && err.contains(words),
            "{file}: {out:?}"
        );
    }
    let missing = s.write(
        "bad.toml",
        &service("bad", "[security]\nseccomp = \"nowhere.json\"\n"),
    );
    let out = s.dash(&["apply", "-f", missing.to_str().unwrap()]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nowhere.json"),
        "{out:?}"
    );
    let names: Vec<String> = s
        .json(&["service", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"bad".to_string()), "{names:?}");
}
