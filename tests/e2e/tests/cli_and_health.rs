//! The rest of the CLI as a user meets it, and health checks driving replica states.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dash_e2e::Server;
use serde_json::Value;

#[test]
fn dry_run_images_nodes_and_logs_follow() {
    let s = Server::start_with_busybox(21);
    let images = s.json(&["image", "ls"]);
    assert_eq!(images[0]["tags"][0], "bb:1");

    let nodes = s.json(&["node", "ls"]);
    assert_eq!(nodes[0]["id"], "e2e21");
    assert_eq!(nodes[0]["state"], "ready");
    assert!(nodes[0]["capacity"]["memory_bytes"].as_u64().unwrap() > 0);
    // Labels merge in the state: a second change keeps what the first set and it did not name.
    s.ok(&["node", "label", "e2e21", "zone=a", "disk=ssd"]);
    s.ok(&["node", "label", "e2e21", "gpu=1", "disk-"]);
    let labels = &s.json(&["node", "inspect", "e2e21"])["labels"];
    assert_eq!(
        labels,
        &serde_json::json!({"gpu": "1", "zone": "a"}),
        "{labels}"
    );
    // Only a drained node is activated: refused, naming the node's state.
    let err = s.fails(&["node", "activate", "e2e21"]);
    assert!(err.contains("is ready, not drained"), "{err}");

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
    let err = s.fails(&["image", "rm", "bb:1"]);
    assert!(err.contains("used by service talk"), "{err}");

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

    s.remove_last_service("talk", Duration::from_secs(30));
    s.ok(&["image", "rm", "bb:1"]);
    assert_eq!(s.json(&["image", "ls"]), Value::Array(vec![]));
}

