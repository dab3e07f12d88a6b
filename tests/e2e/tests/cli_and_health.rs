//! The rest of the CLI as a user meets it, and health checks driving replica states.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dash_e2e::Server;
use serde_json::Value;

#[test]
fn dry_run_images_nodes_and_logs_follow() {
    let s = Server::start(21);
    s.import_busybox("bb:1");
    let images = s.json(&["image", "ls"]);
    assert_eq!(images[0]["tags"][0], "bb:1");

    let nodes = s.json(&["node", "ls"]);
    assert_eq!(nodes[0]["id"], "e2e21");
    assert_eq!(nodes[0]["state"], "ready");
    assert!(nodes[0]["capacity"]["memory_bytes"].as_u64().unwrap() > 0);

    let f = s.write(
        "talk.toml",
        "name = \"talk\"\nimage = \"bb:1\"\ncommand = \"i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done\"\nreplicas = 2\n",
    );
    let plan = s.ok(&["apply", "--dry-run", "-f", f.to_str().unwrap()]);
    assert!(
        plan.contains("would create") && plan.contains("create 2 replicas"),
        "{plan}"
    );
    assert_eq!(
        s.json(&["service", "ls"]),
        Value::Array(vec![]),
        "dry run changed nothing"
    );

    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    let reps = s.wait_running("talk", 2);

    // An image in use cannot be removed.
    let out = s.dash(&["image", "rm", "bb:1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("used by service talk"),
        "{out:?}"
    );

    // logs -f: lines of both replicas keep coming, each prefixed by its replica.
    let mut child = Command::new(dash_e2e::dash_bin())
        .args(["logs", "-f", "--tail", "1", "talk"])
        .env("DASH_ADDR", &s.addr)
        .env("DASH_DATA_DIR", &s.data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..40 {
        let line = lines.next().unwrap().unwrap();
        let (replica, rest) = line.split_once(" | ").unwrap();
        assert!(rest.contains("stdout tick"), "{line}");
        seen.insert(replica.to_string());
        if seen.len() == 2 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let expected: std::collections::HashSet<String> = reps
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expected);

    s.ok(&["service", "rm", "talk"]);
    s.wait("talk removed", Duration::from_secs(30), || {
        s.json(&["service", "ls"])
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    s.ok(&["image", "rm", "bb:1"]);
    assert_eq!(s.json(&["image", "ls"]), Value::Array(vec![]));
}

#[test]
fn health_checks_drive_healthy_and_unhealthy() {
    let s = Server::start(22);
    s.import_busybox("bb:1");
    let ok = s.write(
        "ok.toml",
        "name = \"ok\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         [health]\nhttp = \"/\"\nport = 8080\ninterval = \"300ms\"\ntimeout = \"200ms\"\n",
    );
    s.ok(&["apply", "-f", ok.to_str().unwrap()]);
    s.wait("ok healthy", Duration::from_secs(20), || {
        let r = s.replicas("ok");
        (r.len() == 1 && r[0]["state"] == "healthy").then_some(())
    });
    let svc: Value = serde_json::from_str(&s.ok(&["service", "inspect", "ok"])).unwrap();
    assert_eq!(svc["ready"], 1);

    // An exec check that fails: unhealthy after `retries` failures; a tcp check on a closed port too.
    let bad = s.write(
        "bad.toml",
        "name = \"bad\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"600\"]\n\
         [health]\nexec = [\"cat\", \"/tmp/ready\"]\ninterval = \"300ms\"\ntimeout = \"300ms\"\nretries = 2\n",
    );
    s.ok(&["apply", "-f", bad.to_str().unwrap()]);
    let r = s.wait("bad unhealthy", Duration::from_secs(20), || {
        let r = s.replicas("bad");
        (r.len() == 1 && r[0]["state"] == "unhealthy").then_some(r)
    });
    // Make it pass: healthy again.
    let id = r[0]["id"].as_str().unwrap();
    let out = s.exec_in(id, &["touch", "/tmp/ready"]);
    assert!(out.status.success(), "{out:?}");
    s.wait("bad healthy after the fix", Duration::from_secs(20), || {
        let r = s.replicas("bad");
        (r.len() == 1 && r[0]["state"] == "healthy").then_some(())
    });
}
