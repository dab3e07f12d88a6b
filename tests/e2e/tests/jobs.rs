//! Jobs end to end on a real master (real containers, a real SQLite state): scheduled runs at
//! their slots, history with logs, concurrency (forbid, replace, allow), retries up to the
//! back-off limit, a deadline that stops a hang, a master killed just before a slot (the slot
//! runs exactly once) and a slot missed by more than `starting_deadline` (skipped, with an
//! event), and bad job files refused.
//!
//! Each attempt reports itself to a recorder on the host (an HTTP listener on the node's
//! bridge address): `GET /<job>/<run>`; the recorder keeps when each request arrived. That is
//! the container's own account of how often and when it ran, independent of Dash's state.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dash_e2e::Server;
use serde_json::Value;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the attempts reported: (job, run, arrival ms).
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, u64, u64)>>>,
    port: u16,
}

impl Recorder {
    /// Listens on every address at `port` (the containers reach it at their gateway).
    fn start(port: u16) -> Recorder {
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        let r = Recorder {
            seen: Arc::default(),
            port,
        };
        let seen = r.seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let at = now_ms();
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                // GET /<job>/<run> HTTP/1.1
                if let Some(path) = req.split_whitespace().nth(1) {
                    let mut parts = path.trim_start_matches('/').split('/');
                    if let (Some(job), Some(run)) = (parts.next(), parts.next())
                        && let Ok(run) = run.parse()
                    {
                        seen.lock().unwrap().push((job.to_string(), run, at));
                    }
                }
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
        r
    }

    fn of(&self, job: &str) -> Vec<(u64, u64)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, _, _)| j == job)
            .map(|(_, run, at)| (*run, *at))
            .collect()
    }

    /// The shell that reports an attempt of `job` from inside it.
    fn report(&self, s: &Server, job: &str) -> String {
        let gateway = s.subnet.replace(".0/24", ".1");
        format!(
            "printf 'GET /{job}/%s HTTP/1.0\\r\\n\\r\\n' $DASH_JOB_RUN | nc -w 3 {gateway} {}",
            self.port
        )
    }
}

fn job_file(name: &str, script: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nimage = \"bb:job\"\ncommand = [\"sh\", \"-c\", {script:?}]\n\
         kind = \"job\"\nstop_grace_period = \"1s\"\n{extra}"
    )
}

fn runs(s: &Server, job: &str) -> Vec<Value> {
    s.json(&["job", "history", job]).as_array().unwrap().clone()
}

