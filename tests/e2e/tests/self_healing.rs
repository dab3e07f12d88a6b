//! Containers die and come back; the daemon dies and its containers do not.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::process::Command;
use std::time::Duration;

use dash_e2e::{Server, http_get, sorted_field};
use serde_json::Value;

/// `after` (`dash ps -o json` rows) are the replicas of `before`, none of them restarted.
fn assert_the_same_replicas_not_restarted(before: &[Value], after: &[Value]) {
    assert_eq!(
        sorted_field(before, "id"),
        sorted_field(after, "id"),
        "the same replicas"
    );
    assert!(
        after.iter().all(|r| r["restarts"] == 0),
        "not restarted: {after:?}"
    );
}

/// Applies service `name`: `sleep 600` in `bb:1`, then the lines `extra`.
fn apply_sleeper(s: &Server, name: &str, extra: &str) {
    s.apply(
        &format!("{name}.toml"),
        &format!("name = \"{name}\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"600\"]\n{extra}"),
    );
}

#[test]
fn killed_replica_restarts_and_the_event_shows() {
    let s = Server::start_with_busybox(11);
    apply_sleeper(&s, "sleepy", "");
    let r = s.wait_running("sleepy", 1);
    let id = r[0]["id"].as_str().unwrap().to_string();

    // Follow `dash events` while the replica is killed; with --past the stream starts with
    // the kept events, so the restart shows even if it happens before the subscription.
    let events_out = s.dir.path().join("events.ndjson");
    let mut events = Command::new(dash_e2e::dash_bin())
        .args(["events", "--past", "-o", "json"])
        .env("DASH_ADDR", &s.addr)
        .env("DASH_DATA_DIR", &s.data_dir)
        .stdout(std::fs::File::create(&events_out).unwrap())
        .spawn()
        .unwrap();

    dash_e2e::sigkill(s.replica_pid(&id));
    let after = s.wait(
        "the replica running again with restarts=1",
        Duration::from_secs(10),
        || {
            let r = s.replicas("sleepy");
            (r.len() == 1 && r[0]["restarts"] == 1 && r[0]["state"] == "running").then_some(r)
        },
    );
    assert_eq!(after[0]["id"], id.as_str(), "restarted in place, same id");
    s.wait("the restart event", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&events_out).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| e["kind"] == "replica_restarting" && e["replica"] == id.as_str())
            .then_some(())
    });
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn failing_command_backs_off_under_on_failure() {
    let s = Server::start_with_busybox(12);
    s.apply(
        "crash.toml",
        "name = \"crash\"\nimage = \"bb:1\"\ncommand = [\"sh\", \"-c\", \"echo boom; exit 1\"]\n\
         [restart]\npolicy = \"on-failure\"\nbackoff = \"300ms\"\nmax_backoff = \"5s\"\n",
    );
    // Restarts climb, and the back-off shows in `dash ps`.
    let r = s.wait("restarts with back-off", Duration::from_secs(30), || {
        let r = s.replicas("crash");
        (r.len() == 1
            && r[0]["restarts"].as_u64() >= Some(3)
            && r[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("restarting in")))
        .then_some(r)
    });
    assert_eq!(r[0]["exit_code"], 1);
    let table = s.ok(&["ps", "crash"]);
    assert!(table.contains("restarting in"), "{table}");
    let logs = s.ok(&["logs", "crash"]);
    assert!(
        logs.lines().filter(|l| l.contains("boom")).count() >= 2,
        "{logs}"
    );
    assert!(
        logs.lines()
            .all(|l| l.starts_with(r[0]["id"].as_str().unwrap())),
        "prefixed by replica: {logs}"
    );
}

#[test]
fn replicas_outlive_a_killed_daemon_and_are_readopted() {
    let mut s = Server::start_with_busybox(13);
    s.apply("web.toml",
        "name = \"web\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\nreplicas = 3\n");
    let before = s.wait_running("web", 3);
    let ips: Vec<String> = before
        .iter()
        .map(|r| r["ip"].as_str().unwrap().to_string())
        .collect();

    s.kill9();
    // Still serving with the daemon gone.
    for ip in &ips {
        let (code, body) = http_get(&format!("{ip}:8080"), "/").unwrap();
        assert_eq!(code, 200, "{ip}");
        assert!(body.contains("hello from dash"));
    }
    s.restart();
    let after = s.wait_running("web", 3);
    assert_the_same_replicas_not_restarted(&before, &after);
}

