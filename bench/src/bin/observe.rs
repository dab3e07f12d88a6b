//! observe: the one neutral observer of the benchmark scripts. It watches the host's process
//! table and prints when processes with a given command line appear, the same way whatever
//! started them (Dash, podman, crun, Docker, Swarm), so every tool is timed by the same clock
//! from the moment its command was invoked until its container's own process runs.
//!
//! ```text
//! observe --cmdline "sleep 600123" [--count N] [--not PID]... [--timeout SECS]
//! ```
//!
//! It prints `ready` once it has listed the processes already there (they are ignored, as are
//! the `--not` ones), then, for each new process whose command line is exactly the given one
//! (arguments joined by spaces), a line `<pid> <microseconds since the Unix epoch>` as soon as
//! it sees it, until it has seen `--count` of them (default 1). Exit status 1 on timeout.
//!
//! Cost: it polls every 500 µs; a pid's command line is read again only during its first 5 s
//! (a container's init runs the runtime's code before it execs the command), so a poll is one
//! read of /proc's directory plus the young processes' command lines.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a new process's command line is watched for the exec of the awaited command.
const YOUNG: Duration = Duration::from_secs(5);

struct Args {
    cmdline: String,
    count: usize,
    not: HashSet<u32>,
    timeout: Duration,
}

fn usage(why: &str) -> ! {
    eprintln!(
        "observe: {why}\nusage: observe --cmdline CMDLINE [--count N] [--not PID]... [--timeout SECS]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        cmdline: String::new(),
        count: 1,
        not: HashSet::new(),
        timeout: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--cmdline" => a.cmdline = value,
            "--count" => a.count = value.parse().unwrap_or_else(|_| usage("--count: a number")),
            "--not" => {
                a.not
                    .insert(value.parse().unwrap_or_else(|_| usage("--not: a pid")));
            }
            "--timeout" => {
                a.timeout = Duration::from_secs(
                    value
                        .parse()
                        .unwrap_or_else(|_| usage("--timeout: seconds")),
                )
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.cmdline.is_empty() {
        usage("--cmdline is required");
    }
    a
}

/// Pids in /proc now.
fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The command line of `pid`, arguments joined by spaces; `None` when it is gone or is a
/// kernel thread (empty).
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw);
    Some(text.trim_end_matches('\0').replace('\0', " "))
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn main() {
    let a = args();
    // Settled pids (there before us, matched, or older than YOUNG) and young ones with the
    // time they were first seen.
    let mut settled: HashSet<u32> = pids().into_iter().collect();
    settled.extend(&a.not);
    let mut young: HashMap<u32, Instant> = HashMap::new();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let deadline = Instant::now() + a.timeout;
    let mut seen = 0;
    while seen < a.count {
        let now = Instant::now();
        for pid in pids() {
            if settled.contains(&pid) {
                continue;
            }
            let first = *young.entry(pid).or_insert(now);
            match cmdline(pid) {
                Some(c) if c == a.cmdline => {
                    let _ = writeln!(out, "{pid} {}", now_us());
                    let _ = out.flush();
                    seen += 1;
                    settled.insert(pid);
                    young.remove(&pid);
                }
                // Not (yet) the command: looked at again until it is YOUNG old.
                _ if now.duration_since(first) > YOUNG => {
                    settled.insert(pid);
                    young.remove(&pid);
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            eprintln!("observe: timed out after {:?}", a.timeout);
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
