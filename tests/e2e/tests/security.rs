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
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.replica_pid(id))).unwrap();
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
        let err = s.fails(&["apply", "-f", path.to_str().unwrap()]);
        assert!(
            err.contains("security.seccomp") && err.contains(words),
            "{file}: {err}"
        );
    }
    let missing = s.write(
        "bad.toml",
        &service("bad", "[security]\nseccomp = \"nowhere.json\"\n"),
    );
    let err = s.fails(&["apply", "-f", missing.to_str().unwrap()]);
    assert!(err.contains("nowhere.json"), "{err}");
    let names = s.service_names();
    assert!(!names.contains(&"bad".to_string()), "{names:?}");
}

/// The host uid of the first process of replica `id` (the real uid of /proc/PID/status).
fn host_uid(s: &Server, id: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.replica_pid(id))).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn user_namespaces_give_each_replica_a_range_of_host_ids_of_its_own() {
    let s = Server::start_with_busybox(70);
    let pw = s.write("pw.txt", "userns-secret");
    s.ok(&["secret", "create", "pw", "-f", pw.to_str().unwrap()]);
    s.apply(
        "userns.toml",
        "name = \"userns\"\nimage = \"bb:1\"\nreplicas = 2\nstop_grace_period = \"1s\"\n\
         command = [\"sh\", \"-c\", \"hostname > /www/id && touch /made-here && exec httpd -f -p 8080 -h /www\"]\n\
         [[ports]]\ncontainer = 8080\npublished = 17770\n\
         [[secrets]]\nname = \"pw\"\nuid = 101\n\
         [security]\nuser_namespace = true\n",
    );
    s.apply(
        "plain.toml",
        &service("plain", "").replace("bb:sec", "bb:1"),
    );
    let replicas = s.wait_running("userns", 2);
    let plain = one(&s, "plain");
    assert_eq!(
        host_uid(&s, &plain),
        0,
        "a replica without one runs as host root"
    );

    let mut firsts = Vec::new();
    for r in &replicas {
        let id = r["id"].as_str().unwrap();
        let uid = host_uid(&s, id);
        assert!(
            uid >= 1 << 30,
            "{id}: root in the container is host uid {uid}"
        );
        firsts.push(uid);
        // Root inside; the secret's owner as asked, inside.
        let out = s.dash(&[
            "exec",
            id,
            "--",
            "sh",
            "-c",
            "id -u; stat -c %u /run/secrets/pw; cat /run/secrets/pw",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            ["0", "101", "userns-secret"],
            "{id}: {out:?}"
        );
        // What it wrote is its range's on the host.
        let made = s
            .data_dir
            .join("containers")
            .join(id)
            .join("upper/made-here");
        let meta = std::fs::metadata(&made).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid()), (uid, uid), "{}", made.display());
    }
    // Disjoint ranges of 65,536 ids.
    firsts.sort();
    assert!(firsts[1] - firsts[0] >= 65_536, "{firsts:?}");
    // It still serves its page.
    let (code, body) = dash_e2e::http_get("127.0.0.1:17770", "/id").unwrap();
    assert_eq!(code, 200);
    assert!(replicas.iter().any(|r| r["id"] == body.trim()), "{body}");

    // Gone with the replicas: no mount of theirs is left.
    let ids: Vec<String> = replicas
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    s.remove_all_services();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for id in &ids {
        assert!(!info.contains(id.as_str()), "a mount of {id} is left");
    }

    // A node with --default-userns: every replica gets one unless its service says no.
    let mut s = s;
    s.restart_with(&["--default-userns"]);
    s.apply("dflt.toml", &service("dflt", "").replace("bb:sec", "bb:1"));
    s.apply(
        "optout.toml",
        &service("optout", "[security]\nuser_namespace = false\n").replace("bb:sec", "bb:1"),
    );
    let dflt = one(&s, "dflt");
    let optout = one(&s, "optout");
    assert!(host_uid(&s, &dflt) >= 1 << 30);
    assert_eq!(host_uid(&s, &optout), 0);
}
