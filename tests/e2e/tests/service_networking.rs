//! Service networking across nodes: a replica on one worker reaches a service whose replicas
//! run on another through its name and virtual IP (every node's nftables leads the virtual
//! IP to the ready replicas, wherever they run), sees `tasks.<service>` in its node's DNS,
//! and cannot reach a service it shares no network with, by virtual IP or by replica address.
//! Real processes, each node in its own network namespace, real containers.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use dash_e2e::cluster::Cluster;
use dash_e2e::sorted_field;

fn running(c: &Cluster, service: &str, n: usize) -> Vec<serde_json::Value> {
    c.wait(
        &format!("{n} {service} running"),
        Duration::from_secs(60),
        || {
            let r = c.replicas(service);
            (r.len() == n && r.iter().all(|r| r["state"] == "running")).then_some(r)
        },
    )
}

#[test]
fn a_replica_reaches_a_service_on_another_node_by_name_and_only_across_shared_networks() {
    let c = Cluster::start(66, 2);
    c.import_busybox("busybox:net");
    c.apply(
        "api.toml",
        "name = \"api\"\nimage = \"busybox:net\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         replicas = 2\nnetworks = [\"backend\"]\nstop_grace_period = \"1s\"\n[[ports]]\ncontainer = 8080\n\
         [placement]\nconstraints = [\"node.name == w1\"]\n",
    );
    for (name, networks) in [
        ("web", "[\"backend\", \"frontend\"]"),
        ("ui", "[\"frontend\"]"),
    ] {
        c.apply(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nimage = \"busybox:net\"\ncommand = [\"sleep\", \"100000\"]\n\
                 networks = {networks}\nstop_grace_period = \"1s\"\n\
                 [placement]\nconstraints = [\"node.name == w2\"]\n"
            ),
        );
    }
    let api = running(&c, "api", 2);
    let web = running(&c, "web", 1)[0]["id"].as_str().unwrap().to_string();
    let ui = running(&c, "ui", 1)[0]["id"].as_str().unwrap().to_string();
    let api_ips = sorted_field(&api, "ip");
    let vip = c.json(&["service", "inspect", "api"])["vip"]
        .as_str()
        .unwrap()
        .to_string();
    let exec = |id: &str, args: &[&str]| {
        let mut all = vec!["exec", id, "--"];
        all.extend_from_slice(args);
        c.dash(&all)
    };
    let fetch = |id: &str, url: &str| exec(id, &["timeout", "3", "wget", "-q", "-O-", url]);
    // `n` requests from web to api by name, 50 ms apart: "failed=<how many failed>".
    let request_loop = |n: u32| {
        let script = format!(
            "i=0; f=0; while [ $i -lt {n} ]; do \
             timeout 3 wget -q -O /dev/null http://api:8080/ || f=$((f+1)); \
             i=$((i+1)); sleep 0.05; done; echo failed=$f"
        );
        let out = exec(&web, &["sh", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    // w2's DNS follows the masters (a long poll): tasks.api lists both replicas on w1.
    c.wait("tasks.api in w2's DNS", Duration::from_secs(10), || {
        let out = exec(&web, &["nslookup", "tasks.api"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        api_ips
            .iter()
            .all(|ip| text.contains(ip.as_str()))
            .then_some(())
    });
    // By name, through the virtual IP on w2, to a replica on w1.
    let out = fetch(&web, "http://api:8080/");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("hello"),
        "web → http://api:8080/: {out:?}"
    );
    assert!(
        fetch(&web, &format!("http://{}:8080/", api_ips[0]))
            .status
            .success()
    );
    // Across nodes the callee sees the caller's own address (routed, not masqueraded).
    let web_ip = c.replicas("web")[0]["ip"].as_str().unwrap().to_string();
    let seen = fetch(&web, "http://api:8080/cgi-bin/ip");
    // busybox httpd writes an IPv4 caller as `[::ffff:a.b.c.d]`.
    let text = String::from_utf8_lossy(&seen.stdout);
    let text = text
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']');
    assert_eq!(text, web_ip, "{seen:?}");

    // A rolling update of api under a loop of requests from w2 through its name: w2 learns
    // of a leaving replica within a second, and the replica keeps serving that long before
    // its SIGTERM, so no request fails.
    let failures = std::thread::scope(|scope| {
        let looping = scope.spawn(|| request_loop(150));
        std::thread::sleep(Duration::from_millis(500));
        c.apply(
            "api.toml",
            "name = \"api\"\nimage = \"busybox:net\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
             replicas = 2\nnetworks = [\"backend\"]\nstop_grace_period = \"1s\"\n[env]\nV = \"2\"\n\
             [[ports]]\ncontainer = 8080\n[placement]\nconstraints = [\"node.name == w1\"]\n",
        );
        looping.join().unwrap()
    });
    assert!(failures.contains("failed=0"), "{failures}");
    c.wait("api updated", Duration::from_secs(60), || {
        dash_e2e::all_running_at(&c.replicas("api"), 2, 2).then_some(())
    });

    // Scaled to 5: w2's DNS lists exactly the five ready replicas on w1 within a second of
    // their running, and the virtual IP leads to them.
    c.ok(&["scale", "api", "5"]);
    let five = running(&c, "api", 5);
    let want = sorted_field(&five, "ip");
    c.wait("tasks.api lists the 5", Duration::from_secs(1), || {
        let out = exec(&web, &["nslookup", "tasks.api"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut got: Vec<String> = text
            .lines()
            .skip_while(|l| !l.contains("tasks.api"))
            .filter_map(|l| l.strip_prefix("Address: ").map(|a| a.trim().to_string()))
            .collect();
        got.sort();
        (got == want).then_some(())
    });
    assert!(fetch(&web, "http://api:8080/").status.success());
    c.ok(&["scale", "api", "2"]);
    let api = running(&c, "api", 2);

    // kill -9 of an api replica under a loop of requests from w2: its node sees the exit at
    // once (the monitor's pidfd), the masters drop it from the endpoints, and w2's long poll
    // takes it out of the map; at most the request in flight to it fails (one at a time
    // here), the next ones go to the other replica.
    let victim = &api[0];
    let w1 = c.nodes.iter().find(|n| n.name == "w1").unwrap();
    let pid = dash_e2e::replica_pid(&w1.data_dir, victim["id"].as_str().unwrap());
    let failures = std::thread::scope(|scope| {
        let looping = scope.spawn(|| request_loop(100));
        std::thread::sleep(Duration::from_millis(1500));
        dash_e2e::sigkill(pid);
        looping.join().unwrap()
    });
    eprintln!("kill -9 under a request loop: {failures}");
    let failed: u32 = failures
        .trim()
        .strip_prefix("failed=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{failures}"));
    assert!(failed <= 1, "{failures}");
    let api = running(&c, "api", 2);
    let api_ips = sorted_field(&api, "ip");

    // ui shares no network with api: neither its virtual IP nor a replica's address answers.
    for url in [
        format!("http://{vip}:8080/"),
        format!("http://{}:8080/", api_ips[0]),
    ] {
        assert!(
            !fetch(&ui, &url).status.success(),
            "ui reached {url} across networks"
        );
    }
    c.finish();
}
