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
    let s = Server::start(1);
    s.import_busybox("bb:1");
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

    s.ok(&["service", "rm", "web"]);
    s.wait("web removed", Duration::from_secs(30), || {
        let out = s.json(&["service", "ls"]);
        out.as_array().unwrap().is_empty().then_some(())
    });
    // The kernel frees a veth shortly after its namespace is unpinned: poll, then insist.
    let mut left = s.leftovers("web-");
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = s.leftovers("web-");
    }
    assert!(left.is_empty(), "left behind: {left:#?}");
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
    let out = s.dash(&["scale", "nope", "4000000000"]);
    assert!(!out.status.success());
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
            "name = \"web\"\nimage = \"bb:1\"\nreplicas = 100000\n",
            "replicas = 100000",
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
    let out = s.dash(&["apply", "-f", file("c", true).to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10.201.45.0/30") && err.contains("--service-cidr"),
        "{err}"
    );
    let names: Vec<String> = s
        .json(&["service", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["spec"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names, ["a", "b"], "nothing of c was kept");
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
    let s = Server::start(5);
    s.import_busybox("bb:1");
    s.apply(
        "many.toml",
        "name = \"many\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"600\"]\nreplicas = 200\n\
         stop_grace_period = \"200ms\"\n",
    );
    s.wait("200 replicas running", Duration::from_secs(240), || {
        let running = s
            .replicas("many")
            .iter()
            .filter(|r| r["state"] == "running")
            .count();
        (running == 200).then_some(())
    });
    s.ok(&["service", "rm", "many"]);
    s.wait("many removed", Duration::from_secs(240), || {
        s.json(&["service", "ls"])
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    // The kernel frees veths shortly after their namespaces are unpinned: poll, then insist.
    let mut left = s.leftovers("many-");
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = s.leftovers("many-");
    }
    assert!(left.is_empty(), "left behind: {left:#?}");
}
