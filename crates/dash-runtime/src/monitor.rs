//! container_runtime: starting the per-container monitor (`dash-monitor`) and reading what it
//! leaves behind.
//!
//! ```text
//!  daemon ──spawn──▶ dash-monitor ──fork──▶ dash-monitor (setsid, subreaper) ──▶ runc create
//!    │                  └ exits at once        │  "pid <monitor>"   on stdout        │
//!    │   (reaped here at once)                 │  "ok <init pid>" / "error <text>"   ▼
//!    └◀──────── reads the report to EOF ───────┘  then stdout → /dev/null     container init
//!                                              relays init stdout/stderr → <bundle>/log
//!                                              reaps init → <bundle>/exit
//! ```
//! The monitor detaches itself (fork + setsid), so the daemon neither has to reap it nor takes
//! it along when it dies; it keeps none of the daemon's stdio (stdin /dev/null, stdout the
//! report pipe until the report is written, stderr `<bundle>/monitor.log`). What the two sides
//! say to each other (arguments, report lines, exit file) is in `monitor_protocol.rs`.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::RuntimeError;
use crate::monitor_protocol::{self as protocol, Report};
use crate::sys;

/// How long `create` (runtime create + the monitor's start) may take; 20–30 ms here.
pub(crate) const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Files in the bundle dir shared with the monitor.
pub(crate) const PID_FILE: &str = "pid";
pub(crate) const EXIT_FILE: &str = "exit";
pub(crate) const LOG_FILE: &str = "log";
pub(crate) const MONITOR_PID_FILE: &str = "monitor.pid";
pub(crate) const MONITOR_LOG_FILE: &str = "monitor.log";

/// Everything the monitor needs to create and watch one container.
pub(crate) struct Launch<'a> {
    pub monitor_bin: &'a Path,
    pub id: &'a str,
    pub runtime: &'a Path,
    pub runtime_root: &'a Path,
    pub bundle: &'a Path,
    /// Outside the bundle, so that a replica's log survives its container's restarts.
    pub log_file: &'a Path,
    pub log_max_bytes: u64,
    pub crun_hybrid_workaround: bool,
    /// Start it too (`runtime run --detach`), not only create it.
    pub start: bool,
}

/// A container the monitor created (and started, with [`Launch::start`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Created {
    pub monitor_pid: i32,
    pub container_pid: i32,
}

/// Starts the monitor, waits for its create report and records the monitor's pid.
pub(crate) fn launch(l: &Launch<'_>) -> Result<Created, RuntimeError> {
    let monitor_log = l.bundle.join(MONITOR_LOG_FILE);
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&monitor_log)
        .map_err(|e| RuntimeError::io(format!("opening {}", monitor_log.display()), e))?;
    let args = protocol::Args {
        id: l.id.into(),
        runtime: l.runtime.to_owned(),
        runtime_root: l.runtime_root.to_owned(),
        bundle: l.bundle.to_owned(),
        pid_file: l.bundle.join(PID_FILE),
        log_file: l.log_file.to_owned(),
        exit_file: l.bundle.join(EXIT_FILE),
        log_max_bytes: match l.log_max_bytes {
            0 => protocol::DEFAULT_LOG_MAX_BYTES,
            n => n,
        },
        crun_hybrid_workaround: l.crun_hybrid_workaround,
        start: l.start,
    };
    let mut cmd = Command::new(l.monitor_bin);
    cmd.args(args.to_argv())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    tracing::debug!(id = l.id, monitor = %l.monitor_bin.display(), "spawn monitor");
    let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
        argv: l.monitor_bin.display().to_string(),
        source,
    })?;
    let Some(stdout) = child.stdout.take() else {
        return Err(monitor_err(l.id, "no stdout pipe".into()));
    };
    // The first monitor process only forks and exits; reap it now.
    let status = child
        .wait()
        .map_err(|e| RuntimeError::io("waiting for the monitor to detach", e))?;
    if !status.success() {
        return Err(monitor_err(
            l.id,
            format!(
                "exited with {status} before detaching: {}",
                tail(&monitor_log)
            ),
        ));
    }

    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + CREATE_TIMEOUT;
    let mut monitor_pid = None;
    let mut error: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(error) = error.as_mut() {
                    error.push('\n');
                    error.push_str(&line);
                    continue;
                }
                match Report::parse(&line) {
                    Some(Report::Pid(pid)) => {
                        write_pid(&l.bundle.join(MONITOR_PID_FILE), pid)?;
                        monitor_pid = Some(pid);
                    }
                    Some(Report::Created(container_pid)) => {
                        let monitor_pid = monitor_pid.ok_or_else(|| {
                            monitor_err(l.id, "reported ok before its pid".into())
                        })?;
                        return Ok(Created {
                            monitor_pid,
                            container_pid,
                        });
                    }
                    Some(Report::Error(text)) => error = Some(text),
                    None => return Err(monitor_err(l.id, format!("bad report {line:?}"))),
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(match error {
                    Some(message) => RuntimeError::Create {
                        id: l.id.to_owned(),
                        message,
                    },
                    None => monitor_err(
                        l.id,
                        format!("exited without a report: {}", tail(&monitor_log)),
                    ),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(pid) = monitor_pid {
                    // Its children (runtime create) are in its session; take them along.
                    let _ = sys::send_signal(-pid, libc::SIGKILL);
                }
                return Err(RuntimeError::Timeout {
                    argv: format!("{} (create {})", l.monitor_bin.display(), l.id),
                    timeout: CREATE_TIMEOUT,
                });
            }
        }
    }
}

