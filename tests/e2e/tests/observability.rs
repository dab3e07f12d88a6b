//! Seeing the cluster (issue 14): why a replica died, logs in a time window, events filtered,
//! Prometheus metrics, the history the portal charts, `dash top -o json`; with real
//! containers on one node.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use dash_e2e::Server;

/// A replica the kernel kills for going over its memory limit says so, in `dash ps`, in the
/// event and after its restart, instead of only "exit code 137".
#[test]
fn an_oom_kill_is_named_with_the_limit() {
    let s = Server::start(72);
    s.import_busybox("bb:1");
    // dd asks for a 64 MiB buffer in a cgroup that allows 8 MiB (there is no swap to go to).
    s.apply(
        "hog.toml",
        "name = \"hog\"\nimage = \"bb:1\"\n\
         command = [\"dd\", \"if=/dev/zero\", \"of=/dev/null\", \"bs=64M\", \"count=1\"]\n\
         [resources]\nmemory = \"8MiB\"\n\
         [restart]\nbackoff = \"30s\"\nmax_backoff = \"30s\"\n",
    );
    // The first restart is immediate, the second waits 30 s: the replica sits exited with
    // its message in view.
    let rep = s.wait("hog killed twice", Duration::from_secs(30), || {
        let reps = s.replicas("hog");
        let r = reps.first()?;
        (r["restarts"].as_u64()? >= 1 && r["state"] == "exited").then(|| r.clone())
    });
    assert_eq!(rep["exit_code"], 137, "{rep}");
    let message = rep["message"].as_str().unwrap();
    assert!(
        message.starts_with("out of memory (limit 8 MiB)"),
        "dash ps message: {message:?}"
    );
    let ps = s.ok(&["ps"]);
    assert!(ps.contains("out of memory (limit 8 MiB)"), "{ps}");
    // The event of the exit says it too.
    let events = s.ok(&[
        "events",
        "--past",
        "--service",
        "hog",
        "--type",
        "replica_exited",
        "--until",
        "now",
    ]);
    assert!(
        events.contains("exit code 137: out of memory (limit 8 MiB)"),
        "{events}"
    );
    s.ok(&["service", "rm", "hog"]);
}
