//! dash-monitor: the per-container monitor (like conmon). One small process per container
//! that outlives the daemon: it runs `<runtime> create`, becomes the subreaper of the
//! container's init, copies the init's stdout/stderr into a size-rotated log and records the
//! exit code.
//!
//! ```text
//!  daemon ─▶ dash-monitor ─fork─▶ dash-monitor (setsid, PR_SET_CHILD_SUBREAPER)
//!              exits 0              │ stdout "pid <self>"
//!                                   ├─▶ runtime create (stdin /dev/null, stdout+stderr pipes)
//!                                   │     exits → stdout "ok <init pid>" | "error <text>",
//!                                   │             then stdout := /dev/null
//!                                   ├── pipes → <log>: "<RFC 3339 ms UTC> <stdout|stderr> line"
//!                                   ├── waitpid(-1) until the init is reaped (others: orphans)
//!                                   └── drain pipes (≤ 2 s) → <exit>.tmp → rename <exit>; exit
//! ```
//! std + libc only, no async runtime, single-threaded: poll(2) over the two pipes and a
//! signalfd for SIGCHLD. Kept small because there is one per container (RECIPES.md "Memory of
//! a small monitor process").
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;
/// After the init exits, how long to keep reading output other processes still hold open.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// A line longer than this is written in pieces.
const MAX_LINE: usize = 16 * 1024;
/// The create error text sent to the daemon is cut here.
const MAX_CREATE_OUTPUT: usize = 8 * 1024;
const READ_BUF: usize = 16 * 1024;

const USAGE: &str = "usage: dash-monitor --id ID --runtime PATH --runtime-root DIR --bundle DIR \
--pid-file P --log-file L --exit-file E [--log-max-bytes N] [--crun-hybrid-workaround]";

struct Args {
    id: OsString,
    runtime: PathBuf,
    runtime_root: PathBuf,
    bundle: PathBuf,
    pid_file: PathBuf,
    log_file: PathBuf,
    exit_file: PathBuf,
    log_max_bytes: u64,
    crun_hybrid_workaround: bool,
}

fn parse_args(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut id = None;
    let mut runtime = None;
    let mut runtime_root = None;
    let mut bundle = None;
    let mut pid_file = None;
    let mut log_file = None;
    let mut exit_file = None;
    let mut log_max_bytes = DEFAULT_LOG_MAX_BYTES;
    let mut crun_hybrid_workaround = false;
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        if flag == "--crun-hybrid-workaround" {
            crun_hybrid_workaround = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--id" => id = Some(value),
            "--runtime" => runtime = Some(PathBuf::from(value)),
            "--runtime-root" => runtime_root = Some(PathBuf::from(value)),
            "--bundle" => bundle = Some(PathBuf::from(value)),
            "--pid-file" => pid_file = Some(PathBuf::from(value)),
            "--log-file" => log_file = Some(PathBuf::from(value)),
            "--exit-file" => exit_file = Some(PathBuf::from(value)),
            "--log-max-bytes" => {
                log_max_bytes = value
                    .to_str()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("--log-max-bytes {value:?}: not a positive number"))?;
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("{name} is required"));
    let absolute = |p: PathBuf, name: &str| {
        if p.is_absolute() {
            Ok(p)
        } else {
            Err(format!("{name} {} must be absolute", p.display()))
        }
    };
    Ok(Args {
        id: id.ok_or("--id is required")?,
        runtime: need(runtime, "--runtime")?,
        runtime_root: absolute(need(runtime_root, "--runtime-root")?, "--runtime-root")?,
        bundle: absolute(need(bundle, "--bundle")?, "--bundle")?,
        // crun resolves a relative --pid-file against the bundle: insist on absolute paths.
        pid_file: absolute(need(pid_file, "--pid-file")?, "--pid-file")?,
        log_file: absolute(need(log_file, "--log-file")?, "--log-file")?,
        exit_file: absolute(need(exit_file, "--exit-file")?, "--exit-file")?,
        log_max_bytes,
        crun_hybrid_workaround,
    })
}