fn monitor_err(id: &str, message: String) -> RuntimeError {
    RuntimeError::Monitor {
        id: id.to_owned(),
        message,
    }
}

/// The last lines of a small log file, for error messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        format!("{} is empty", path.display())
    } else {
        joined
    }
}

fn write_pid(path: &Path, pid: i32) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| RuntimeError::io(format!("writing {}", path.display()), e))
}

/// A pid file (the runtime's or the monitor's); `None` when missing or garbled.
pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| protocol::parse_pid(&s))
}

/// The exit code the monitor recorded; `None` while the container has not exited.
pub(crate) fn read_exit_code(bundle: &Path) -> Option<i32> {
    fs::read_to_string(bundle.join(EXIT_FILE))
        .ok()
        .and_then(|s| protocol::parse_exit_file(&s))
}

/// The pid of the bundle's monitor if it is still alive.
pub(crate) fn monitor_alive(bundle: &Path) -> Option<i32> {
    read_pid(&bundle.join(MONITOR_PID_FILE)).filter(|pid| is_monitor_of(*pid, bundle))
}

/// A pidfd of the bundle's live monitor: it turns readable when the monitor exits, which it
/// does right after it recorded the exit code, so a waiter learns of the exit at once instead
/// of polling the exit file. `None` when no monitor of this bundle runs.
pub(crate) fn monitor_pidfd(bundle: &Path) -> Option<std::os::fd::OwnedFd> {
    let pid = read_pid(&bundle.join(MONITOR_PID_FILE))?;
    let fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid)?,
        rustix::process::PidfdFlags::NONBLOCK,
    )
    .ok()?;
    // Checked after the fd is held: it now names this process, even if the pid is reused.
    is_monitor_of(pid, bundle).then_some(fd)
}

/// A live process whose command line names this bundle: guards against pid reuse after the
/// monitor died.
fn is_monitor_of(pid: i32, bundle: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let bundle = bundle.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == bundle)
}

/// State of a process from /proc: (state letter, parent pid).
pub(crate) fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …": comm may hold spaces and parens; take the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_state_of_self() {
        let (state, ppid) = proc_state(std::process::id() as i32).unwrap();
        assert!(state == 'R' || state == 'S');
        assert!(ppid > 0);
    }

    #[test]
    fn exit_code_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_exit_code(tmp.path()), None);
        fs::write(tmp.path().join(EXIT_FILE), "137\n").unwrap();
        assert_eq!(read_exit_code(tmp.path()), Some(137));
    }
}
