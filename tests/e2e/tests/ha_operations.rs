//! Highly available masters under what operators meet: a partitioned leader, five masters
//! losing two and `dash node rm` of the dead, a worker dying while the leader is gone too, and
//! a backup of a live cluster restored into a new one. Real processes, each master and worker
//! in its own network namespace, real containers.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use dash_e2e::Server;
use dash_e2e::cluster::Cluster;
use dash_e2e::registry::{HTPASSWD, Registry, busybox_layer, oci_layout};
use serde_json::Value;

fn service_file(c: &Cluster, name: &str) -> String {
    let f = c.write(
        &format!("{name}.toml"),
        &format!("name = \"{name}\"\nimage = \"none:1\"\nreplicas = 0\n"),
    );
    f.to_str().unwrap().to_string()
}

fn apply_at(c: &Cluster, i: usize, name: &str) -> std::process::Output {
    c.dash_at(i, &["apply", "-f", &service_file(c, name)])
}

/// Whether master `i`'s own state has service `name`.
fn has_service(c: &Cluster, i: usize, name: &str) -> Option<bool> {
    let out = c.dash_at(i, &["-o", "json", "service", "ls"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v.as_array()?.iter().any(|s| s["spec"]["name"] == name))
}

/// `dash restore --data-dir TARGET FILE` (local: no server).
fn restore(target: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(dash_e2e::dash_bin())
        .arg("restore")
        .arg("--data-dir")
        .arg(target)
        .arg(file)
        .output()
        .unwrap()
}

/// Waits until masters 0..n each hold `tag` in their own image store.
fn wait_image_everywhere(c: &Cluster, n: usize, tag: &str) {
    for i in 0..n {
        c.wait(
            &format!("{tag} on {}", c.nodes[i].name),
            Duration::from_secs(30),
            || {
                let out = c.dash_at(i, &["image", "ls"]);
                String::from_utf8_lossy(&out.stdout)
                    .contains(tag)
                    .then_some(())
            },
        );
    }
}

fn role_in_node_ls(c: &Cluster, node: &str) -> Option<String> {
    let v = c.json(&["node", "ls"]);
    v.as_array()?
        .iter()
        .find(|n| n["id"] == node)
        .and_then(|n| n["raft"].as_str().map(String::from))
}

/// Sends SIGCONT to a stopped process when dropped (the test may fail while it is stopped).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        signal(pid, "-STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid} failed");
}

/// `name`'s state as master `at` answers it.
fn node_state(c: &Cluster, at: usize, name: &str) -> Option<String> {
    let out = c.dash_at(at, &["-o", "json", "node", "inspect", name]);
    let n: Value = serde_json::from_slice(&out.stdout).ok()?;
    n["state"].as_str().map(str::to_string)
}

#[test]
fn a_master_stalled_past_node_down_after_is_ready_again_with_its_next_beat() {
    // A master's own node beats to the leader; stalled (its disk, a long pause) past
    // --node-down-after (2 s here), it is judged down, and its beats must bring it back.
    let c = Cluster::start_ha(86, 3, 0);
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    // Not m1: the test's CLI talks to it.
    let follower = (1..3).find(|i| *i != leader).unwrap();
    let name = c.nodes[follower].name.clone();
    let pid = c.nodes[follower].pid().expect("the follower runs");
    {
        let _stopped = Stopped::new(pid);
        c.wait(&format!("{name} down"), Duration::from_secs(20), || {
            (node_state(&c, leader, &name)? == "down").then_some(())
        });
    }
    c.wait(
        &format!("{name} ready again"),
        Duration::from_secs(20),
        || (node_state(&c, leader, &name)? == "ready").then_some(()),
    );
    c.wait_nodes_ready(3);
}