fn main() {
    // `dash-monitor --probe-crun CRUN`: runs `CRUN --version` behind the same hybrid-cgroup
    // workaround as `create` below, so the daemon learns whether crun can work here without a
    // second copy of this unsafe code.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref() == Some(std::ffi::OsStr::new("--probe-crun")) {
        let Some(crun) = argv.next() else {
            let _ = writeln!(
                io::stderr(),
                "dash-monitor: --probe-crun needs the crun path"
            );
            std::process::exit(2);
        };
        if let Err(e) = hybrid_workaround() {
            let _ = writeln!(io::stderr(), "dash-monitor: hybrid-cgroup workaround: {e}");
            std::process::exit(1);
        }
        let e = std::os::unix::process::CommandExt::exec(
            std::process::Command::new(crun).arg("--version"),
        );
        let _ = writeln!(io::stderr(), "dash-monitor: exec crun: {e}");
        std::process::exit(1);
    }
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(io::stderr(), "dash-monitor: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    close_inherited_fds();
    // Detach: the daemon reaps this first process at once; the child lives on in a session
    // of its own, so neither the daemon's death nor its process group's signals reach it.
    // SAFETY: single-threaded at this point; the child continues with a consistent copy.
    match unsafe { libc::fork() } {
        -1 => {
            let _ = writeln!(
                io::stderr(),
                "dash-monitor: fork: {}",
                io::Error::last_os_error()
            );
            std::process::exit(1);
        }
        0 => {}
        // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the child.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: setsid takes no arguments; it cannot fail in a fresh child (not a group leader).
    unsafe { libc::setsid() };
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "dash-monitor {}: {e}",
                args.id.to_string_lossy()
            );
            1
        }
    };
    std::process::exit(code);
}

/// Closes every fd but 0, 1 and 2: a daemon fd without O_CLOEXEC (a listening socket, a
/// database) must not stay open for as long as the container runs.
fn close_inherited_fds() {
    // SAFETY: close_range(2) takes integers; nothing in this process uses fds ≥ 3 yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists (collected first: reading the dir uses an fd).
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // SAFETY: closing an fd number we inherited and do not use; EBADF is harmless.
        unsafe { libc::close(fd) };
    }
}

/// One-line messages to the daemon on our stdout, until [`close_report`].
fn report(msg: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(msg.as_bytes());
    let _ = out.flush();
}

