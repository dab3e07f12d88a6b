//! `dash exec -t` sessions end with their caller: a client that goes away hangs the terminal
//! up, so nothing it started keeps running in the replica; with crun and with runc.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dash_e2e::Server;

/// Processes inside replica `id` (in its pid namespace) other than its init: what an exec
/// session started there. The client's own command line (`dash exec … -- sh -c …`) runs on the
/// host, so it can never be mistaken for the command.
fn processes_in(s: &Server, id: &str) -> Vec<String> {
    let init = s.replica_pid(id);
    let ns_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let container_ns = ns_of(&init.to_string()).expect("the replica's init runs");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && *pid != init.to_string())
        .filter(|pid| ns_of(pid).as_ref() == Some(&container_ns))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some(format!(
                "{pid} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ))
        })
        .collect()
}

fn hangup_on_disconnect(slot: u8, runtime: &str) {
    let s = Server::start_with(slot, &["--runtime", runtime]);
    s.import_busybox("bb:1");
    s.apply("idle.toml",
        "name = \"idle\"\nimage = \"bb:1\"\ncommand = [\"sleep\", \"1000\"]\nstop_grace_period = \"1s\"\n");
    let id = s.wait_running("idle", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let marker = format!("dash-hangup-{slot}-{runtime}");
    // -t without -i: no input at all, so the command waits in `read` (no ^D typed for it);
    // after it, a sleep that only a hangup ends.
    let mut client = Command::new(dash_e2e::dash_bin())
        .args([
            "exec",
            "-t",
            &id,
            "--",
            "sh",
            "-c",
            &format!("echo {marker}; read line; sleep 300"),
        ])
        .env("DASH_ADDR", &s.addr)
        .env("DASH_TOKEN", s.token())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = dash_e2e::first_line(&mut client);
    assert!(first.contains(&marker), "{first:?}");
    let started = processes_in(&s, &id);
    assert!(
        started.iter().any(|p| p.contains(&marker)),
        "the command runs in the replica while its caller is there: {started:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        client.try_wait().unwrap().is_none(),
        "-t without -i sent no end of input"
    );
    client.kill().unwrap();
    client.wait().unwrap();
    let t0 = Instant::now();
    s.wait(
        "the command hung up after its caller went away",
        Duration::from_secs(15),
        || processes_in(&s, &id).is_empty().then_some(()),
    );
    eprintln!(
        "{runtime}: hung up {:?} after the client died",
        t0.elapsed()
    );
    // Nothing left of the session on the host either (the scratch dir goes once the runtime
    // has exited).
    let prefix = format!("dash-console-{}-", s.pid().unwrap());
    s.wait(
        "no console scratch dirs left",
        Duration::from_secs(5),
        || {
            std::fs::read_dir(std::env::temp_dir())
                .unwrap()
                .filter_map(Result::ok)
                .all(|e| !e.file_name().to_string_lossy().starts_with(&prefix))
                .then_some(())
        },
    );
}

#[test]
fn a_terminal_session_hangs_up_when_its_client_dies_crun() {
    hangup_on_disconnect(74, "crun");
}

#[test]
fn a_terminal_session_hangs_up_when_its_client_dies_runc() {
    hangup_on_disconnect(75, "runc");
}