#[test]
fn a_partitioned_leader_acknowledges_nothing_and_comes_back_a_follower() {
    let c = Cluster::start_ha(59, 3, 0);
    let old = c.wait("a leader", Duration::from_secs(15), || c.leader());
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    c.nodes[old].set_link(false);

    // The majority elects a leader and takes writes.
    let new = c.wait(
        "a new leader among the others",
        Duration::from_secs(15),
        || {
            let out = c.dash_at(others[0], &["-o", "json", "cluster", "status"]);
            let s: Value = serde_json::from_slice(&out.stdout).ok()?;
            let name = s["leader"].as_str()?;
            others.iter().copied().find(|i| c.nodes[*i].name == name)
        },
    );
    let out = apply_at(&c, others[0], "after-split");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The old leader, cut off, never acknowledges a write on its own: it waits for a majority
    // that cannot answer, then refuses.
    let f = service_file(&c, "lost-in-split");
    let out = c.dash_inside(old, &["apply", "-f", &f]);
    assert!(
        !out.status.success(),
        "a partitioned master acknowledged a write"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no leader took the write") || err.contains("unavailable"),
        "{err}"
    );
    // Reads there are linearizable: refused, saying how to read its state anyway; with
    // --stale it answers from what it has (without the majority's newer write).
    let out = c.dash_inside(old, &["service", "ls"]);
    assert!(
        !out.status.success(),
        "a cut-off master answered a linearizable read"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale=true"));
    let out = c.dash_inside(old, &["-o", "json", "service", "ls", "--stale"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("after-split"));

    // Heal: one history everywhere, the old leader a follower.
    c.nodes[old].set_link(true);
    c.wait("the old leader a follower", Duration::from_secs(20), || {
        let s = c.cluster_status()?;
        let ms = s["masters"].as_array()?;
        let ok = s["leader"] == c.nodes[new].name.as_str()
            && ms.iter().any(|m| {
                m["name"] == c.nodes[old].name.as_str()
                    && m["role"] == "follower"
                    && m["lag"].as_u64() == Some(0)
            });
        ok.then_some(())
    });
    for i in 0..3 {
        c.wait(
            &format!("{} has the acknowledged write", c.nodes[i].name),
            Duration::from_secs(10),
            || has_service(&c, i, "after-split").filter(|h| *h),
        );
        assert_eq!(
            has_service(&c, i, "lost-in-split"),
            Some(false),
            "the refused write is in {}'s state",
            c.nodes[i].name
        );
    }
    c.finish();
}

#[test]
fn five_masters_lose_two_and_node_rm_plus_a_new_master_restore_the_membership() {
    let mut c = Cluster::start_ha(58, 5, 0);
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    assert_eq!(
        role_in_node_ls(&c, &c.nodes[leader].name).as_deref(),
        Some("leader")
    );
    let follower = (0..5).find(|i| *i != leader).unwrap();
    assert_eq!(
        role_in_node_ls(&c, &c.nodes[follower].name).as_deref(),
        Some("follower")
    );
    // The leader and one follower die.
    let dead = [leader, follower];
    for d in dead {
        c.nodes[d].kill_node();
    }
    let live: Vec<usize> = (0..5).filter(|i| !dead.contains(i)).collect();
    let out = c.wait(
        "a write through the three left",
        Duration::from_secs(20),
        || {
            let o = apply_at(&c, live[0], "three-of-five");
            o.status.success().then_some(o)
        },
    );
    drop(out);

    // A dead master is removed from the membership too; the one answering cannot remove
    // itself, and a live master only with --force.
    let out = c.dash_at(live[0], &["node", "rm", &c.nodes[live[0]].name.clone()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the master answering"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.dash_at(live[0], &["node", "rm", &c.nodes[live[1]].name.clone()]);
    assert!(
        !out.status.success(),
        "a live master was removed without --force"
    );
    for d in dead {
        let name = c.nodes[d].name.clone();
        c.wait(&format!("{name} down"), Duration::from_secs(20), || {
            // Asked again on an error too: a read right after the membership changed may
            // find no leader confirming its read index for a moment (5 s on this machine).
            let out = c.dash(&["-o", "json", "node", "inspect", &name]);
            let n: Value = serde_json::from_slice(&out.stdout).ok()?;
            (n["state"] == "down").then_some(())
        });
        let out = c.dash_at(live[0], &["node", "rm", &name]);
        assert!(
            out.status.success(),
            "rm {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.retire(d);
    }
    c.wait_voters(3);
    let s = c.cluster_status().unwrap();
    assert_eq!(s["masters"].as_array().unwrap().len(), 3, "{s}");
    // A new master joins: 4 of 4, all up.
    let new = c.spawn_master();
    c.wait_voters(4);
    c.wait(
        "the new master has the state",
        Duration::from_secs(20),
        || has_service(&c, new, "three-of-five").filter(|h| *h),
    );
    assert_eq!(
        role_in_node_ls(&c, &c.nodes[new].name).as_deref(),
        Some("follower")
    );
    c.finish();
}

#[test]
fn a_worker_dying_while_the_leader_is_gone_has_its_replicas_rescheduled() {
    let mut c = Cluster::start_ha(62, 3, 2);
    c.import_busybox("busybox:wl");
    c.apply(
        "wl.toml",
        "name = \"wl\"\nimage = \"busybox:wl\"\ncommand = [\"sleep\", \"100000\"]\nreplicas = 2\n\
         stop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n",
    );
    let reps = c.wait("wl's 2 replicas running", Duration::from_secs(30), || {
        let r = c.replicas("wl");
        (r.len() == 2 && r.iter().all(|x| x["state"] == "running")).then_some(r)
    });
    let victim_name = reps[0]["node"].as_str().unwrap().to_string();
    let victim = c.nodes.iter().position(|n| n.name == victim_name).unwrap();
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    c.nodes[leader].kill_node();
    c.nodes[victim].kill_node();
    let survivor = (3..5).find(|i| *i != victim).unwrap();
    let survivor_name = c.nodes[survivor].name.clone();
    c.wait(
        "both replicas running on the surviving worker",
        Duration::from_secs(60),
        || {
            let r = c.replicas("wl");
            let live: Vec<&Value> = r.iter().filter(|x| x["desired"] == "run").collect();
            (live.len() == 2
                && live
                    .iter()
                    .all(|x| x["state"] == "running" && x["node"] == survivor_name.as_str()))
            .then_some(())
        },
    );
    c.finish();
}

#[test]
fn a_backup_of_a_live_cluster_restores_into_a_new_one_that_an_old_worker_rejoins() {
    let mut c = Cluster::start_ha(60, 3, 1);
    // The image through the second master: every master gets it (the image index).
    let tar = dash_e2e::busybox_rootfs_tar(c.dir.path());
    let out = c.dash_at(
        1,
        &[
            "image",
            "import",
            "--rootfs",
            tar.to_str().unwrap(),
            "busybox:bk",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_image_everywhere(&c, 3, "busybox:bk");
    c.apply(
        "bk.toml",
        "name = \"bk\"\nimage = \"busybox:bk\"\ncommand = [\"sleep\", \"100000\"]\nreplicas = 1\n\
         stop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n",
    );
    c.wait("bk running", Duration::from_secs(30), || {
        let r = c.replicas("bk");
        (r.len() == 1 && r[0]["state"] == "running").then_some(())
    });
    let tokens_before = c.json(&["token", "ls"]).as_array().unwrap().len();

    // The backup, from a follower.
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    let via = (0..3).find(|i| *i != leader).unwrap();
    let snap = c.dir.path().join("cluster.snap");
    let out = c.dash_at(via, &["backup", "-o", snap.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not over an existing file.
    let out = c.dash_at(via, &["backup", "-o", snap.to_str().unwrap()]);
    assert!(!out.status.success());

    // A truncated copy is refused and changes nothing.
    let bytes = std::fs::read(&snap).unwrap();
    let short = c.dir.path().join("short.snap");
    std::fs::write(&short, &bytes[..bytes.len() / 2]).unwrap();
    let target = c.dir.path().join("restored");
    let out = restore(&target, &short);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    assert!(!target.exists());

    // The restore, and a new one-master cluster from it.
    let out = restore(&target, &snap);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.spawn_master_from("r1", &target);
    c.wait(
        "the restored master answers",
        Duration::from_secs(30),
        || {
            c.dash_at(r, &["-o", "json", "cluster", "status"])
                .status
                .success()
                .then_some(())
        },
    );
    let services = c.dash_at(r, &["-o", "json", "service", "ls"]);
    let services: Value = serde_json::from_slice(&services.stdout).unwrap();
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["spec"]["name"] == "bk"),
        "{services}"
    );
    let images = c.dash_at(r, &["-o", "json", "image", "ls"]);
    assert!(String::from_utf8_lossy(&images.stdout).contains("busybox:bk"));
    let tokens: Value =
        serde_json::from_slice(&c.dash_at(r, &["-o", "json", "token", "ls"]).stdout).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), tokens_before);
    let nodes: Value =
        serde_json::from_slice(&c.dash_at(r, &["-o", "json", "node", "ls"]).stdout).unwrap();
    assert!(nodes.as_array().unwrap().len() >= 4, "{nodes}");
    // The admin token is the cluster's (dash_at uses the first master's).
    let status: Value =
        serde_json::from_slice(&c.dash_at(r, &["-o", "json", "cluster", "status"]).stdout).unwrap();
    assert_eq!(status["masters"].as_array().unwrap().len(), 1, "{status}");

    // The old cluster's worker joins the restored one with a new token and runs bk there.
    let token = String::from_utf8(
        c.dash_at(r, &["token", "create", "--role", "worker"])
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    for i in 0..3 {
        c.retire(i);
    }
    let w = 3;
    let args: Vec<String> = c
        .worker_args(w, &token)
        .into_iter()
        .map(|a| {
            a.replace(
                &format!("@{}:7071", c.nodes[0].ip),
                &format!("@{}:7071", c.nodes[r].ip),
            )
        })
        .collect();
    // Its containers die with it: a live one later was started under the restored master.
    c.nodes[w].kill_node();
    c.wait(
        "the worker's containers gone",
        Duration::from_secs(10),
        || c.nodes[w].container_pids().is_empty().then_some(()),
    );
    c.respawn_with(w, args);
    let wname = c.nodes[w].name.clone();
    c.wait(
        "bk running on the old worker, under the restored master",
        Duration::from_secs(60),
        || {
            let out = c.dash_at(r, &["-o", "json", "ps", "bk"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let running = v
                .as_array()?
                .iter()
                .any(|x| x["state"] == "running" && x["node"] == wname.as_str());
            (running && !c.nodes[w].container_pids().is_empty()).then_some(())
        },
    );
    let nodes: Value =
        serde_json::from_slice(&c.dash_at(r, &["-o", "json", "node", "ls"]).stdout).unwrap();
    let worker = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == wname.as_str())
        .unwrap();
    assert_eq!(worker["state"], "ready", "{worker}");
    // The restored master answers from now on.
    c.addr = format!("{}:7070", c.nodes[r].ip);
    c.finish();
}

#[test]
fn a_single_master_data_dir_becomes_a_one_member_raft_cluster_with_its_replicas_untouched() {
    let mut s = Server::start(19);
    s.import_busybox("bb:up");
    s.apply(
        "up.toml",
        "name = \"up\"\nimage = \"bb:up\"\ncommand = [\"sleep\", \"100000\"]\nreplicas = 2\n",
    );
    let ids = |r: &[Value]| dash_e2e::sorted_field(r, "id");
    let before = s.wait_running("up", 2);
    assert!(
        s.dash(&["cluster", "status"]).status.code() != Some(0),
        "no Raft yet"
    );

    // The same data dir under a master of a cluster: it becomes a one-member Raft cluster.
    s.restart_with(&["--advertise-addr", "127.0.0.1", "--cluster-port", "17719"]);
    let after = s.wait_running("up", 2);
    assert_eq!(ids(&after), ids(&before), "the replicas were replaced");
    assert!(after.iter().all(|r| r["restarts"] == 0), "{after:?}");
    assert!(
        s.log()
            .contains("a single-master state became a one-member Raft cluster"),
        "{}",
        s.log()
    );
    let status = s.json(&["cluster", "status"]);
    assert_eq!(status["leader"], "e2e19", "{status}");
    assert_eq!(status["masters"].as_array().unwrap().len(), 1, "{status}");
    // Writes go through the log now, and the state was all there.
    s.apply(
        "up.toml",
        "name = \"up\"\nimage = \"bb:up\"\ncommand = [\"sleep\", \"100000\"]\nreplicas = 3\n",
    );
    let three = s.wait_running("up", 3);
    for id in ids(&before) {
        assert!(ids(&three).contains(&id), "{id} gone");
    }
    // A restart keeps it a Raft master.
    s.restart();
    s.wait_running("up", 3);
    s.remove_all_services();
}

#[test]
fn an_image_imported_through_a_master_runs_on_a_worker_after_that_master_is_killed() {
    let mut c = Cluster::start_ha(63, 3, 1);
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    let via = (0..3).find(|i| *i != leader).unwrap();
    let tar = dash_e2e::busybox_rootfs_tar(c.dir.path());
    for tag in ["busybox:sync", "busybox:gone"] {
        let out = c.dash_at(
            via,
            &["image", "import", "--rootfs", tar.to_str().unwrap(), tag],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_image_everywhere(&c, 3, tag);
    }
    // Removed through one master, it goes from every master: at once from those up, and
    // from a master that was down when it left, once it is back.
    let down = (0..3).find(|i| *i != leader && *i != via).unwrap();
    c.nodes[down].kill_node();
    let out = c.dash_at(leader, &["image", "rm", "busybox:gone"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.nodes[down].restart();
    for i in 0..3 {
        c.wait(
            &format!("busybox:gone removed from {}", c.nodes[i].name),
            Duration::from_secs(30),
            || {
                let out = c.dash_at(i, &["image", "ls"]);
                (out.status.success()
                    && !String::from_utf8_lossy(&out.stdout).contains("busybox:gone"))
                .then_some(())
            },
        );
    }

    // A prune at one master prunes every master: busybox:sync imported again with other
    // content leaves its first image untagged everywhere.
    let images_at = |i: usize| -> Option<Vec<Value>> {
        let out = c.dash_at(i, &["-o", "json", "image", "ls"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()?
            .as_array()
            .cloned()
    };
    let untagged = |i: usize| {
        images_at(i).map(|l| {
            l.iter()
                .filter(|im| im["tags"].as_array().is_some_and(|t| t.is_empty()))
                .count()
        })
    };
    // Waits until every master has `n` untagged images.
    let untagged_everywhere = |what: &str, n: usize| {
        for i in 0..3 {
            c.wait(
                &format!("{what} on {}", c.nodes[i].name),
                Duration::from_secs(30),
                || (untagged(i)? == n).then_some(()),
            );
        }
    };
    // One more file in the rootfs the first tar was made from: other content.
    std::fs::write(c.dir.path().join("rootfs/www/second.html"), "2\n").unwrap();
    let other = dash_e2e::busybox_rootfs_tar(c.dir.path());
    let out = c.dash_at(
        via,
        &[
            "image",
            "import",
            "--rootfs",
            other.to_str().unwrap(),
            "busybox:sync",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    untagged_everywhere("the first busybox:sync untagged", 1);
    let out = c.dash_at(leader, &["image", "prune"]);
    assert!(out.status.success(), "{out:?}");
    untagged_everywhere("pruned", 0);
    for i in 0..3 {
        assert!(
            images_at(i).unwrap().iter().any(|im| im["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "busybox:sync"))),
            "busybox:sync kept on {}",
            c.nodes[i].name
        );
    }

    c.retire(via);
    c.apply(
        "sync.toml",
        "name = \"sync\"\nimage = \"busybox:sync\"\ncommand = [\"sleep\", \"100000\"]\n\
         replicas = 1\nstop_grace_period = \"1s\"\n[placement]\nconstraints = [\"node.labels.tier == worker\"]\n",
    );
    c.wait(
        "sync running on the worker",
        Duration::from_secs(60),
        || {
            let r = c.replicas("sync");
            (r.len() == 1 && r[0]["state"] == "running").then_some(())
        },
    );
    c.finish();
}

#[test]
fn registry_credentials_taken_at_one_master_serve_pulls_at_another_after_it_is_killed() {
    let mut registry = None;
    let mut c = Cluster::start_ha_with(64, 3, 0, |c| {
        // On the test bridge, where every master's namespace reaches it (plain HTTP).
        let r = Registry::start_at(&format!("10.96.{}.1", c.slot), Some(HTPASSWD));
        c.master_extra = vec!["--insecure-registry".into(), r.addr.clone()];
        // Renewals within the test: the followers' and the worker's go to the leader.
        c.master_extra
            .extend(["--cert-validity".into(), "15s".into()]);
        registry = Some(r);
    });
    let reg = registry.unwrap();
    let layout = c.dir.path().join("layout");
    oci_layout(&layout, "1", &[busybox_layer(c.dir.path())]);
    for repo in ["private/ha", "private/ha2"] {
        reg.push(&layout, "1", repo, Some("dash:s3cret-pass"));
    }
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    let via = (0..3).find(|i| *i != leader).unwrap();
    let out = c.dash_at_input(via, &reg.login_args(), "s3cret-pass\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sealed in the state: no master's files (state, its WAL, the Raft log) hold it in clear.
    for n in &c.nodes[..3] {
        let clear = dash_e2e::files_holding(&n.data_dir, "s3cret-pass");
        assert!(clear.is_empty(), "the password in clear in {clear:?}");
    }

    // The master that took the login is gone; another pulls with the credentials.
    c.retire(via);
    let (a, b) = {
        let mut live = (0..3).filter(|i| *i != via);
        (live.next().unwrap(), live.next().unwrap())
    };
    let out = c.dash_at(a, &["image", "pull", &format!("{}/private/ha:1", reg.addr)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Logged out at one master: the other is refused at once.
    let out = c.dash_at(a, &["registry", "logout", &reg.addr]);
    assert!(out.status.success(), "{out:?}");
    let out = c.dash_at(
        b,
        &["image", "pull", &format!("{}/private/ha2:1", reg.addr)],
    );
    assert!(!out.status.success(), "pulled after the logout: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("auth"), "{err}");

    // Certificates are signed at the leader only: a worker joining through a follower is
    // forwarded there, and does not notice.
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    let follower = if a == leader { b } else { a };
    let w = c.join_new_worker_via(follower);
    let name = c.nodes[w].name.clone();
    c.wait(&format!("{name} ready"), Duration::from_secs(30), || {
        let nodes = c.json(&["node", "ls"]);
        nodes
            .as_array()?
            .iter()
            .any(|n| n["id"] == name.as_str() && n["state"] == "ready")
            .then_some(())
    });
    let forwarded = c.nodes[follower].log_text();
    assert!(
        forwarded.contains("join forwarded to the leader") && forwarded.contains(&name),
        "{}",
        dash_e2e::tail(&forwarded, 20)
    );
    let signed = c.nodes[leader].log_text();
    assert!(
        signed.contains("node joined") && signed.contains(&name),
        "{}",
        dash_e2e::tail(&signed, 20)
    );
    // Renewed at two thirds of 15 s, by the leader: the follower's certificate (asked for
    // with its own) and the worker's (which moved to the leader); both go on talking.
    let follower_name = c.nodes[follower].name.clone();
    c.wait(
        "the follower's and the worker's certificates renewed at the leader",
        Duration::from_secs(40),
        || {
            let log = c.nodes[leader].log_text();
            let renewed = |node: &str| {
                log.lines()
                    .any(|l| l.contains("certificate renewed") && l.contains(node))
            };
            (renewed(&follower_name) && renewed(&name)).then_some(())
        },
    );
    assert!(
        c.nodes[follower]
            .log_text()
            .contains("master certificate renewed")
    );
    let out = c.dash_at(
        follower,
        &["apply", "-f", &service_file(&c, "after-renewal")],
    );
    assert!(out.status.success(), "{out:?}");
    // Longer than --node-down-after: a worker whose heartbeats failed would not be ready.
    std::thread::sleep(Duration::from_secs(3));
    let nodes = c.json(&["node", "ls"]);
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == name.as_str() && n["state"] == "ready"),
        "{nodes}"
    );
    c.finish();
}