/// Lets go of the daemon's report pipe: from here on nothing of the daemon's is held.
fn close_report() -> io::Result<()> {
    let null = File::open("/dev/null")?;
    // SAFETY: dup2 of two fds we own onto fd 1; the old pipe end is closed by it.
    if unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn run(a: &Args) -> Result<(), String> {
    report(&format!("pid {}\n", std::process::id()));
    match start(a) {
        Ok(mut m) => m.watch(),
        Err(e) => {
            report(&format!("error {e}\n"));
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
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            io::Error::last_os_error()
        ));
    }
    let sigfd = sigchld_fd().map_err(|e| format!("signalfd: {e}"))?;
    let log = Log::open(a.log_file.clone(), a.log_max_bytes)
        .map_err(|e| format!("opening {}: {e}", a.log_file.display()))?;

    let mut cmd = Command::new(&a.runtime);
    cmd.arg("--root")
        .arg(&a.runtime_root)
        .arg("create")
        .arg("--bundle")
        .arg(&a.bundle)
        .arg("--pid-file")
        .arg(&a.pid_file)
        .arg(&a.id)
        .current_dir(&a.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if a.crun_hybrid_workaround {
        // SAFETY: the closure runs between fork and exec and makes raw system calls only
        // (unshare, mount with static strings): async-signal-safe, no allocation.
        unsafe {
            cmd.pre_exec(hybrid_workaround);
        }
    }
    // std resets the signal mask in the child, so SIGCHLD blocked here does not leak into the
    // runtime or the container.
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {} create: {e}", a.runtime.display()))?;
    let out = child.stdout.take().map(OwnedFd::from);
    let err = child.stderr.take().map(OwnedFd::from);
    for fd in [&out, &err].into_iter().flatten() {
        set_nonblocking(fd.as_raw_fd()).map_err(|e| format!("O_NONBLOCK: {e}"))?;
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
                pollfd(self.sigfd.as_raw_fd()),
                pollfd(raw(&self.pipes[0])),
                pollfd(raw(&self.pipes[1])),
            ];
            // SAFETY: fds is a valid array of 3 pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout_ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {e}"));
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
        let code = self.exit_code.unwrap_or(-1);
        write_atomically(&self.args.exit_file, &format!("{code}\n"))
            .map_err(|e| format!("writing {}: {e}", self.args.exit_file.display()))
    }

    /// Reads what is there (non-blocking) into the log.
    fn read_pipe(&mut self, i: usize, buf: &mut [u8]) {
        loop {
            let Some(fd) = self.pipes[i].as_ref() else {
                return;
            };
            // SAFETY: buf is valid for buf.len() bytes; fd is an open pipe we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return,
                    _ => {
                        self.pipes[i] = None;
                        return;
                    }
                }
            }
            if n == 0 {
                self.pipes[i] = None;
                return;
            }
            let data = &buf[..n as usize];
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
        let mut info = [0u8; 128 * 8];
        loop {
            // SAFETY: reading signalfd_siginfo records into a buffer of our own.
            let n =
                unsafe { libc::read(self.sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) };
            if n <= 0 {
                return;
            }
        }
    }

    /// Reaps every child that exited; SIGCHLD coalesces, so one signal may stand for many.
    fn reap(&mut self) -> Result<(), String> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into our local.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
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
            report(&format!("error {msg}\n"));
            return Err(msg);
        }
        let pid = fs::read_to_string(&self.args.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0);
        let Some(pid) = pid else {
            let msg = format!(
                "create succeeded but {} holds no pid",
                self.args.pid_file.display()
            );
            report(&format!("error {msg}\n"));
            return Err(msg);
        };
        self.init_pid = Some(pid);
        self.create_output = Vec::new();
        report(&format!("ok {pid}\n"));
        close_report().map_err(|e| format!("closing the report pipe: {e}"))?;
        trim_code_pages();
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

