//! The single-node foundation, end to end: real `dash server`, real containers (crun or
//! runc), real netns/veth/nftables, real SQLite.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::collections::HashSet;
use std::time::Duration;

use dash_e2e::{Server, http_get, http_request};
use serde_json::Value;

/// busybox httpd on 8080 serving /www; `/id` answers the replica's host name (its id).
fn web(port: u16, replicas: u32, extra: &str) -> String {
    format!(
        "name = \"web\"\nimage = \"bb:1\"\n\
         command = [\"sh\", \"-c\", \"hostname > /www/id && exec httpd -f -p 8080 -h /www\"]\n\
         replicas = {replicas}\nstop_grace_period = \"1s\"\n\
         [[ports]]\ncontainer = 8080\npublished = {port}\n{extra}"
    )
}

/// GETs `/id` from `addr` in a loop until `stop`: (when, which replica answered or why not).
fn load(
    addr: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(std::time::Instant, Result<String, String>)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let got = match http_get(addr, "/id") {
                Ok((200, body)) => Ok(body.trim().to_string()),
                Ok((code, body)) => Err(format!("status {code}: {body}")),
                Err(e) => Err(e.to_string()),
            };
            seen.push((std::time::Instant::now(), got));
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

fn ids(replicas: &[Value]) -> HashSet<String> {
    replicas
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn service_lifecycle_scale_update_and_clean_removal() {
    let s = Server::start_with_busybox(1);
    let file = s.write("web.toml", &web(18101, 3, ""));
    let out = s.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.contains("created"), "{out}");
    // Idempotent.
    assert!(
        s.ok(&["apply", "-f", file.to_str().unwrap()])
            .contains("unchanged")
    );

    let reps = s.wait_running("web", 3);
    let ips: HashSet<&str> = reps.iter().map(|r| r["ip"].as_str().unwrap()).collect();
    assert_eq!(ips.len(), 3, "distinct IPs: {reps:?}");

    // The published port answers on the host's loopback.
    let (code, body) = s.wait("the published port", Duration::from_secs(10), || {
        http_get("127.0.0.1:18101", "/").ok()
    });
    assert_eq!(code, 200);
    assert!(body.contains("hello from dash"), "{body}");

    // Each replica reaches the others by IP.
    for r in &reps {
        for ip in &ips {
            if Some(*ip) == r["ip"].as_str() {
                continue;
            }
            let out = s.exec_in(
                r["id"].as_str().unwrap(),
                &["wget", "-q", "-O", "-", &format!("http://{ip}:8080/")],
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("hello from dash"),
                "{} -> {ip}: {out:?}",
                r["id"]
            );
        }
    }

    s.ok(&["scale", "web", "5"]);
    s.wait_running("web", 5);
    s.ok(&["scale", "web", "1"]);
    s.wait_running("web", 1);
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
    let before = ids(&s.wait_running("web", 3));

    // Change env (and add a health check): replicas replaced one at a time (stop-first,
    // parallelism 1). Judged by real requests under load on the published port, each answered
    // by a replica that names itself: every request succeeds, and in every quarter second at
    // least 2 of the 3 replicas answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = load("127.0.0.1:18101", stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let file2 = s.write(
        "web2.toml",
        &web(
            18101,
            3,
            "[env]\nGREETING = \"hi\"\n[health]\ntcp = true\nport = 8080\ninterval = \"200ms\"\ntimeout = \"150ms\"\n",
        ),
    );
    let out = s.ok(&["apply", "-f", file2.to_str().unwrap()]);
    assert!(out.contains("updated (version 2)"), "{out}");
    let after = s.wait("all replicas at version 2", Duration::from_secs(60), || {
        let r = s.replicas("web");
        let ok = r.len() == 3
            && r.iter()
                .all(|x| x["version"] == 2 && x["state"] == "healthy");
        ok.then_some(r)
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = loader.join().unwrap();
    let failed: Vec<_> = seen.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the update: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    let t0 = seen[0].0;
    let mut windows: std::collections::BTreeMap<u128, HashSet<&str>> = Default::default();
    for (at, r) in &seen {
        if let Ok(id) = r {
            windows
                .entry(at.duration_since(t0).as_millis() / 250)
                .or_default()
                .insert(id.as_str());
        }
    }
    let last = windows.keys().next_back().copied().unwrap_or(0);
    let fewest = windows
        .iter()
        .filter(|(w, _)| **w != last)
        .map(|(_, ids)| ids.len())
        .min()
        .unwrap_or(0);
    assert!(
        fewest >= 2,
        "a quarter second with only {fewest} replica(s) answering during the update"
    );
    let answered: HashSet<&str> = seen.iter().filter_map(|(_, r)| r.as_deref().ok()).collect();
    assert!(
        answered.len() >= 6,
        "old and new replicas answered: {answered:?}"
    );
    assert!(ids(&after).is_disjoint(&before), "all replicas replaced");
    let inspect: Value = serde_json::from_str(&s.ok(&["service", "inspect", "web"])).unwrap();
    assert_eq!(inspect["version"], 2);
    assert_eq!(inspect["spec"]["env"]["GREETING"], "hi");

    s.remove_last_service("web", Duration::from_secs(30));
    s.assert_no_leftovers("web-", Duration::from_secs(5));
}

#[test]
fn every_admin_route_but_healthz_needs_the_token() {
    let s = Server::start(2);
    assert_eq!(http_get(&s.addr, "/healthz").unwrap().0, 200);
    for (method, path) in [
        ("GET", "/v1/services"),
        ("POST", "/v1/services"),
        ("GET", "/v1/services/web"),
        ("DELETE", "/v1/services/web"),
        ("POST", "/v1/services/web/scale"),
        ("GET", "/v1/replicas"),
        ("GET", "/v1/nodes"),
        ("GET", "/v1/images"),
        ("POST", "/v1/images/import"),
        ("DELETE", "/v1/images/bb:1"),
        ("GET", "/v1/events"),
        ("GET", "/v1/logs/web"),
        ("GET", "/openapi.json"),
    ] {
        let (code, body) = http_request(&s.addr, method, path, None).unwrap();
        assert_eq!(code, 401, "{method} {path}: {body}");
        assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
        let (code, _) = http_request(&s.addr, method, path, Some("wrong")).unwrap();
        assert_eq!(code, 401, "{method} {path} with a wrong token");
    }
    let (code, body) = http_request(&s.addr, "GET", "/openapi.json", Some(&s.token())).unwrap();
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/services"].is_object());
    // Bad requests answer in the API's error shape too.
    let t = s.token();
    let (code, body) = http_request(&s.addr, "POST", "/v1/services", Some(&t)).unwrap();
    assert_eq!(code, 415, "no JSON content type: {body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (err["code"].as_str(), err["field"].as_str()),
        (Some("invalid"), Some("body")),
        "{body}"
    );
    let (code, body) = http_request(&s.addr, "GET", "/v1/logs/web?tail=lots", Some(&t)).unwrap();
    assert!(code == 400 || code == 404, "{code} {body}");
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["code"].is_string(),
        "{body}"
    );
    let (code, body) = http_request(&s.addr, "GET", "/v2/nothing", Some(&t)).unwrap();
    assert_eq!(code, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "not_found"
    );
    let out = s.dash(&["scale", "nope", "3"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("service \"nope\" not found"),
        "{out:?}"
    );
    s.fails(&["scale", "nope", "4000000000"]);
    // The token file is private.
    let mode = std::os::unix::fs::MetadataExt::mode(
        &std::fs::metadata(s.data_dir.join("admin.token")).unwrap(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn bad_service_files_are_rejected_naming_the_field() {
    let s = Server::start(3);
    for (content, needle) in [
        ("", "the file is empty"),
        (
            "name = \"web\"\nimage = \"bb:1\"\nreplicas = \"three\"\n",
            "replicas",
        ),
        (
            "name = \"web\"\nimage = \"bb:1\"\nreplicas = 99999999999999999999\n",
            "replicas",
        ),
        (
            "name = \"web\"\nimage = \"bb:1\"\nreplicas = 100001\n",
            "replicas = 100001",
        ),
        (
            "name = \"web\"\nimage = \"bb:1\"\nreplcas = 1\n",
            "did you mean `replicas`",
        ),
        (
            "name = \"web\"\nimage = \"bb:1\"\n[resources]\nmemory = \"lots\"\n",
            "resources.memory",
        ),
        (
            "name = \"web\"\nimage = \"bb:1\"\nnetworks = [\"Back_End\"]\n",
            "networks: \"Back_End\" is not a valid network name",
        ),
        (
            "name = \"web\"\nimage = \"bb:1\"\nnetworks = []\n",
            "at least one network",
        ),
        (
            "name = \"tasks\"\nimage = \"bb:1\"\n",
            "name = \"tasks\" is reserved",
        ),
    ] {
        let f = s.write("bad.toml", content);
        let out = s.dash(&["apply", "-f", f.to_str().unwrap()]);
        assert!(!out.status.success(), "accepted: {content:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{content:?}: {err}");
        assert!(err.contains("bad.toml:"), "names the file: {err}");
    }
    assert_eq!(
        s.json(&["service", "ls"]),
        Value::Array(vec![]),
        "nothing was created"
    );
}

/// A service range with room for two virtual IPs: the third service with ports is refused,
/// naming the flag, and nothing of it is kept; a service without ports needs none.
#[test]
fn an_exhausted_service_range_refuses_the_service_whole() {
    let s = Server::start_with(45, &["--service-cidr", "10.201.45.0/30"]);
    let file = |name: &str, ports: bool| {
        s.write(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nimage = \"bb:1\"\nreplicas = 0\n{}",
                if ports {
                    "[[ports]]\ncontainer = 80\n"
                } else {
                    ""
                }
            ),
        )
    };
    for name in ["a", "b"] {
        s.ok(&["apply", "-f", file(name, true).to_str().unwrap()]);
    }
    let err = s.fails(&["apply", "-f", file("c", true).to_str().unwrap()]);
    assert!(
        err.contains("10.201.45.0/30") && err.contains("--service-cidr"),
        "{err}"
    );
    assert_eq!(s.service_names(), ["a", "b"], "nothing of c was kept");
    s.ok(&["apply", "-f", file("d", false).to_str().unwrap()]);
    let vips: Vec<Value> = ["a", "b", "d"]
        .iter()
        .map(|n| s.json(&["service", "inspect", n])["vip"].clone())
        .collect();
    assert_eq!(
        vips,
        [
            Value::from("10.201.45.1"),
            Value::from("10.201.45.2"),
            Value::Null
        ]
    );
    s.remove_all_services();
}

/// Removal under load leaves nothing behind: 200 replicas created at once and removed at
/// once (the run that once left a container whose `crun delete -f` failed while its process
/// exited): no container, mount, netns, veth, cgroup or published-port rule is left.
#[test]
fn a_few_hundred_replicas_come_and_go_without_a_trace() {
    let s = Server::start_with_busybox(5);
    s.apply(
        "many.toml",
        "name = \"many\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"600\"]\nreplicas = 200\n\
         stop_grace_period = \"200ms\"\n",
    );
    s.wait("200 replicas running", Duration::from_secs(240), || {
        (s.running("many") == 200).then_some(())
    });
    s.remove_last_service("many", Duration::from_secs(240));
    s.assert_no_leftovers("many-", Duration::from_secs(10));
}

/// Modes (permission bits) of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whether user nobody (65534, no groups) can read `path`.
fn nobody_reads(path: &std::path::Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_data_dir_is_roots_alone_and_an_open_one_is_closed_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let mut s = Server::start(46);
    s.wait("the server ready", Duration::from_secs(30), || {
        s.log().contains("dash server ready").then_some(())
    });
    // The test's own temporary dir opened up, so only the data dir's modes keep others out.
    chmod(s.dir.path(), 0o755);
    let data = s.data_dir.clone();
    let db = data.join("dash.db");
    assert_eq!(mode(&data), 0o700);
    for f in ["dash.db", "admin.token", "images", "pki"] {
        let m = mode(&data.join(f));
        assert_eq!(m & 0o077, 0, "{f}: {m:o}");
    }
    assert!(!nobody_reads(&db), "user nobody read dash.db");

    // A data dir of an older release: 0755, its state 0644. Closed again at the next start.
    s.kill9();
    chmod(&data, 0o755);
    chmod(&db, 0o644);
    assert!(
        nobody_reads(&db),
        "the check itself: nobody reads an open state"
    );
    s.restart();
    s.wait("the server ready again", Duration::from_secs(30), || {
        (s.log().matches("dash server ready").count() == 2).then_some(())
    });
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert!(
        !nobody_reads(&db),
        "user nobody read dash.db after the restart"
    );
    assert!(s.log().contains("made private"), "the fix is logged");
}

#[test]
fn a_replica_cannot_reach_the_hosts_loopback_but_published_ports_answer_there() {
    let s = Server::start_with_busybox(47);
    s.apply("web.toml", &web(17647, 1, ""));
    let replica = s.wait_running("web", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let netns = format!("--net={}", s.run_dir.join("netns").join(&replica).display());
    let gateway = s.subnet.replace(".0/24", ".1");
    // What a process in the replica with CAP_NET_RAW can do with a raw socket, done here with
    // the replica's routes: packets to 127.0.0.1 leave its eth0 for the host's bridge (which
    // has route_localnet=1, so that published ports answer on the host's 127.0.0.1).
    for step in [
        vec![
            "ip",
            "route",
            "del",
            "local",
            "127.0.0.0/8",
            "dev",
            "lo",
            "table",
            "local",
        ],
        vec![
            "ip",
            "route",
            "del",
            "local",
            "127.0.0.1",
            "dev",
            "lo",
            "table",
            "local",
        ],
        vec!["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
        vec!["sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        vec![
            "ip",
            "route",
            "add",
            "127.0.0.0/8",
            "via",
            &gateway,
            "dev",
            "eth0",
        ],
    ] {
        let out = std::process::Command::new("nsenter")
            .arg(&netns)
            .args(&step)
            .output()
            .unwrap();
        assert!(out.status.success(), "{step:?}: {out:?}");
    }
    // The admin API listens on the host's 127.0.0.1. A SYN to it from the replica must get no
    // SYN-ACK back (not even one the node's masquerade rewrote, which a raw socket would still
    // read: the port is open, and the handshake can be finished by hand). Counted by a probe
    // table in the replica's own namespace while curl sends the SYN.
    let port = s.addr.rsplit_once(':').unwrap().1.to_string();
    let probe = format!(
        "add table ip probe\n\
         add chain ip probe seen {{ type filter hook prerouting priority -300; }}\n\
         add rule ip probe seen tcp sport {port} tcp flags & (syn | ack) == syn | ack counter\n"
    );
    let mut nft = std::process::Command::new("nsenter")
        .arg(&netns)
        .args(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    nft.stdin
        .take()
        .unwrap()
        .write_all(probe.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success());
    let admin = format!("http://{}/healthz", s.addr);
    let out = std::process::Command::new("nsenter")
        .arg(&netns)
        .args(["curl", "-s", "-o", "/dev/null", "-m", "2", &admin])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "the replica reached {admin}");
    let counted = std::process::Command::new("nsenter")
        .arg(&netns)
        .args(["nft", "list", "chain", "ip", "probe", "seen"])
        .output()
        .unwrap();
    let counted = String::from_utf8_lossy(&counted.stdout);
    assert!(
        counted.contains("counter packets 0 bytes 0"),
        "SYN-ACKs from the host's loopback reached the replica: {counted}"
    );
    // The host still reaches the replica's published port on its loopback.
    let (code, body) = http_get("127.0.0.1:17647", "/id").unwrap();
    assert_eq!((code, body.trim()), (200, replica.as_str()));
}