fn events(s: &Server, job: &str) -> Vec<Value> {
    let out = s.ok(&[
        "events",
        "--service",
        job,
        "-o",
        "json",
        "--since",
        "10m",
        "--until",
        "now",
    ]);
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn events_of(s: &Server, job: &str, kind: &str) -> Vec<String> {
    events(s, job)
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn scheduled_runs_start_at_their_slots_and_the_history_keeps_three_with_logs() {
    let s = Server::start(79);
    s.import_busybox("bb:job");
    let rec = Recorder::start(18_979);
    let script = format!(
        "{}; echo output-of-run-$DASH_JOB_RUN",
        rec.report(&s, "tick")
    );
    s.apply(
        "tick.toml",
        &job_file(
            "tick",
            &script,
            "[schedule]\ncron = \"@every 5s\"\nhistory = 3\n",
        ),
    );
    let seen = s.wait("five runs reported", Duration::from_secs(60), || {
        let seen = rec.of("tick");
        (seen.len() >= 5).then_some(seen)
    });
    // Each run started within 1 s of its slot (a multiple of 5 s since the epoch), once.
    for (run, at) in &seen {
        let late = at % 5_000;
        assert!(late < 1_000, "run {run} reported {late} ms after its slot");
    }
    let mut numbers: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    numbers.dedup();
    assert_eq!(numbers.len(), seen.len(), "a run reported twice: {seen:?}");
    // Three finished runs kept (a fourth may be in progress), each succeeded, with its logs.
    let kept = s.wait("the history trimmed to 3", Duration::from_secs(20), || {
        let r = runs(&s, "tick");
        let done: Vec<Value> = r.into_iter().filter(|r| r["state"] != "running").collect();
        (done.len() == 3).then_some(done)
    });
    for r in &kept {
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["trigger"], "schedule");
        assert_eq!(r["attempts"].as_array().unwrap().len(), 1);
        let n = r["run"].as_u64().unwrap();
        let logs = s.ok(&["logs", "tick", "--run", &n.to_string()]);
        assert!(
            logs.contains(&format!("output-of-run-{n}")),
            "run {n}: {logs}"
        );
        assert!(
            !logs.contains(&format!("output-of-run-{}", n + 1)),
            "{logs}"
        );
    }
    // Finished attempts are kept (for their logs) but gave their address and network back.
    s.wait(
        "finished attempts without an address",
        Duration::from_secs(20),
        || {
            let done: Vec<Value> = s
                .replicas("tick")
                .into_iter()
                .filter(|r| r["desired"] == "stop")
                .collect();
            (done.len() >= 3
                && done
                    .iter()
                    .all(|r| r["state"] == "exited" && r["ip"].is_null()))
            .then_some(())
        },
    );
    // A run that left the history: its logs went with it, and the error says so.
    let err = s.fails(&["logs", "tick", "--run", "1"]);
    assert!(err.contains("no run 1 in its history"), "{err}");
    // ls: the schedule, the last run, the next one.
    let ls = s.json(&["job", "ls"]);
    let tick = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "tick")
        .unwrap();
    assert_eq!(tick["schedule"], "@every 5s");
    assert!(tick["next_run_ms"].as_u64().unwrap() % 5_000 == 0, "{tick}");
    let table = s.ok(&["job", "ls"]);
    assert!(
        table.contains("NEXT RUN (LOCAL)") && table.contains("tick"),
        "{table}"
    );
    assert!(!events_of(&s, "tick", "job_run_started").is_empty());
    assert!(!events_of(&s, "tick", "job_run_succeeded").is_empty());
    // Suspended: nothing starts, not even by hand.
    s.ok(&["job", "suspend", "tick"]);
    let err = s.fails(&["job", "run", "tick"]);
    assert!(err.contains("suspended"), "{err}");
    std::thread::sleep(Duration::from_secs(2));
    let before = rec.of("tick").len();
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(rec.of("tick").len(), before, "a suspended job ran");
    s.ok(&["job", "resume", "tick"]);
    s.wait("a run after resume", Duration::from_secs(15), || {
        (rec.of("tick").len() > before).then_some(())
    });
    s.remove_all_services();
    s.assert_no_leftovers("tick-", Duration::ZERO);
}