#[test]
fn health_checks_drive_healthy_and_unhealthy() {
    let s = Server::start_with_busybox(22);
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

/// The three kinds of probe failure, each driving the replica's state as documented
/// (docs/service-file.md `[health]`): a TCP check on a port that stops listening, an HTTP check
/// answered with a non-2xx/3xx status, and a probe that does not answer within its timeout.
/// A failing check makes the replica `unhealthy` with the reason as its message, and a passing
/// one makes it `healthy` again; neither restarts it.
#[test]
fn tcp_http_status_and_timeout_probes_drive_the_state() {
    let s = Server::start_with_busybox(23);
    let state = |svc: &str| {
        let r = s.replicas(svc);
        assert!(r.len() <= 1, "{r:?}");
        r.first()
            .map(|r| {
                (
                    r["state"].as_str().unwrap_or_default().to_string(),
                    r["message"].as_str().unwrap_or_default().to_string(),
                    r["restarts"].as_u64().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_default()
    };
    let wait_state = |svc: &str, want: &str, message: &str| {
        s.wait(
            &format!("{svc} {want} ({message:?})"),
            Duration::from_secs(20),
            || {
                let st = state(svc);
                (st.0 == want && st.1.contains(message)).then_some(st)
            },
        )
    };

    // TCP: healthy while httpd listens; unhealthy once it is gone (the container lives on: the
    // shell is PID 1); healthy again when it listens again.
    let tcp = s.write(
        "tcp.toml",
        "name = \"tcp\"\nimage = \"bb:1\"\n\
         command = [\"sh\", \"-c\", \"httpd -p 8080 -h /www; exec sleep 600\"]\n\
         [health]\ntcp = true\nport = 8080\ninterval = \"300ms\"\ntimeout = \"300ms\"\nretries = 2\n",
    );
    s.ok(&["apply", "-f", tcp.to_str().unwrap()]);
    let (_, _, _, id) = wait_state("tcp", "healthy", "");
    let out = s.exec_in(&id, &["killall", "httpd"]);
    assert!(out.status.success(), "{out:?}");
    let (_, message, restarts, _) = wait_state("tcp", "unhealthy", "8080");
    assert!(message.contains("tcp"), "{message}");
    assert_eq!(restarts, 0, "an unhealthy replica is not restarted");
    let out = s.exec_in(&id, &["httpd", "-p", "8080", "-h", "/www"]);
    assert!(out.status.success(), "{out:?}");
    wait_state("tcp", "healthy", "");

    // HTTP: a 404 is a failure that names the status; the page appearing fixes it.
    let http = s.write(
        "http.toml",
        "name = \"http\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         [health]\nhttp = \"/ready.html\"\nport = 8080\ninterval = \"300ms\"\ntimeout = \"300ms\"\nretries = 1\n",
    );
    s.ok(&["apply", "-f", http.to_str().unwrap()]);
    let (_, _, _, id) = wait_state("http", "unhealthy", "status 404");
    let out = s.exec_in(&id, &["touch", "/www/ready.html"]);
    assert!(out.status.success(), "{out:?}");
    wait_state("http", "healthy", "");

    // Timeout: a probe that hangs past its timeout fails with "timed out"; before the file
    // exists the probe sleeps 10 s against a 300 ms timeout.
    let slow = s.write(
        "slow.toml",
        "name = \"slow\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"600\"]\n\
         [health]\nexec = [\"sh\", \"-c\", \"test -e /tmp/fast || sleep 10\"]\n\
         interval = \"500ms\"\ntimeout = \"300ms\"\nretries = 1\n",
    );
    s.ok(&["apply", "-f", slow.to_str().unwrap()]);
    let (_, _, restarts, id) = wait_state("slow", "unhealthy", "timed out");
    assert_eq!(restarts, 0);
    let out = s.exec_in(&id, &["touch", "/tmp/fast"]);
    assert!(out.status.success(), "{out:?}");
    wait_state("slow", "healthy", "");
}

/// A removed replica's log is kept: after an update replaced it, `dash logs --previous
/// SERVICE` shows it, `dash logs REPLICA` reads it by id, and the live logs show only the new
/// replica. It stays readable after the service itself is removed.
#[test]
fn logs_of_removed_replicas_stay_readable() {
    let s = Server::start_with_busybox(24);
    let talk = |version: &str| {
        format!(
            "name = \"talk\"\nimage = \"bb:1\"\n\
             command = [\"sh\", \"-c\", \"echo said-$HOSTNAME-{version}; exec sleep 600\"]\n\
             stop_grace_period = \"100ms\"\n[env]\nV = \"{version}\"\n"
        )
    };
    s.apply("talk.toml", &talk("v1"));
    let old = s.wait_running("talk", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait("the first replica's line", Duration::from_secs(10), || {
        s.ok(&["logs", "talk"]).contains("-v1").then_some(())
    });
    s.apply("talk.toml", &talk("v2"));
    let new = s.wait("the replacement", Duration::from_secs(30), || {
        let r = s.replicas("talk");
        (r.len() == 1 && r[0]["version"] == 2 && r[0]["state"] == "running")
            .then(|| r[0]["id"].as_str().unwrap().to_string())
    });
    assert_ne!(new, old);
    s.wait("the new replica's line", Duration::from_secs(10), || {
        s.ok(&["logs", "talk"]).contains("-v2").then_some(())
    });
    let live = s.ok(&["logs", "talk"]);
    assert!(
        !live.contains("-v1"),
        "live logs show the removed replica: {live}"
    );
    let previous = s.ok(&["logs", "--previous", "talk"]);
    assert!(
        previous.contains(&format!("said-{old}-v1")) && previous.contains(&old),
        "{previous}"
    );
    assert!(!previous.contains("-v2"), "{previous}");
    let by_id = s.ok(&["logs", &old]);
    assert!(by_id.contains(&format!("said-{old}-v1")), "{by_id}");
    let live_by_id = s.ok(&["logs", &new]);
    assert!(live_by_id.contains("-v2"), "{live_by_id}");
    // Unknown names are a clear error.
    let err = s.fails(&["logs", "nosuch"]);
    assert!(err.contains("no service or replica"), "{err}");
    // Still there after the service is gone.
    s.remove_last_service("talk", Duration::from_secs(30));
    let previous = s.ok(&["logs", "--previous", "talk"]);
    assert!(
        previous.contains("-v1") && previous.contains("-v2"),
        "{previous}"
    );
}
