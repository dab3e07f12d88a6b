//! The main loop: starts `runtime create`, reports its outcome, relays the container's output
//! into the log, reaps the init and records its exit code.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::crun_hybrid;
use crate::daemon::{close_report, report};
use crate::log::Log;
use crate::protocol::{self, Args, Report};
use crate::sys;
use crate::timestamp::now_rfc3339;

/// After the init exits, how long to keep reading output other processes still hold open.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// A line longer than this is written in pieces.
const MAX_LINE: usize = 16 * 1024;
/// The create error text sent to the daemon is cut here.
const MAX_CREATE_OUTPUT: usize = 8 * 1024;
/// How much is read from a pipe at once; the log keeps a buffer of about this size.
pub const READ_BUF: usize = 16 * 1024;
/// The tags of the log lines from the init's stdout and stderr pipes.
const STREAMS: [&[u8]; 2] = [b"stdout", b"stderr"];

/// Reports our pid, starts `runtime create` and watches the container until it exits.
pub fn run(a: &Args) -> Result<(), String> {
    let pid = i32::try_from(std::process::id()).expect("pids fit in pid_t");
    report(&Report::Pid(pid));
    match start(a) {
        Ok(mut m) => m.watch(),
        Err(e) => {
            report(&Report::Error(e.clone()));
            Err(e)
        }
    }
}

/// The state of a monitor that has started `runtime create`.
struct Monitor<'a> {
    args: &'a Args,
    sigfd: OwnedFd,
    /// [stdout, stderr] read ends; `None` once at EOF.
    pipes: [Option<OwnedFd>; 2],
    partial: [Vec<u8>; 2],
    log: Log,
    create_pid: Option<i32>,
    /// What `create` printed, for the error report.
    create_output: Vec<u8>,
    init_pid: Option<i32>,
    /// Children reaped before the init's pid was known.
    early: Vec<(i32, i32)>,
    exit_code: Option<i32>,
    drain_deadline: Option<Instant>,
}

fn start(a: &Args) -> Result<Monitor<'_>, String> {
    sys::set_child_subreaper().map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    let sigfd = sys::sigchld_fd().map_err(|e| format!("signalfd: {e}"))?;
    let log = Log::open(a.log_file.clone(), a.log_max_bytes)
        .map_err(|e| format!("opening {}: {e}", a.log_file.display()))?;

    let mut cmd = Command::new(&a.runtime);
    cmd.arg("--root").arg(&a.runtime_root);
    if a.start {
        cmd.arg("run").arg("--detach");
    } else {
        cmd.arg("create");
    }
    cmd.arg("--bundle")
        .arg(&a.bundle)
        .arg("--pid-file")
        .arg(&a.pid_file)
        .arg(&a.id)
        .current_dir(&a.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if a.crun_hybrid_workaround {
        crun_hybrid::apply(&mut cmd);
    }
    // std resets the signal mask in the child, so SIGCHLD blocked here does not leak into the
    // runtime or the container.
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {} create: {e}", a.runtime.display()))?;
    let out = child.stdout.take().map(OwnedFd::from);
    let err = child.stderr.take().map(OwnedFd::from);
    for fd in [&out, &err].into_iter().flatten() {
        sys::set_nonblocking(fd).map_err(|e| format!("O_NONBLOCK: {e}"))?;
    }
    let create_pid = i32::try_from(child.id()).ok();
    // `child` is dropped without waiting: we reap with waitpid(-1) ourselves.
    Ok(Monitor {
        args: a,
        sigfd,
        pipes: [out, err],
        partial: [Vec::new(), Vec::new()],
        log,
        create_pid,
        create_output: Vec::new(),
        init_pid: None,
        early: Vec::new(),
        exit_code: None,
        drain_deadline: None,
    })
}