#[test]
fn concurrency_forbid_skips_replace_stops_allow_overlaps_and_a_manual_run_obeys_it() {
    let s = Server::start(80);
    s.import_busybox("bb:job");
    let rec = Recorder::start(18_980);
    for (name, policy) in [
        ("forbid", "forbid"),
        ("replace", "replace"),
        ("allow", "allow"),
    ] {
        let script = format!("{}; sleep 7", rec.report(&s, name));
        s.apply(
            &format!("{name}.toml"),
            &job_file(
                name,
                &script,
                &format!(
                    "[schedule]\ncron = \"@every 3s\"\nconcurrency = \"{policy}\"\nhistory = 10\n"
                ),
            ),
        );
    }
    // forbid: slots during a run are skipped, with events saying why.
    let skipped = s.wait("a forbidden slot skipped", Duration::from_secs(40), || {
        let e = events_of(&s, "forbid", "job_slot_skipped");
        (!e.is_empty()).then_some(e)
    });
    assert!(
        skipped[0].contains("forbid") && skipped[0].contains("still running"),
        "{skipped:?}"
    );
    // `dash job run` is held to it too (Nomad's forced runs are not: nomad#5487).
    let out = s.wait("a run in progress", Duration::from_secs(20), || {
        let out = s.dash(&["job", "run", "forbid"]);
        (!out.status.success()).then_some(out)
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("still running") && err.contains("forbid"),
        "{err}"
    );
    // replace: the running one is stopped when the next slot comes.
    let stopped = s.wait("a replaced run", Duration::from_secs(40), || {
        runs(&s, "replace")
            .into_iter()
            .find(|r| r["state"] == "stopped")
    });
    assert!(
        stopped["message"]
            .as_str()
            .unwrap()
            .contains("replaced by run"),
        "{stopped}"
    );
    assert!(!events_of(&s, "replace", "job_run_stopped").is_empty());
    // Its attempt was stopped (SIGTERM): exited, kept.
    let attempt = &stopped["attempts"][0];
    s.wait(
        "the replaced attempt exited",
        Duration::from_secs(20),
        || {
            let r = runs(&s, "replace");
            let a = r
                .iter()
                .find(|r| r["run"] == stopped["run"])
                .map(|r| r["attempts"][0].clone())?;
            (a["state"] == "exited").then_some(())
        },
    );
    assert!(attempt["replica"].is_string());
    // allow: two runs at once.
    s.wait("two allowed runs at once", Duration::from_secs(40), || {
        let running = runs(&s, "allow")
            .into_iter()
            .filter(|r| r["state"] == "running")
            .count();
        (running >= 2).then_some(())
    });
    // forbid runs fewer times than allow (every third slot against every slot): its skipped
    // slots did not run. (The containers' reports come a moment after the state says running.)
    s.wait(
        "allow ran more often than forbid",
        Duration::from_secs(30),
        || (rec.of("allow").len() > rec.of("forbid").len()).then_some(()),
    );
    s.remove_all_services();
    for p in ["forbid-", "replace-", "allow-"] {
        s.assert_no_leftovers(p, Duration::ZERO);
    }
}

#[test]
fn failed_attempts_are_retried_to_the_limit_and_a_deadline_stops_a_hang() {
    let s = Server::start(82);
    s.import_busybox("bb:job");
    // Bad files first: refused whole, each problem named with what is accepted.
    for (file, needle) in [
        (
            job_file("bad", "true", "[schedule]\ncron = \"61 * * * *\"\n"),
            "minute field \"61\"",
        ),
        (
            job_file(
                "bad",
                "true",
                "[schedule]\ncron = \"@daily\"\ntimezone = \"Mars/Olympus\"\n",
            ),
            "schedule.timezone",
        ),
        (
            job_file("bad", "true", "[[ports]]\ncontainer = 80\n"),
            "a job has no ports",
        ),
        (
            job_file("bad", "true", "[job]\ncompletions = 0\n"),
            "job.completions = 0",
        ),
    ] {
        let path = s.write("bad.toml", &file);
        let out = s.dash(&["apply", "-f", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(s.json(&["job", "ls"]).as_array().unwrap().is_empty());

    // No schedule: one run on apply. Every attempt exits 3: retried twice, then failed.
    s.apply(
        "flaky.toml",
        &job_file(
            "flaky",
            "echo attempt; sleep 1; exit 3",
            "[job]\nbackoff_limit = 2\n",
        ),
    );
    // Followed while it runs, the run's logs take in each retry as it comes.
    s.wait("run 1 recorded", Duration::from_secs(20), || {
        (!runs(&s, "flaky").is_empty()).then_some(())
    });
    let follow = std::process::Command::new(dash_e2e::dash_bin())
        .args(["logs", "flaky", "--run", "1", "-f"])
        .env("DASH_ADDR", &s.addr)
        .env("DASH_DATA_DIR", &s.data_dir)
        .env_remove("DASH_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = s.wait("the run failed", Duration::from_secs(60), || {
        runs(&s, "flaky")
            .into_iter()
            .find(|r| r["state"] == "failed")
    });
    assert_eq!(run["exit_code"], 3, "{run}");
    assert_eq!(run["trigger"], "apply");
    let attempts = run["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{run}");
    assert!(attempts.iter().all(|a| a["exit_code"] == 3), "{run}");
    let failed = events_of(&s, "flaky", "job_run_failed");
    assert!(
        failed
            .iter()
            .any(|m| m.contains("exit code 3") && m.contains("attempt 3")),
        "{failed:?}"
    );
    let table = s.ok(&["job", "history", "flaky"]);
    assert!(
        table.contains("3,3,3") && table.contains("failed (exit 3)"),
        "{table}"
    );
    // Each attempt's logs are kept with the run.
    let logs = s.ok(&["logs", "flaky", "--run", "1"]);
    assert_eq!(logs.matches("attempt").count(), 3, "{logs}");
    std::thread::sleep(Duration::from_millis(500));
    let mut follow = follow;
    let _ = follow.kill();
    let followed = follow.wait_with_output().unwrap();
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert_eq!(followed.matches("attempt").count(), 3, "{followed}");
    // No more runs: the version had its run.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&s, "flaky").len(), 1);

    // A hang: stopped at its deadline, the run failed, its container gone from the processes.
    s.apply(
        "hang.toml",
        &job_file(
            "hang",
            "sleep 1000",
            "[job]\ndeadline = \"3s\"\nbackoff_limit = 0\n",
        ),
    );
    let run = s.wait("the hang stopped", Duration::from_secs(40), || {
        runs(&s, "hang")
            .into_iter()
            .find(|r| r["state"] == "failed")
    });
    assert!(
        run["message"].as_str().unwrap().contains("deadline 3s"),
        "{run}"
    );
    s.wait("its attempt exited", Duration::from_secs(20), || {
        let r = runs(&s, "hang");
        (r[0]["attempts"][0]["state"] == "exited").then_some(())
    });
    // A manual run of it starts at once (the last one is over).
    s.ok(&["job", "run", "hang"]);
    s.wait("run 2", Duration::from_secs(20), || {
        (runs(&s, "hang").len() == 2).then_some(())
    });
    s.remove_all_services();
    for p in ["flaky-", "hang-"] {
        s.assert_no_leftovers(p, Duration::ZERO);
    }
}

/// The next multiple of `every` ms at least `margin` ms from now.
fn next_slot(every: u64, margin: u64) -> u64 {
    let now = now_ms();
    (now + margin) / every * every + every
}

fn sleep_until(ms: u64) {
    let now = now_ms();
    if ms > now {
        std::thread::sleep(Duration::from_millis(ms - now));
    }
}

#[test]
fn a_master_killed_before_a_slot_runs_it_once_and_a_late_slot_is_skipped() {
    let mut s = Server::start(83);
    s.import_busybox("bb:job");
    let rec = Recorder::start(18_983);
    let script = rec.report(&s, "nightly");
    s.apply(
        "nightly.toml",
        &job_file(
            "nightly",
            &script,
            "[schedule]\ncron = \"@every 6s\"\nstarting_deadline = \"3s\"\nhistory = 20\n",
        ),
    );
    s.wait("a first run", Duration::from_secs(30), || {
        (!rec.of("nightly").is_empty()).then_some(())
    });
    // Killed 300 ms before a slot (its run may be recorded already: 1 s ahead), back at once.
    let slot = next_slot(6_000, 2_000);
    sleep_until(slot - 300);
    s.kill9();
    s.restart();
    s.wait("the slot's run reported", Duration::from_secs(30), || {
        runs(&s, "nightly")
            .into_iter()
            .find(|r| r["slot_ms"] == slot && r["state"] == "succeeded")
    });
    let for_slot: Vec<Value> = runs(&s, "nightly")
        .into_iter()
        .filter(|r| r["slot_ms"] == slot)
        .collect();
    assert_eq!(for_slot.len(), 1, "{for_slot:?}");
    let run = for_slot[0]["run"].as_u64().unwrap();
    let reports = rec.of("nightly").iter().filter(|(r, _)| *r == run).count();
    assert_eq!(reports, 1, "the slot's container ran {reports} times");
    // Down for longer than starting_deadline: the slots it missed by more are skipped, and
    // an event says so.
    s.kill9();
    std::thread::sleep(Duration::from_secs(10));
    s.restart();
    let skipped = s.wait("a late slot skipped", Duration::from_secs(30), || {
        let e = events_of(&s, "nightly", "job_slot_skipped");
        e.into_iter().find(|m| m.contains("starting_deadline"))
    });
    assert!(skipped.contains("missed by"), "{skipped}");
    let ls = s.json(&["job", "ls"]);
    let skipped_slots = ls[0]["skipped_slots"].as_u64().unwrap();
    assert!(skipped_slots >= 1, "{ls}");
    // Counted where metrics are (the state's count, the same on every master).
    let (code, metrics) =
        dash_e2e::http_request(&s.addr, "GET", "/metrics", Some(&s.token())).unwrap();
    assert_eq!(code, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("dash_job_slots_skipped_total{job=\"nightly\"}"))
        .unwrap_or_else(|| panic!("no skipped-slot series:\n{metrics}"));
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        counted >= skipped_slots as f64,
        "{line} against {skipped_slots}"
    );
    assert!(
        metrics.contains("dash_job_runs{job=\"nightly\",state=\"succeeded\"}"),
        "{metrics}"
    );
    // Every run the state has, its container reported exactly once; no slot ran twice.
    s.wait("runs settle", Duration::from_secs(20), || {
        runs(&s, "nightly")
            .iter()
            .all(|r| r["state"] != "running")
            .then_some(())
    });
    let all = runs(&s, "nightly");
    let mut slots: Vec<u64> = all.iter().filter_map(|r| r["slot_ms"].as_u64()).collect();
    let n = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot ran twice: {all:?}");
    for r in &all {
        let run = r["run"].as_u64().unwrap();
        let reports = rec.of("nightly").iter().filter(|(x, _)| *x == run).count();
        assert_eq!(reports, 1, "run {run} reported {reports} times");
    }
    s.remove_all_services();
    s.assert_no_leftovers("nightly-", Duration::ZERO);
}

/// Three masters (real Raft) and a worker: the leader is killed 300 ms before a slot; the new
/// leader runs that slot exactly once (its run's only attempt printed one line, read from the
/// log file its node kept), and no slot ever ran twice.
#[test]
fn with_three_masters_a_leader_killed_before_a_slot_leaves_it_run_exactly_once() {
    let mut c = dash_e2e::cluster::Cluster::start_ha(84, 3, 1);
    c.import_busybox("bb:job");
    c.apply(
        "ha.toml",
        &job_file(
            "hajob",
            "echo ran-run-$DASH_JOB_RUN",
            "[schedule]\ncron = \"@every 4s\"\nstarting_deadline = \"20s\"\nhistory = 30\n",
        ),
    );
    let history = |c: &dash_e2e::cluster::Cluster| -> Vec<Value> {
        c.json(&["job", "history", "hajob"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    c.wait("a first run", Duration::from_secs(40), || {
        history(&c)
            .iter()
            .any(|r| r["state"] == "succeeded")
            .then_some(())
    });
    let leader = c.wait("a leader", Duration::from_secs(15), || c.leader());
    let slot = next_slot(4_000, 1_500);
    sleep_until(slot - 300);
    c.nodes[leader].kill_node();
    c.wait("a new leader", Duration::from_secs(15), || {
        c.leader().filter(|l| *l != leader)
    });
    let run = c.wait("the slot's run", Duration::from_secs(40), || {
        history(&c)
            .into_iter()
            .find(|r| r["slot_ms"] == slot && r["state"] == "succeeded")
    });
    let n = run["run"].as_u64().unwrap();
    assert_eq!(run["attempts"].as_array().unwrap().len(), 1, "{run}");
    let logs = c.ok(&["logs", "hajob", "--run", &n.to_string()]);
    assert_eq!(logs.matches(&format!("ran-run-{n}")).count(), 1, "{logs}");
    // A couple more slots under the new leader, then: no slot twice, one attempt each.
    c.wait("two more runs", Duration::from_secs(30), || {
        history(&c)
            .iter()
            .any(|r| r["slot_ms"].as_u64() >= Some(slot + 8_000) && r["state"] == "succeeded")
            .then_some(())
    });
    let all = history(&c);
    let mut slots: Vec<u64> = all.iter().filter_map(|r| r["slot_ms"].as_u64()).collect();
    let total = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), total, "a slot ran twice: {all:?}");
    for r in all.iter().filter(|r| r["state"] == "succeeded") {
        assert_eq!(r["attempts"].as_array().unwrap().len(), 1, "{r}");
    }
    c.nodes[leader].restart();
    c.ok(&["service", "rm", "hajob"]);
}
