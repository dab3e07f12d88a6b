//! Multi-node: a master and three workers, each in its own network namespace.

use std::time::{Duration, Instant};

use dash_e2e::cluster::Cluster;

const WEB: &str = "name = \"web\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
replicas = 6\nstop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n";

fn spread(c: &Cluster) -> Vec<usize> {
    c.running_per_node("web").values().copied().collect()
}

#[test]
fn cluster_joins_spreads_reaches_across_nodes_and_heals() {
    let mut c = Cluster::start(51, 3);

    // Bad tokens are refused, each with its reason.
    let bad_secret = {
        let (head, _) = c.token.rsplit_once('.').unwrap();
        format!("{head}.{}", "0".repeat(32))
    };
    let out = c.try_join(3, &bad_secret);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("wrong secret"),
        "{err}"
    );
    let short = c.json(&["token", "create", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    let out = c.try_join(3, short["token"].as_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("expired"), "{err}");
    let revoked = c.json(&["token", "create"]);
    c.ok(&["token", "revoke", revoked["info"]["id"].as_str().unwrap()]);
    let out = c.try_join(3, revoked["token"].as_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("revoked"), "{err}");
    let ls = c.ok(&["token", "ls"]);
    assert!(ls.contains("revoked") && ls.contains("expired"), "{ls}");

    // Without a client certificate, master_api refuses every call but Join.
    let empty = c.write("empty.grpc", "\0\0\0\0\0");
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            &format!("@{}", empty.display()),
            "-D",
            "-",
            &format!("https://{}:7071/dash.v1.MasterApi/Heartbeat", c.nodes[0].ip),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(
        head.contains("grpc-status: 16"),
        "expected unauthenticated: {head}"
    );

    // The image exists on the master only; the workers fetch it from there.
    c.import_busybox("bb:1");
    let f = c.write("web.toml", WEB);
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    c.wait(
        "6 replicas spread 2/2/2 over the workers",
        Duration::from_secs(60),
        || (spread(&c) == vec![2, 2, 2]).then_some(()),
    );
    assert!(!c.running_per_node("web").contains_key("m"));

    // A replica on one node reaches a replica on another by IP.
    let reps = c.replicas("web");
    let on = |node: &str| reps.iter().find(|r| r["node"] == node).unwrap().clone();
    let (a, b) = (on("w1"), on("w2"));
    let pid = std::fs::read_to_string(
        c.nodes[1]
            .data_dir
            .join("containers")
            .join(a["id"].as_str().unwrap())
            .join("pid"),
    )
    .unwrap();
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            pid.trim(),
            "-n",
            "curl",
            "-s",
            "-m",
            "5",
            &format!("http://{}:8080/", b["ip"].as_str().unwrap()),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from dash"),
        "{out:?}"
    );

    // kill -9 of a worker and its containers: its replicas run on the others.
    let before = c.live_containers();
    assert_eq!(before, 6);
    let t0 = Instant::now();
    c.nodes[3].kill_node();
    c.wait(
        "w3's replicas running on w1 and w2",
        Duration::from_secs(30),
        || {
            let m = c.running_per_node("web");
            (m.get("w1").copied().unwrap_or(0) + m.get("w2").copied().unwrap_or(0) == 6)
                .then_some(())
        },
    );
    println!(
        "node death → replicas running elsewhere: {} ms",
        t0.elapsed().as_millis()
    );
    // It comes back: what it ran was moved, so it stops it; never two copies.
    c.nodes[3].restart();
    c.wait_nodes_ready(4);
    c.wait("w3 holds nothing", Duration::from_secs(20), || {
        (c.nodes[3].container_pids().is_empty()).then_some(())
    });
    assert_eq!(c.live_containers(), 6);
    assert!(
        !c.replicas("web").iter().any(|r| r["node"] == "w3"),
        "{:?}",
        c.replicas("web")
    );

    // Partition w2: its replicas move; heal: it stops them, no duplicates.
    let t0 = Instant::now();
    c.nodes[2].set_link(false);
    c.wait(
        "w2's replicas running elsewhere",
        Duration::from_secs(30),
        || {
            let m = c.running_per_node("web");
            (!m.contains_key("w2") && m.values().sum::<usize>() == 6).then_some(())
        },
    );
    println!(
        "partition → replicas running elsewhere: {} ms",
        t0.elapsed().as_millis()
    );
    c.nodes[2].set_link(true);
    c.wait_nodes_ready(4);
    c.wait(
        "w2 stopped the moved replicas",
        Duration::from_secs(20),
        || (c.nodes[2].container_pids().is_empty() && c.live_containers() == 6).then_some(()),
    );

    // A removed node's certificate is refused: it cannot come back without a new token.
    c.nodes[3].kill_node();
    c.wait("w3 down", Duration::from_secs(20), || {
        let n = c.json(&["node", "inspect", "w3"]);
        (n["state"] == "down").then_some(())
    });
    c.ok(&["node", "rm", "w3"]);
    c.nodes[3].restart();
    c.wait("w3 refused", Duration::from_secs(20), || {
        c.nodes[3]
            .log_text()
            .contains("not part of this cluster")
            .then_some(())
    });
}