/// A data dir of the version before node.db (the node's records in dash.db) starts under this
/// one with its replicas adopted: the same ids and processes, no restart.
#[test]
fn a_data_dir_of_the_previous_layout_is_upgraded_in_place() {
    dash_e2e::require(
        "sqlite3 (apt install sqlite3)",
        Command::new("sqlite3").arg("-version").output().is_ok(),
    );
    let mut s = Server::start_with_busybox(17);
    apply_sleeper(&s, "up", "replicas = 2\n");
    let before = s.wait_running("up", 2);
    let pids: Vec<i32> = before
        .iter()
        .map(|r| s.replica_pid(r["id"].as_str().unwrap()))
        .collect();
    s.kill9();
    // The previous layout: the node's records in dash.db, no node.db.
    let data = s.data_dir.clone();
    let sql = format!(
        "ATTACH '{}' AS n; DELETE FROM local_replicas; DELETE FROM ip_allocations; \
         INSERT INTO local_replicas SELECT * FROM n.local_replicas; \
         INSERT INTO ip_allocations SELECT * FROM n.ip_allocations;",
        data.join("node.db").display()
    );
    let out = Command::new("sqlite3")
        .arg(data.join("dash.db"))
        .arg(&sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for f in ["node.db", "node.db-wal", "node.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    s.restart();
    let after = s.wait_running("up", 2);
    assert_the_same_replicas_not_restarted(&before, &after);
    let pids_after: Vec<i32> = before
        .iter()
        .map(|r| s.replica_pid(r["id"].as_str().unwrap()))
        .collect();
    assert_eq!(pids, pids_after, "the same processes");
    assert!(
        data.join("node.db").exists(),
        "the records moved to node.db"
    );
}

#[test]
fn hostile_archives_are_rejected_and_leave_nothing() {
    let s = Server::start(14);
    let dir = s.dir.path();
    // Path traversal in a tar built by hand (tar(1) refuses to write it).
    let evil = dir.join("evil.tar");
    std::fs::write(&evil, tar_with_entry("../../escaped", b"x")).unwrap();
    let empty = dir.join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    for (file, rootfs) in [
        (&evil, true),
        (&evil, false),
        (&empty, false),
        (&empty, true),
    ] {
        let mut args = vec!["image", "import"];
        if rootfs {
            args.push("--rootfs");
        }
        args.push(file.to_str().unwrap());
        if rootfs {
            args.push("evil:1");
        }
        let out = s.dash(&args);
        assert!(!out.status.success(), "accepted {args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty());
    }
    assert_eq!(s.json(&["image", "ls"]), Value::Array(vec![]));
    assert!(!dir.join("escaped").exists() && !s.data_dir.join("escaped").exists());
    let tmp = s.data_dir.join("images/tmp");
    assert!(
        std::fs::read_dir(&tmp).map_or(true, |mut d| d.next().is_none()),
        "no partial import left"
    );
}

/// A one-entry ustar archive whose name is written raw (no checks).
fn tar_with_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn replica_that_exited_while_the_daemon_was_down_follows_its_restart_policy() {
    let mut s = Server::start_with_busybox(15);
    apply_sleeper(&s, "two", "replicas = 2\n");
    let before = s.wait_running("two", 2);
    let victim = before[0]["id"].as_str().unwrap().to_string();
    let other = before[1]["id"].as_str().unwrap().to_string();

    s.kill9();
    dash_e2e::sigkill(s.replica_pid(&victim));
    s.restart();

    let after = s.wait(
        "the victim restarted, the other re-adopted",
        Duration::from_secs(20),
        || {
            let r = s.replicas("two");
            let get = |id: &str| r.iter().find(|x| x["id"] == id).cloned();
            match (get(&victim), get(&other)) {
                (Some(v), Some(o))
                    if v["state"] == "running" && v["restarts"] == 1 && o["state"] == "running" =>
                {
                    Some((v, o))
                }
                _ => None,
            }
        },
    );
    assert_eq!(after.1["restarts"], 0);
}

/// The back-off starts over once a replica has run 10 s (docs/service-file.md "Restarts and
/// back-off"): with a 12 s back-off, a second quick crash waits 12 s (and a third would wait
/// 24 s), but a crash after a run of more than 10 s is restarted at once.
#[test]
fn the_back_off_starts_over_after_a_long_run() {
    let s = Server::start_with_busybox(16);
    apply_sleeper(
        &s,
        "reset",
        "[restart]\nbackoff = \"12s\"\nmax_backoff = \"60s\"\n",
    );
    let id = s.wait_running("reset", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kill = |restarts_before: u64| {
        dash_e2e::sigkill(s.replica_pid(&id));
        s.wait("the kill seen", Duration::from_secs(10), || {
            let r = s.replicas("reset");
            (r[0]["restarts"].as_u64() > Some(restarts_before)
                || r[0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("restarting in")))
            .then_some(r)
        })
    };
    let running_again = |restarts: u64| {
        s.wait(
            &format!("running again with restarts={restarts}"),
            Duration::from_secs(10),
            || {
                let r = s.replicas("reset");
                (r[0]["restarts"] == restarts && r[0]["state"] == "running").then_some(())
            },
        )
    };
    // First crash: restarted at once (the back-off's first step is always immediate).
    kill(0);
    running_again(1);
    // A quick second crash: the back-off applies.
    let r = kill(1);
    assert!(
        r[0]["message"]
            .as_str()
            .unwrap()
            .contains("restarting in 12s"),
        "{r:?}"
    );
    s.wait("the delayed restart", Duration::from_secs(30), || {
        let r = s.replicas("reset");
        (r[0]["restarts"] == 2 && r[0]["state"] == "running").then_some(())
    });
    // It runs past the reset period, then crashes: restarted at once, no "restarting in".
    std::thread::sleep(Duration::from_secs(11));
    let r = kill(2);
    assert!(
        !r[0]["message"].as_str().unwrap().contains("restarting in"),
        "the back-off was not reset: {r:?}"
    );
    running_again(3);
}
