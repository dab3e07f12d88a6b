//! Highly available masters, end to end: three masters (each its own network namespace, real
//! Raft over mutual TLS) and two workers running real containers.
//!
//! A writer applies a stream of distinct services through every master's address and logs
//! each one acknowledged; the leader is killed (-9) at a random moment, ten times; writes go on
//! through the survivors; afterwards every acknowledged write is in the state of every master,
//! and the replicas that ran before never restarted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dash_e2e::cluster::Cluster;
use serde_json::Value;

const ROUNDS: usize = 10;

fn service_names(c: &Cluster, i: usize) -> Option<Vec<String>> {
    let out = c.dash_at(i, &["-o", "json", "service", "ls"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter_map(|s| s["spec"]["name"].as_str().map(String::from))
            .collect(),
    )
}

#[test]
fn writes_survive_ten_leader_kills_and_no_replica_restarts() {
    let mut c = Cluster::start_ha(55, 3, 2);
    c.import_busybox("busybox:ha");
    c.apply(
        "keep.toml",
        "name = \"keep\"\nimage = \"busybox:ha\"\ncommand = [\"sleep\", \"100000\"]\nreplicas = 2\n",
    );
    let before = c.wait("keep's 2 replicas running", Duration::from_secs(30), || {
        let r = c.replicas("keep");
        (r.len() == 2 && r.iter().all(|x| x["state"] == "running")).then_some(r)
    });
    let ids = |r: &[Value]| dash_e2e::sorted_field(r, "id");

    // The writer: a new service per write (no replicas: this is about the log), through every
    // master's address; the acknowledged ones are logged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let admin = c.admin_env();
        let file = c.dir.path().join("w.toml");
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let name = format!("w{n}");
                std::fs::write(
                    &file,
                    format!("name = \"{name}\"\nimage = \"busybox:ha\"\nreplicas = 0\n"),
                )
                .unwrap();
                let out = std::process::Command::new(dash_e2e::dash_bin())
                    .args(["apply", "-f", file.to_str().unwrap()])
                    .envs(admin.clone())
                    .output()
                    .unwrap();
                if out.status.success() {
                    acked.lock().unwrap().push(name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    for round in 0..ROUNDS {
        let leader = c
            .wait("a leader", Duration::from_secs(15), || c.leader())
            .to_owned();
        // A random moment in the stream.
        std::thread::sleep(Duration::from_millis(200 + (rand_u64(round as u64) % 800)));
        let acked_before = acked.lock().unwrap().len();
        c.nodes[leader].kill_node();
        let killed_at = Instant::now();
        let new_leader = c.wait("a new leader", Duration::from_secs(15), || {
            c.leader().filter(|l| *l != leader)
        });
        c.wait(
            "writes acknowledged after the kill",
            Duration::from_secs(15),
            || (acked.lock().unwrap().len() > acked_before + 1).then_some(()),
        );
        eprintln!(
            "round {round}: killed {}, {} leads, writes went on within {} ms",
            c.nodes[leader].name,
            c.nodes[new_leader].name,
            killed_at.elapsed().as_millis()
        );
        c.nodes[leader].restart();
        c.wait(
            "the killed master back as a follower",
            Duration::from_secs(30),
            || {
                let s = c.cluster_status()?;
                let back = s["masters"].as_array()?.iter().any(|m| {
                    m["name"] == c.nodes[leader].name.as_str() && m["lag"].as_u64() == Some(0)
                });
                back.then_some(())
            },
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Every acknowledged write is in every master's state.
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > ROUNDS * 2,
        "the writer got too few acknowledgements: {}",
        acked.len()
    );
    for i in 0..3 {
        let missing = c.wait(
            &format!("{} caught up", c.nodes[i].name),
            Duration::from_secs(20),
            || {
                let names = service_names(&c, i)?;
                let missing: Vec<&String> = acked.iter().filter(|a| !names.contains(a)).collect();
                missing.is_empty().then_some(missing.len())
            },
        );
        assert_eq!(missing, 0);
    }
    // The replicas that ran before every kill are the same, never restarted.
    let after = c.replicas("keep");
    assert_eq!(ids(&after), ids(&before), "keep's replicas were replaced");
    for r in &after {
        assert_eq!(r["state"], "running", "{r}");
        assert_eq!(r["restarts"], 0, "{r}");
    }
    // One master's admin API answers for all: `dash node ls` lists the three masters.
    let nodes = c.json(&["node", "ls"]);
    let masters = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "master")
        .count();
    assert_eq!(masters, 3, "{nodes}");
    c.finish();
}

/// A small deterministic spread of kill moments (no rand dependency in the e2e crate).
fn rand_u64(seed: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    x ^= x >> 33;
    x.wrapping_mul(0xff51afd7ed558ccd) >> 20
}