impl Monitor<'_> {
    fn watch(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let timeout_ms = match self.drain_deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1)
                }
            };
            let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, |f| f.as_raw_fd());
            let mut fds = [
                sys::pollfd(self.sigfd.as_raw_fd()),
                sys::pollfd(raw(&self.pipes[0])),
                sys::pollfd(raw(&self.pipes[1])),
            ];
            match sys::poll(&mut fds, timeout_ms) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            for (i, pfd) in fds[1..].iter().enumerate() {
                if pfd.revents != 0 {
                    self.read_pipe(i, &mut buf);
                }
            }
            if fds[0].revents != 0 {
                self.drain_signalfd();
                self.reap()?;
            }
            if self.exit_code.is_some() && self.pipes.iter().all(Option::is_none) {
                break;
            }
        }
        for (i, stream) in STREAMS.iter().enumerate() {
            let rest = std::mem::take(&mut self.partial[i]);
            if !rest.is_empty() {
                self.log.line(now_rfc3339().as_bytes(), stream, &rest);
            }
        }
        self.log.flush();
        let code = self.exit_code.unwrap_or(protocol::LOST_EXIT_CODE);
        write_atomically(&self.args.exit_file, &protocol::exit_file_text(code))
            .map_err(|e| format!("writing {}: {e}", self.args.exit_file.display()))
    }

    /// Reads what is there (non-blocking) into the log.
    fn read_pipe(&mut self, i: usize, buf: &mut [u8]) {
        loop {
            let Some(fd) = self.pipes[i].as_ref() else {
                return;
            };
            let n = match sys::read(fd, buf) {
                Ok(0) => {
                    self.pipes[i] = None;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pipes[i] = None;
                    return;
                }
            };
            let data = &buf[..n];
            if self.create_pid.is_some() && self.create_output.len() < MAX_CREATE_OUTPUT {
                let room = MAX_CREATE_OUTPUT - self.create_output.len();
                self.create_output
                    .extend_from_slice(&data[..data.len().min(room)]);
            }
            self.relay(i, data);
        }
    }

    /// Splits `data` into lines, each written with a timestamp and the stream's tag.
    fn relay(&mut self, i: usize, mut data: &[u8]) {
        let ts = now_rfc3339();
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(pos) => {
                    let line = &data[..pos];
                    if self.partial[i].is_empty() {
                        self.log.line(ts.as_bytes(), STREAMS[i], line);
                    } else {
                        let mut whole = std::mem::take(&mut self.partial[i]);
                        whole.extend_from_slice(line);
                        self.log.line(ts.as_bytes(), STREAMS[i], &whole);
                    }
                    data = &data[pos + 1..];
                }
                None => {
                    let take = data.len().min(MAX_LINE - self.partial[i].len());
                    self.partial[i].extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial[i].len() >= MAX_LINE {
                        let whole = std::mem::take(&mut self.partial[i]);
                        self.log.line(ts.as_bytes(), STREAMS[i], &whole);
                    }
                }
            }
        }
        self.log.flush();
    }

    fn drain_signalfd(&mut self) {
        // signalfd_siginfo records (128 bytes each); only their coming matters.
        let mut info = [0u8; 128 * 8];
        while matches!(sys::read(&self.sigfd, &mut info), Ok(n) if n > 0) {}
    }

    /// Reaps every child that exited; SIGCHLD coalesces, so one signal may stand for many.
    fn reap(&mut self) -> Result<(), String> {
        while let Some((pid, status)) = sys::reap_one() {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            if Some(pid) == self.create_pid {
                self.create_pid = None;
                self.create_done(code)?;
            } else if Some(pid) == self.init_pid {
                self.init_exited(code);
            } else if self.init_pid.is_none() {
                self.early.push((pid, code));
            }
        }
        Ok(())
    }

    fn create_done(&mut self, code: i32) -> Result<(), String> {
        if code != 0 {
            let text = String::from_utf8_lossy(&self.create_output);
            let text = text.trim().replace('\n', " | ");
            let msg = format!(
                "{} create exited with {code}: {text}",
                self.args.runtime.display()
            );
            report(&Report::Error(msg.clone()));
            return Err(msg);
        }
        let pid = fs::read_to_string(&self.args.pid_file)
            .ok()
            .and_then(|s| protocol::parse_pid(&s));
        let Some(pid) = pid else {
            let msg = format!(
                "create succeeded but {} holds no pid",
                self.args.pid_file.display()
            );
            report(&Report::Error(msg.clone()));
            return Err(msg);
        };
        self.init_pid = Some(pid);
        self.create_output = Vec::new();
        report(&Report::Created(pid));
        close_report().map_err(|e| format!("closing the report pipe: {e}"))?;
        sys::trim_code_pages();
        if let Some(&(_, code)) = self.early.iter().find(|(p, _)| *p == pid) {
            self.init_exited(code);
        }
        self.early = Vec::new();
        Ok(())
    }

    fn init_exited(&mut self, code: i32) {
        self.exit_code = Some(code);
        self.drain_deadline = Some(Instant::now() + DRAIN_GRACE);
    }
}

/// Writes `<path>.tmp`, then renames it: a reader sees all of `text` or nothing.
fn write_atomically(path: &std::path::Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}