const STREAMS: [&[u8]; 2] = [b"stdout", b"stderr"];

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Blocks SIGCHLD and returns a signalfd for it, so children are noticed in poll(2).
fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd))
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own with integer arguments.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// crun 1.8 refuses cgroup v1 "hybrid mode" while /sys/fs/cgroup/unified holds controllers:
/// give its `create` a private mount namespace where a tmpfs hides that hierarchy.
/// Async-signal-safe: raw system calls with static strings only.
fn hybrid_workaround() -> io::Result<()> {
    // SAFETY: unshare takes a flag word only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // On a systemd host / is shared: make everything private first so the tmpfs stays here.
    // SAFETY: static NUL-terminated strings; null source/type/data are allowed here.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: static NUL-terminated strings, null data.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/sys/fs/cgroup/unified".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops the page-table entries of our executable file mappings (libc, ld.so, this binary).
///
/// Start-up (argument parsing, fork, exec of the runtime) touched code that the relay loop
/// never runs again, and the kernel's fault-around maps 64 KiB of page cache per fault: RSS
/// was ≈ 1.2 MB, mostly libc and our own text, all of it shared page cache. After this, the
/// loop faults back in just what it runs (≈ 10 pages). Only `r-xp` mappings are touched:
/// code is never written, so MADV_DONTNEED loses nothing; writable and read-only data
/// mappings (relocated GOT/RELRO) are left alone.
fn trim_code_pages() {
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        if perms != "r-xp" || !path.starts_with('/') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is one of our own private, read-only, executable file mappings as
        // the kernel lists it; MADV_DONTNEED only drops its PTEs and the next access refaults
        // the same bytes from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

fn write_atomically(path: &std::path::Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// The container log: `<timestamp> <stream> <line>\n`, rotated to `<path>.1` at `max` bytes.
struct Log {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    out: Vec<u8>,
}

impl Log {
    fn open(path: PathBuf, max: u64) -> io::Result<Log> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Log {
            path,
            file: Some(file),
            size,
            max,
            out: Vec::new(),
        })
    }

    fn line(&mut self, ts: &[u8], stream: &[u8], line: &[u8]) {
        let len = (ts.len() + stream.len() + line.len() + 3) as u64;
        let pending = self.size + self.out.len() as u64;
        if pending > 0 && pending + len > self.max {
            self.flush();
            self.rotate();
        }
        self.out.extend_from_slice(ts);
        self.out.push(b' ');
        self.out.extend_from_slice(stream);
        self.out.push(b' ');
        self.out.extend_from_slice(line);
        self.out.push(b'\n');
    }

    /// Writes what is buffered. Write errors (disk full) drop log lines but never stop the
    /// monitor: reaping the container and recording its exit matter more.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut()
            && f.write_all(&self.out).is_ok()
        {
            self.size += self.out.len() as u64;
        }
        self.out.clear();
        if self.out.capacity() > 2 * READ_BUF {
            self.out.shrink_to(READ_BUF);
        }
    }

    fn rotate(&mut self) {
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        self.file = None;
        let _ = fs::rename(&self.path, &old);
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z.
fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(24);
    push_num(&mut s, y, 4);
    s.push('-');
    push_num(&mut s, m, 2);
    s.push('-');
    push_num(&mut s, d, 2);
    s.push('T');
    push_num(&mut s, rem / 3600, 2);
    s.push(':');
    push_num(&mut s, rem / 60 % 60, 2);
    s.push(':');
    push_num(&mut s, rem % 60, 2);
    s.push('.');
    push_num(&mut s, u64::from(millis), 3);
    s.push('Z');
    s
}

/// Zero-padded decimal without std::fmt.
fn push_num(s: &mut String, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while v > 0 || digits.len() - i < width {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    s.extend(digits[i..].iter().map(|b| *b as char));
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn args_need_absolute_paths() {
        let argv = |s: &str| s.split(' ').map(OsString::from).collect::<Vec<_>>();
        let ok = parse_args(
            argv(
                "--id c1 --runtime /usr/bin/runc --runtime-root /r --bundle /b --pid-file /b/pid \
                 --log-file /b/log --exit-file /b/exit --log-max-bytes 100 --crun-hybrid-workaround",
            )
            .into_iter(),
        )
        .unwrap();
        assert_eq!(ok.log_max_bytes, 100);
        assert!(ok.crun_hybrid_workaround);
        let rel = parse_args(
            argv("--id c1 --runtime runc --runtime-root /r --bundle b --pid-file /p --log-file /l --exit-file /e")
                .into_iter(),
        );
        assert!(rel.err().unwrap().contains("must be absolute"));
        assert!(parse_args(argv("--id c1 --bogus x").into_iter()).is_err());
    }

    #[test]
    fn log_rotates_at_max_bytes() {
        let dir = std::env::temp_dir().join(format!("dash-monitor-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut log = Log::open(path.clone(), 60).unwrap();
        for i in 0..5 {
            log.line(
                b"T",
                b"stdout",
                format!("line {i} ................").as_bytes(),
            );
            log.flush();
        }
        let current = fs::read_to_string(&path).unwrap();
        let old = fs::read_to_string(dir.join("log.1")).unwrap();
        assert!(current.len() <= 60, "{current:?}");
        assert!(current.ends_with("line 4 ................\n"));
        assert!(old.contains("line 3"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
