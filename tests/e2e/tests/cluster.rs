//! Multi-node: a master and three workers, each in its own network namespace.

use std::time::{Duration, Instant};

use dash_e2e::cluster::Cluster;

const WEB: &str = "name = \"cweb\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-v\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
replicas = 6\nstop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n\
[[routes]]\nhost = \"cweb.local\"\nport = 8080\n";

fn spread(c: &Cluster) -> Vec<usize> {
    c.running_per_node("cweb").values().copied().collect()
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
    // A token pinning another CA: the worker refuses the master before it sends anything.
    let other_ca = format!(
        "DASH1-{}-{}",
        "ab".repeat(32),
        c.token.rsplit_once('-').unwrap().1
    );
    let out = c.try_join(3, &other_ca);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not match the pinned fingerprint"),
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
    let out = grpc_post(
        &format!("https://{}:7071/dash.v1.MasterApi/Heartbeat", c.nodes[0].ip),
        &empty,
        None,
    );
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(
        head.contains("grpc-status: 16"),
        "expected unauthenticated: {head}"
    );

    // A certificate from another CA does not even get through the TLS handshake, and
    // worker_api wants a client certificate before anything.
    let (key, crt) = (
        c.dir.path().join("other.key"),
        c.dir.path().join("other.crt"),
    );
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
            "-subj",
            "/CN=w1/O=master",
            "-days",
            "1",
        ])
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let out = grpc_post(
        &format!("https://{}:7071/dash.v1.MasterApi/Heartbeat", c.nodes[0].ip),
        &empty,
        Some((&crt, &key)),
    );
    assert_tls_refusal(&c, 0, &out, "invalid peer certificate");
    let out = grpc_post(
        &format!("https://{}:7072/dash.v1.WorkerApi/ReadLog", c.nodes[1].ip),
        &empty,
        None,
    );
    assert_tls_refusal(&c, 1, &out, "peer sent no certificates");

    // The image exists on the master only; the workers fetch it from there.
    c.import_busybox("bb:1");
    c.apply("web.toml", WEB);
    c.wait(
        "6 replicas spread 2/2/2 over the workers",
        Duration::from_secs(60),
        || (spread(&c) == vec![2, 2, 2]).then_some(()),
    );
    assert!(!c.running_per_node("cweb").contains_key("m"));
    // Three workers joined at the same moment: each has a subnet of its own.
    let mut subnets = dash_e2e::sorted_field(c.json(&["node", "ls"]).as_array().unwrap(), "subnet");
    subnets.dedup();
    assert_eq!(subnets.len(), 4, "{subnets:?}");

    // A replica on one node reaches a replica on another by IP.
    let reps = c.replicas("cweb");
    let on = |node: &str| reps.iter().find(|r| r["node"] == node).unwrap().clone();
    let (a, b) = (on("w1"), on("w2"));
    let pid = dash_e2e::replica_pid(&c.nodes[1].data_dir, a["id"].as_str().unwrap()).to_string();
    // Routes between nodes follow the masters' node list within a couple of seconds.
    c.wait(
        "w1's replica reaches w2's by IP",
        Duration::from_secs(15),
        || {
            let out = std::process::Command::new("nsenter")
                .args([
                    "-t",
                    &pid,
                    "-n",
                    "curl",
                    "-s",
                    "-m",
                    "2",
                    &format!("http://{}:8080/", b["ip"].as_str().unwrap()),
                ])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("hello from dash")
                .then_some(())
        },
    );
    // Not masqueraded between nodes: the replica on w2 saw the replica's own address.
    let a_ip = a["ip"].as_str().unwrap().to_string();
    let b_id = b["id"].as_str().unwrap().to_string();
    c.wait(
        "w2's replica logged the caller's address",
        Duration::from_secs(10),
        || {
            let logs = c.ok(&["logs", "cweb"]);
            logs.lines()
                .any(|l| l.starts_with(&b_id) && l.contains(&format!("{a_ip}]")))
                .then_some(())
        },
    );

    // Every worker runs the proxy, routing to replicas on any node.
    c.wait(
        "w3's proxy serves cweb.local",
        Duration::from_secs(20),
        || {
            let out = std::process::Command::new("nsenter")
                .args([
                    &format!("--net=/run/netns/{}", c.nodes[3].netns),
                    "curl",
                    "-s",
                    "-m",
                    "2",
                    "-H",
                    "Host: cweb.local",
                    "http://127.0.0.1:8080/",
                ])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("hello from dash")
                .then_some(())
        },
    );

    // Every node measures its replicas and reports them (ReportMetrics): dash stats shows
    // the memory and CPU of cweb's replicas wherever they run.
    c.wait(
        "every cweb replica measured by its node",
        Duration::from_secs(20),
        || {
            let stats = c.json(&["stats", "cweb"]);
            let stats = stats.as_array()?;
            let nodes: std::collections::BTreeSet<_> =
                stats.iter().filter_map(|r| r["node"].as_str()).collect();
            (nodes.len() >= 2
                && stats.iter().all(|r| {
                    r["memory_bytes"].as_u64().is_some_and(|m| m > 0)
                        && r["cpu_percent"].as_f64().is_some()
                }))
            .then_some(())
        },
    );

    // dash route ls counts every node's proxy: the requests that entered through w3 show in
    // the sum and in w3's own row (--per-node), reported by w3 every 2 s.
    let w3 = c.nodes[3].name.clone();
    c.wait(
        "w3's proxy counters in dash route ls",
        Duration::from_secs(20),
        || {
            let per_node = c.json(&["route", "ls", "--per-node"]);
            let w3_requests: u64 = per_node
                .as_array()?
                .iter()
                .filter(|r| r["host"] == "cweb.local" && r["node"] == w3.as_str())
                .filter_map(|r| r["requests"].as_u64())
                .sum();
            let summed = c.json(&["route", "ls"]);
            let total = summed
                .as_array()?
                .iter()
                .find(|r| r["host"] == "cweb.local")?["requests"]
                .as_u64()?;
            (w3_requests > 0 && total >= w3_requests).then_some(())
        },
    );
    let table = c.ok(&["route", "ls", "--per-node"]);
    assert!(table.contains("NODE") && table.contains(&w3), "{table}");

    // dash exec on a replica of another node: output, exit status, stdin, a terminal.
    let id = a["id"].as_str().unwrap();
    let out = c.dash(&["exec", id, "--", "cat", "/www/index.html"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from dash"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(0));
    // `dash exec [flag] id -- sh -c script`.
    let sh = |flag: Option<&str>, script: &str| {
        let exec = [
            &["exec"][..],
            flag.as_slice(),
            &[id, "--", "sh", "-c", script],
        ];
        c.dash(&exec.concat())
    };
    let out = sh(None, "echo oops >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );
    let read_line = [
        "exec",
        "-i",
        id,
        "--",
        "sh",
        "-c",
        "read line; echo got-$line; hostname",
    ];
    let out = c.dash_input(&read_line, "ping\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("got-ping") && text.contains(id), "{text}");
    let out = sh(Some("-t"), "test -t 0 && test -t 1 && echo on-a-terminal");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on-a-terminal"),
        "{out:?}"
    );
    let out = sh(None, "test -t 0 || echo no-terminal");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no-terminal"),
        "{out:?}"
    );
    // The terminal is the container's own (its devpts names it) and the command's controlling
    // terminal (tty_nr, the 7th field of /proc/self/stat, is not 0; the shell leads its
    // session), so shells get job control.
    let out = sh(
        Some("-t"),
        "tty; read -r pid comm state ppid pgrp session tty_nr rest < /proc/self/stat; \
         echo tty_nr=$tty_nr leader=$(test $pid = $session && echo yes)",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{out:?}");
    assert!(
        !text.contains("tty_nr=0") && text.contains("leader=yes"),
        "{out:?}"
    );
    // Its size follows the caller's terminal: `script` gives the CLI one of 33 × 111.
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "stty rows 33 cols 111; {} exec -t {id} -- stty size",
                dash_e2e::dash_bin().display()
            ),
            "/dev/null",
        ])
        .envs(c.admin_env())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("33 111"),
        "{out:?}"
    );
    // A command that does not exist: the runtime's words, a failed status.
    let out = c.dash(&["exec", "-t", id, "--", "no-such-command"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");

    // dash logs -f merges the logs of replicas on other nodes and follows them.
    c.apply("ticker.toml",
        "name = \"ticker\"\nimage = \"bb:1\"\ncommand = [\"sh\", \"-c\", \"while true; do echo tick-$(hostname); sleep 0.2; done\"]\n\
         replicas = 2\nstop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n");
    c.wait("ticker running", Duration::from_secs(30), || {
        (c.running_per_node("ticker").values().sum::<usize>() == 2).then_some(())
    });
    let tickers: Vec<String> = c
        .replicas("ticker")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let out = std::process::Command::new("timeout")
        .args(["3"])
        .arg(dash_e2e::dash_bin())
        .args(["logs", "-f", "ticker"])
        .envs(c.admin_env())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for t in &tickers {
        let n = text
            .lines()
            .filter(|l| l.contains(&format!("tick-{t}")))
            .count();
        assert!(n >= 5, "{n} lines of {t} in 3 s of `dash logs -f`:\n{text}");
    }
    c.ok(&["service", "rm", "ticker"]);

    // kill -9 of a worker and its containers: its replicas run on the others.
    c.wait("ticker gone", Duration::from_secs(20), || {
        (c.live_containers() == 6).then_some(())
    });
    let t0 = Instant::now();
    c.nodes[3].kill_node();
    c.wait(
        "w3's replicas running on w1 and w2",
        Duration::from_secs(30),
        || {
            let m = c.running_per_node("cweb");
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
    c.wait(
        "w3's moved replicas gone from the masters' records",
        Duration::from_secs(20),
        || (!c.replicas("cweb").iter().any(|r| r["node"] == "w3")).then_some(()),
    );

    // Partition w2: its replicas move; heal: it stops them, no duplicates.
    let t0 = Instant::now();
    c.nodes[2].set_link(false);
    c.wait(
        "w2's replicas running elsewhere",
        Duration::from_secs(30),
        || {
            let m = c.running_per_node("cweb");
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
    c.finish();
}

fn healthy(c: &Cluster, service: &str) -> usize {
    c.replicas(service)
        .iter()
        .filter(|r| r["state"] == "healthy" && r["desired"] != "remove")
        .count()
}

const HEALTH: &str =
    "[health]\nhttp = \"/\"\nport = 8080\ninterval = \"200ms\"\ntimeout = \"200ms\"\nretries = 2\n";

#[test]
fn global_services_drain_and_automatic_rollback() {
    let mut c = Cluster::start(52, 3);
    c.import_busybox("bb:1");

    // Global: one replica on every node (the master runs replicas too), and on a node that
    // joins later.
    c.apply("gl.toml",
        "name = \"gl\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\nmode = \"global\"\n\
         stop_grace_period = \"1s\"\n");
    c.wait(
        "gl on the master and the 3 workers",
        Duration::from_secs(60),
        || {
            let m = c.running_per_node("gl");
            (m.len() == 4 && m.values().all(|n| *n == 1)).then_some(())
        },
    );
    let w4 = c.join_new_worker();
    c.wait_nodes_ready(5);
    c.wait(
        "gl on the fourth worker too",
        Duration::from_secs(60),
        || {
            let m = c.running_per_node("gl");
            (m.len() == 5 && m.values().all(|n| *n == 1) && m.contains_key(&c.nodes[w4].name))
                .then_some(())
        },
    );

    // Drain w1: each replica's replacement is healthy before it stops; requests through w2's
    // proxy under load are all answered throughout.
    c.apply("dr.toml",
        &format!("name = \"dr\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\nreplicas = 3\n\
         stop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n\
         [[routes]]\nhost = \"dr.local\"\nport = 8080\n{HEALTH}"));
    c.wait("dr healthy", Duration::from_secs(60), || {
        (healthy(&c, "dr") == 3).then_some(())
    });
    let w2 = c.nodes[2].netns.clone();
    wait_routed(&c, &w2, "dr.local");
    let on_w1: Vec<String> = c
        .replicas("dr")
        .iter()
        .filter(|r| r["node"] == "w1")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !on_w1.is_empty(),
        "spread puts one on w1: {:?}",
        c.replicas("dr")
    );
    let load = HttpLoad::until_finished(&w2, "dr.local");
    c.ok(&["node", "drain", "w1"]);
    c.wait("w1 emptied", Duration::from_secs(60), || {
        let r = c.replicas("dr");
        (!r.iter().any(|x| x["node"] == "w1") && healthy(&c, "dr") == 3).then_some(())
    });
    load.finish("the drain");
    assert!(
        !c.running_per_node("gl").contains_key("w1"),
        "a global service leaves a drained node"
    );
    let events = c.events();
    let seq_of = |kind: &str, id: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["replica"] == id)
            .and_then(|e| e["seq"].as_u64())
    };
    let new_ids: Vec<String> = c
        .replicas("dr")
        .iter()
        .filter(|r| !on_w1.contains(&r["id"].as_str().unwrap().to_string()))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for old in &on_w1 {
        let stopped = seq_of("replica_stopping", old).expect("stop event of the drained replica");
        let replacements_healthy = new_ids
            .iter()
            .filter_map(|n| seq_of("replica_healthy", n))
            .filter(|s| *s < stopped)
            .count();
        assert!(
            replacements_healthy >= 1,
            "{old} stopped (event {stopped}) before a replacement was healthy"
        );
    }
    c.ok(&["node", "activate", "w1"]);
    c.wait("gl back on w1", Duration::from_secs(30), || {
        c.running_per_node("gl").contains_key("w1").then_some(())
    });

    // A rolling update to a command that fails its health check rolls back by itself; the
    // service keeps serving throughout.
    let rb = |cmd: &str| {
        format!(
            "name = \"rb\"\nimage = \"bb:1\"\ncommand = {cmd}\nreplicas = 3\nstop_grace_period = \"1s\"\n\
                 [placement]\nconstraints = [\"node.labels.tier == worker\"]\n\
                 [[routes]]\nhost = \"rb.local\"\nport = 8080\n{HEALTH}"
        )
    };
    let good = c.write(
        "rb.toml",
        &rb("[\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]"),
    );
    c.ok(&["apply", "-f", good.to_str().unwrap()]);
    c.wait("rb healthy", Duration::from_secs(60), || {
        (healthy(&c, "rb") == 3).then_some(())
    });
    wait_routed(&c, &w2, "rb.local");
    let bad = c.write(
        "rb2.toml",
        &rb("[\"httpd\", \"-f\", \"-p\", \"9999\", \"-h\", \"/www\"]"),
    );
    let load = HttpLoad::until_finished(&w2, "rb.local");
    c.ok(&["apply", "-f", bad.to_str().unwrap()]);
    c.wait("the update rolled back", Duration::from_secs(60), || {
        c.events()
            .iter()
            .any(|e| e["kind"] == "update_rolled_back" && e["service"] == "rb")
            .then_some(())
    });
    c.wait(
        "rb back to 3 healthy on the old command",
        Duration::from_secs(60),
        || {
            let svc = c.json(&["service", "inspect", "rb"]);
            let reps = c.replicas("rb");
            (healthy(&c, "rb") == 3
                && reps.len() == 3
                && svc["spec"]["command"][3] == "8080"
                && svc["version"] == 3)
                .then_some(())
        },
    );
    load.finish("the failed update and its rollback");
    // The replicas kept by the rollback are current: the status clears (it used to say
    // "updating to version 3: K replicas left" for ever).
    c.wait("rb's update status clears", Duration::from_secs(30), || {
        let svc = c.json(&["service", "inspect", "rb"]);
        (svc["update_status"] == "").then_some(())
    });
    let ls = c.ok(&["service", "ls"]);
    assert!(!ls.contains("updating"), "{ls}");
    // explain: where and why; and for a replica no node can take, which filter rejected whom.
    let e = c.json(&["service", "explain", "dr"]);
    for r in e["replicas"].as_array().unwrap() {
        if r["node"].is_string() {
            assert!(
                r["why"].as_str().unwrap().contains("fewest replicas"),
                "{r}"
            );
        }
    }
    let m = e["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "m")
        .unwrap()
        .clone();
    assert!(
        m["rejected"]
            .as_str()
            .unwrap()
            .contains("placement constraint"),
        "{m}"
    );
    c.apply("gpu.toml",
        "name = \"gpu\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"1000\"]\n[placement]\nconstraints = [\"node.labels.tier == gpu\"]\n");
    let e = c.wait("a pending gpu replica", Duration::from_secs(10), || {
        let e = c.json(&["service", "explain", "gpu"]);
        (e["replicas"].as_array()?.len() == 1).then_some(e)
    });
    let why = e["replicas"][0]["why"].as_str().unwrap();
    assert!(
        why.starts_with("pending") && why.contains("w1: fails a placement constraint"),
        "{why}"
    );
    let table = c.ok(&["service", "explain", "gpu"]);
    assert!(
        table.contains("REJECTED") && table.contains("pending"),
        "{table}"
    );

    // A service without a previous version has nothing to roll back to, and says so.
    let err = c.fails(&["service", "rollback", "gl"]);
    assert!(err.contains("no previous version"), "{err}");
    c.finish();
}

#[test]
fn certificates_rotate_without_a_restart() {
    // The master runs no replicas (--no-worker): everything lands on w1.
    let c = Cluster::start_with(53, 1, &["--cert-validity", "12s", "--no-worker"]);
    c.import_busybox("bb:1");
    c.apply("rot.toml",
        "name = \"rot\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"1000\"]\nstop_grace_period = \"1s\"\n");
    c.wait("rot running on w1", Duration::from_secs(30), || {
        (c.running_per_node("rot").get("w1") == Some(&1)).then_some(())
    });
    let cert =
        |i: usize| std::fs::read_to_string(c.nodes[i].data_dir.join("pki/node.crt")).unwrap();
    let first = cert(1);
    let pid = c.nodes[1].pid();
    // Two renewals of each side (every 8 s, which leaves a slow machine 4 s to renew), then
    // everything still works.
    c.wait(
        "the worker's certificate renewed twice",
        Duration::from_secs(30),
        || (c.nodes[1].log_text().matches("certificate renewed").count() >= 2).then_some(()),
    );
    c.wait(
        "the master's certificate renewed twice",
        Duration::from_secs(30),
        || {
            (c.nodes[0]
                .log_text()
                .matches("master certificate renewed")
                .count()
                >= 2)
                .then_some(())
        },
    );
    assert_ne!(cert(1), first, "node.crt replaced");
    assert_eq!(c.nodes[1].pid(), pid, "no restart");
    c.wait_nodes_ready(2);
    let id = c.replicas("rot")[0]["id"].as_str().unwrap().to_string();
    let out = c.dash(&["exec", &id, "--", "echo", "still-here"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("still-here"),
        "{out:?}"
    );
    c.ok(&["scale", "rot", "2"]);
    c.wait(
        "a second replica on the renewed worker",
        Duration::from_secs(30),
        || (c.running_per_node("rot").get("w1") == Some(&2)).then_some(()),
    );
    c.finish();
}

/// Four load loops of curl inside `netns` against its node's proxy for `secs` seconds: the
/// HTTP status of every request (000: no answer).
fn load_in_netns(netns: &str, host: &str, secs: u32) -> std::thread::JoinHandle<Vec<String>> {
    let load = HttpLoad::start(
        netns,
        host,
        &format!("$(date +%s) -lt {}", unix_now() + u64::from(secs)),
    );
    std::thread::spawn(move || load.join())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits until `host` answers 200 through the proxy in `netns` for a whole second of load.
fn wait_routed(c: &Cluster, netns: &str, host: &str) {
    c.wait(&format!("{host} routed"), Duration::from_secs(20), || {
        let codes = load_in_netns(netns, host, 1).join().unwrap_or_default();
        (!codes.is_empty() && codes.iter().all(|c| c == "200")).then_some(())
    });
}

/// Requests under load: four loops of curl inside a node's netns against its proxy, each
/// request's HTTP status recorded (000: no answer), while `condition` (a shell test) holds.
struct HttpLoad {
    thread: std::thread::JoinHandle<Vec<String>>,
    stop: Option<tempfile::TempPath>,
}

impl HttpLoad {
    fn start(netns: &str, host: &str, condition: &str) -> HttpLoad {
        let script = format!(
            "for i in 1 2 3 4; do ( while [ {condition} ]; do \
               curl -s -o /dev/null -m 3 -w '%{{http_code}}\\n' -H 'Host: {host}' http://127.0.0.1:8080/; \
             done ) & done; wait"
        );
        let netns = netns.to_string();
        let thread = std::thread::spawn(move || {
            // No nsenter output: no codes, which the caller reports.
            std::process::Command::new("nsenter")
                .args([&format!("--net=/run/netns/{netns}"), "sh", "-c", &script])
                .output()
                .map(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        });
        HttpLoad { thread, stop: None }
    }

    /// Load that runs until [`HttpLoad::finish`] (or the load is dropped).
    fn until_finished(netns: &str, host: &str) -> HttpLoad {
        let stop = tempfile::NamedTempFile::new()
            .expect("a stop file")
            .into_temp_path();
        let mut load = HttpLoad::start(netns, host, &format!("-e {}", stop.display()));
        load.stop = Some(stop);
        load
    }

    fn join(self) -> Vec<String> {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }

    /// Stops the load; asserts it ran and that every request was answered 200, naming `what`.
    fn finish(self, what: &str) {
        let codes = self.join();
        let failed: Vec<_> = codes.iter().filter(|c| *c != "200").collect();
        eprintln!("{what}: {} requests, {} failed", codes.len(), failed.len());
        assert!(
            codes.len() > 50,
            "load during {what} ran: {} requests",
            codes.len()
        );
        assert!(
            failed.is_empty(),
            "{} of {} requests failed during {what}: {failed:?}",
            failed.len(),
            codes.len()
        );
    }
}

#[test]
fn replicas_on_other_nodes_leave_every_proxy_before_they_stop() {
    // Replicas that exit the moment SIGTERM comes (sh with a TERM trap as PID 1), spread over
    // two workers; requests enter through w1's proxy, which learns of removals by polling the
    // masters' table. Scaling 4 → 1 under load fails none of them.
    let c = Cluster::start_with(54, 2, &["--no-worker"]);
    c.import_busybox("bb:1");
    c.apply("quick.toml",
        "name = \"quick\"\nimage = \"bb:1\"\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]\n\
         replicas = 4\nstop_grace_period = \"10s\"\n[[routes]]\nhost = \"quick.local\"\nport = 8080\n");
    c.wait(
        "quick 2 + 2 on the workers",
        Duration::from_secs(60),
        || {
            let per = c.running_per_node("quick");
            (per.get("w1") == Some(&2) && per.get("w2") == Some(&2)).then_some(())
        },
    );
    let w1 = c.nodes[1].netns.clone();
    wait_routed(&c, &w1, "quick.local");
    let load = HttpLoad::until_finished(&w1, "quick.local");
    std::thread::sleep(Duration::from_secs(2));
    c.ok(&["scale", "quick", "1"]);
    c.wait("3 replicas gone", Duration::from_secs(30), || {
        (c.replicas("quick").len() == 1).then_some(())
    });
    // The last removal's SIGTERM comes 2 s after the new table: load past it.
    std::thread::sleep(Duration::from_secs(3));
    load.finish("scaling 4 → 1");
    c.finish();
}

/// An empty gRPC call to `url` with curl over HTTP/2 (any server certificate accepted), with a
/// client certificate and key if given; the response head is printed on stdout.
fn grpc_post(
    url: &str,
    body: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> std::process::Output {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sSk", "--http2", "-X", "POST", "-D", "-"])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()));
    if let Some((crt, key)) = client {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    cmd.arg(url).output().expect("curl runs")
}

/// A request the server refused in the TLS handshake, for the reason `why`: curl reached the
/// server (not a refused connection, exit 7, nor a timeout, 28) and got no answer, and the
/// server logged the refused handshake with that reason (rustls' words, e.g. "UnknownIssuer").
fn assert_tls_refusal(c: &Cluster, node: usize, out: &std::process::Output, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        !matches!(code, Some(0 | 7 | 28)),
        "expected a refused TLS handshake ({why}), got curl exit {code:?}: {err}"
    );
    c.wait(
        &format!("{} logs the refused handshake: {why}", c.nodes[node].name),
        Duration::from_secs(5),
        || {
            c.nodes[node]
                .log_text()
                .lines()
                .any(|l| l.contains("tls accept error") && l.contains(why))
                .then_some(())
        },
    );
}
