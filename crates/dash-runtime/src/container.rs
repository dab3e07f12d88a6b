//! container_runtime: running containers with crun or runc, one monitor each (blocking code).
//!
//! ```text
//!  create ─▶ bundle dir + overlay root + config.json ─▶ dash-monitor ─▶ runtime create
//!  start  ─▶ runtime start            status ─▶ exit file │ pid liveness │ runtime state
//!  stop   ─▶ kill TERM, wait grace, kill KILL, wait for the exit file
//!  remove ─▶ runtime delete -f, wait for the monitor, umount, cgroup dirs, bundle dir
//! ```
//! Every step is keyed by the container id and idempotent where it can be (remove is).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use crate::bundle::{self, BundleParams};
use crate::cgroups::OwnCgroups;
use crate::console;
use crate::error::RuntimeError;
use crate::monitor::{self, Launch};
use crate::oci_cli::{self, OciCli};
use crate::rootfs;
use crate::sys;

/// The exit code reported when the monitor died before it could record the real one.
pub const LOST_EXIT_CODE: i32 = -1;
/// How long the log of a removed replica is kept.
pub const RETIRED_LOG_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How much the kept logs of removed replicas may take on a node, newest first.
pub const RETIRED_LOGS_MAX_BYTES: u64 = 64 << 20;

/// How long to wait after SIGKILL before `stop` gives up.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// The monitor drains the container's pipes (≤ 2 s) before it writes the exit file.
const EXIT_FILE_WAIT: Duration = Duration::from_secs(3);
/// How long `remove` waits for the monitor to finish before killing it.
const MONITOR_EXIT_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

/// Bundle-dir marker files of this module.
const RUNTIME_FILE: &str = "runtime";
const STARTED_FILE: &str = "started";

/// Which OCI runtime runs a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// crun (C, ~2× faster to create; needs a workaround on cgroup v1 hybrid hosts).
    Crun,
    /// runc (Go, the reference runtime).
    Runc,
}

impl RuntimeKind {
    pub(crate) fn binary_name(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runc => "runc",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "crun" => Some(RuntimeKind::Crun),
            "runc" => Some(RuntimeKind::Runc),
            _ => None,
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = RuntimeError;

    /// "crun" or "runc".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuntimeKind::parse(s).ok_or_else(|| RuntimeError::InvalidConfig {
            reason: format!("runtime {s:?} is neither \"crun\" nor \"runc\""),
        })
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}

/// Where containers live and how they are run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Per-container bundle dirs go here, e.g. `<data>/containers/<id>`.
    pub state_dir: PathBuf,
    /// State root of the runtimes, e.g. /run/dash/runtime: keeps Dash's containers apart
    /// from anyone else's. Each runtime gets its own `--root` below it (`crun/`, `runc/`):
    /// their state formats differ.
    pub runtime_root: PathBuf,
    /// The `dash-monitor` binary.
    pub monitor_bin: PathBuf,
    /// `None`: crun if it works here, else runc.
    pub prefer: Option<RuntimeKind>,
    /// Cgroup name segment(s) under the daemon's own cgroup, e.g. "dash".
    pub cgroup_parent: String,
}

/// What to run in one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container id: `[A-Za-z0-9_.-]`, at most 128 characters, not starting with '.' or '-'.
    pub id: String,
    /// Image layer dirs, bottom→top: the overlay's lower dirs.
    pub layer_dirs: Vec<PathBuf>,
    /// Command and arguments (no shell is implied).
    pub args: Vec<String>,
    /// `NAME=value` entries; a default PATH is added when missing.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    pub hostname: String,
    /// cgroup memory limit.
    pub memory_bytes: Option<u64>,
    /// CPU limit in thousandths of a CPU (CFS quota over a 100 ms period).
    pub cpu_millis: Option<u32>,
    /// Join this network namespace; `None` = a new, empty one.
    pub netns_path: Option<PathBuf>,
    /// Log rotation size (log → log.1); 0 = the monitor's default of 10 MiB.
    pub log_max_bytes: u64,
}

/// What a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Created, not started.
    Created,
    /// Running with this host pid.
    Running { pid: i32 },
    /// Exited with this code (exit status, or 128 + signal); [`LOST_EXIT_CODE`] when the
    /// monitor died before it could record it.
    Exited { code: i32 },
    /// No such container.
    Missing,
}

/// A command running in a container with a terminal ([`ContainerRuntime::exec_tty`]).
pub struct TtyExec {
    /// The runtime's `exec`: waits for the command, exits with its status.
    pub child: std::process::Child,
    /// The terminal's master end: the command's output, its input.
    pub terminal: std::os::fd::OwnedFd,
    /// Who must hear of a resize (runc in the foreground).
    notify: Option<u32>,
    /// Files the runtime may still read: keep until the runtime is done
    /// ([`TtyExec::keep_until_exit`]).
    scratch: Option<console::Scratch>,
}

impl TtyExec {
    /// What must live as long as the runtime's process (drop it after `child` exited).
    pub fn keep_until_exit(&mut self) -> Option<console::Scratch> {
        self.scratch.take()
    }

    /// A handle that resizes the terminal (it can move to another thread).
    pub fn resizer(&self) -> Result<TtyResizer, RuntimeError> {
        Ok(TtyResizer {
            terminal: self
                .terminal
                .try_clone()
                .map_err(|e| RuntimeError::io("sharing the terminal", e))?,
            notify: self.notify,
        })
    }
}

/// Resizes an exec's terminal.
pub struct TtyResizer {
    terminal: std::os::fd::OwnedFd,
    notify: Option<u32>,
}

impl TtyResizer {
    pub fn resize(&self, rows: u16, cols: u16) {
        set_winsize(&self.terminal, rows, cols);
        if let Some(pid) = self.notify.and_then(|p| i32::try_from(p).ok()) {
            // A reaped and reused pid would get a SIGWINCH, which nothing acts on by default.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGWINCH,
            );
        }
    }
}

/// Writes the OCI process of an exec with a terminal: the container's own process from its
/// bundle's config.json, with `args`, a terminal and its size.
fn exec_process_file(
    bundle: &Path,
    args: &[String],
    size: Option<(u16, u16)>,
    out: &Path,
) -> Result<(), RuntimeError> {
    let config_path = bundle.join("config.json");
    let config = fs::read(&config_path)
        .map_err(|e| RuntimeError::io(format!("reading {}", config_path.display()), e))?;
    let parse = |reason: String| RuntimeError::Parse {
        path: config_path.clone(),
        reason,
    };
    let mut config: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| parse(e.to_string()))?;
    let process = config
        .get_mut("process")
        .and_then(|p| p.as_object_mut())
        .ok_or_else(|| parse("no process object".into()))?;
    process.insert("args".into(), serde_json::json!(args));
    process.insert("terminal".into(), serde_json::Value::Bool(true));
    match size {
        Some((rows, cols)) => {
            process.insert(
                "consoleSize".into(),
                serde_json::json!({ "height": rows, "width": cols }),
            );
        }
        None => {
            process.remove("consoleSize");
        }
    }
    let bytes = serde_json::to_vec(process).map_err(|e| parse(e.to_string()))?;
    fs::write(out, bytes).map_err(|e| RuntimeError::io(format!("writing {}", out.display()), e))
}

/// A host-side pseudo-terminal, both ends close-on-exec (so that nothing else spawned at the
/// same time inherits them and keeps the terminal from hanging up): (master, slave).
fn host_pty() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), RuntimeError> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: rustix::io::Errno| RuntimeError::io("allocating a terminal", e.into());
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(failed)?;
    grantpt(&master).map_err(failed)?;
    unlockpt(&master).map_err(failed)?;
    let name = ptsname(&master, Vec::new()).map_err(failed)?;
    let path = std::path::PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.as_bytes()),
    );
    // std opens with O_CLOEXEC.
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| RuntimeError::io(format!("opening {}", path.display()), e))?;
    Ok((master, slave.into()))
}

fn set_winsize(fd: &std::os::fd::OwnedFd, rows: u16, cols: u16) {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    if let Err(e) = rustix::termios::tcsetwinsize(fd, size) {
        tracing::debug!(error = %e, "setting a terminal's size");
    }
}

/// Resource use of a running container, from its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Memory in use without inactive page cache (like `docker stats`).
    pub memory_bytes: u64,
    /// CPU time used, all CPUs.
    pub cpu_usage_ns: u64,
}

/// A container's exit as an async event: see [`ContainerRuntime::exit_watch`].
#[derive(Debug)]
pub struct ExitWatch(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

impl ExitWatch {
    /// Returns once the container's monitor has ended (so its exit is recorded), or at once if
    /// it has already (a pidfd stays readable).
    pub async fn exited(&self) {
        // Readiness is never cleared: an exited process stays exited.
        let _ = self.0.readable().await;
    }

    /// Whether the monitor has ended, without waiting.
    pub fn has_exited(&self) -> bool {
        use futures_util::FutureExt;
        self.exited().now_or_never().is_some()
    }
}

/// Runs containers with crun or runc; cheap to share across threads (`&self` everywhere).
#[derive(Debug)]
pub struct ContainerRuntime {
    cfg: RuntimeConfig,
    kind: RuntimeKind,
    /// Every usable runtime, so containers created by the other one can still be managed.
    clis: Vec<OciCli>,
    crun_hybrid_workaround: bool,
    cgroups: OwnCgroups,
    nofile_hard: u64,
}

impl ContainerRuntime {
    /// Checks the configuration, finds the runtimes and the daemon's own cgroups.
    ///
    /// crun counts as usable when it runs; on a cgroup v1 hybrid host it must also run under
    /// the mount-namespace workaround the monitor uses for `crun create`.
    pub fn new(cfg: RuntimeConfig) -> Result<Self, RuntimeError> {
        validate_cgroup_parent(&cfg.cgroup_parent)?;
        if !cfg.monitor_bin.is_file() {
            return Err(RuntimeError::MonitorMissing {
                path: cfg.monitor_bin.clone(),
            });
        }
        let mut cfg = cfg;
        cfg.state_dir = create_and_canonicalize(&cfg.state_dir)?;
        cfg.runtime_root = create_and_canonicalize(&cfg.runtime_root)?;
        cfg.monitor_bin = fs::canonicalize(&cfg.monitor_bin)
            .map_err(|e| RuntimeError::io(format!("resolving {}", cfg.monitor_bin.display()), e))?;

        let cgroups = OwnCgroups::read()?;
        let crun_hybrid_workaround = cgroups.crun_needs_hybrid_workaround();

        let mut clis = Vec::new();
        let mut tried = Vec::new();
        for kind in [RuntimeKind::Crun, RuntimeKind::Runc] {
            let Some(bin) = OciCli::find(kind) else {
                tried.push(format!("{kind}: not installed"));
                continue;
            };
            let probe = if kind == RuntimeKind::Crun && crun_hybrid_workaround {
                // The monitor owns the workaround; it probes crun behind it.
                oci_cli::run_with_timeout(
                    &[
                        cfg.monitor_bin.clone().into_os_string(),
                        "--probe-crun".into(),
                        bin.clone().into_os_string(),
                    ],
                    oci_cli::COMMAND_TIMEOUT,
                )
                .map_err(|e| format!("{kind}: the hybrid-cgroup workaround fails: {e}"))
            } else {
                oci_cli::run_with_timeout(
                    &[bin.clone().into_os_string(), "--version".into()],
                    oci_cli::COMMAND_TIMEOUT,
                )
                .map_err(|e| format!("{kind}: {e}"))
            };
            match probe {
                Ok(out) if out.status.success() => clis.push(OciCli {
                    kind,
                    bin,
                    root: cfg.runtime_root.join(kind.binary_name()),
                }),
                Ok(out) => tried.push(format!(
                    "{kind}: `{} --version` exited with {}",
                    bin.display(),
                    out.status
                )),
                Err(e) => tried.push(e),
            }
        }
        let kind = match cfg.prefer {
            Some(k) => clis.iter().find(|c| c.kind == k).map(|c| c.kind),
            None => clis.first().map(|c| c.kind),
        }
        .ok_or_else(|| RuntimeError::NoRuntime {
            tried: match cfg.prefer {
                Some(k) => format!("{k} was asked for; {}", tried.join("; ")),
                None => tried.join("; "),
            },
        })?;
        for cli in &clis {
            fs::create_dir_all(&cli.root)
                .map_err(|e| RuntimeError::io(format!("creating {}", cli.root.display()), e))?;
        }
        let nofile_hard =
            sys::nofile_hard_limit().map_err(|e| RuntimeError::io("reading RLIMIT_NOFILE", e))?;
        tracing::debug!(%kind, crun_hybrid_workaround, anchor = %cgroups.anchor, "container runtime ready");
        Ok(ContainerRuntime {
            cfg,
            kind,
            clis,
            crun_hybrid_workaround,
            cgroups,
            nofile_hard,
        })
    }

    /// The runtime new containers are created with.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// Creates a container (not started): bundle dir, overlay root, config.json, monitor.
    /// On failure everything created so far is removed again.
    #[tracing::instrument(level = "debug", skip_all, fields(container = %spec.id))]
    pub fn create(&self, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        validate_id(&spec.id)?;
        bundle::validate(spec)?;
        let dir = self.bundle_dir(&spec.id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists {
                    id: spec.id.clone(),
                });
            }
            Err(e) => return Err(RuntimeError::io(format!("creating {}", dir.display()), e)),
        }
        let result = self.create_in(spec, &dir);
        if let Err(e) = &result {
            tracing::debug!(error = %e, "create failed, cleaning up");
            if let Err(cleanup) = self.remove(&spec.id) {
                tracing::warn!(container = %spec.id, error = %cleanup, "cleanup after a failed create");
            }
        }
        result
    }

    fn create_in(&self, spec: &ContainerSpec, dir: &Path) -> Result<(), RuntimeError> {
        let cli = self.cli(self.kind)?;
        write_file(&dir.join(RUNTIME_FILE), self.kind.binary_name())?;
        let rootfs = rootfs::mount(dir, &spec.layer_dirs)?;
        let params = BundleParams {
            rootfs: &rootfs,
            bundle: dir,
            cgroups_path: self
                .cgroups
                .cgroups_path(self.kind, &self.cfg.cgroup_parent, &spec.id),
            nofile_hard: self.nofile_hard,
        };
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        bundle::write(spec, &params, &host_resolv)?;
        let log_file = self.log_path(&spec.id);
        if let Some(parent) = log_file.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| RuntimeError::io(format!("creating {}", parent.display()), e))?;
        }
        let created = monitor::launch(&Launch {
            monitor_bin: &self.cfg.monitor_bin,
            id: &spec.id,
            runtime: &cli.bin,
            runtime_root: &cli.root,
            bundle: dir,
            log_file: &log_file,
            log_max_bytes: spec.log_max_bytes,
            crun_hybrid_workaround: self.kind == RuntimeKind::Crun && self.crun_hybrid_workaround,
        })?;
        tracing::debug!(
            monitor_pid = created.monitor_pid,
            pid = created.container_pid,
            "created"
        );
        Ok(())
    }

    /// Starts a created container; returns its host pid.
    pub fn start(&self, id: &str) -> Result<i32, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        self.cli_for(&dir)?.start(id)?;
        write_file(&dir.join(STARTED_FILE), "")?;
        monitor::read_pid(&dir.join(monitor::PID_FILE)).ok_or_else(|| RuntimeError::Parse {
            path: dir.join(monitor::PID_FILE),
            reason: "no pid".to_owned(),
        })
    }

    /// What the container is doing, from its exit file, its pid and, for a container not
    /// known to be started, the runtime's state.
    pub fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        validate_id(id)?;
        let dir = self.bundle_dir(id);
        if !dir.is_dir() {
            return Ok(ContainerStatus::Missing);
        }
        if let Some(code) = monitor::read_exit_code(&dir) {
            return Ok(ContainerStatus::Exited { code });
        }
        let monitor_pid = monitor::monitor_alive(&dir);
        let Some(pid) = monitor::read_pid(&dir.join(monitor::PID_FILE)) else {
            // No pid: create is still running, or it died with the daemon half-way.
            return Ok(if monitor_pid.is_some() {
                ContainerStatus::Created
            } else {
                ContainerStatus::Exited {
                    code: LOST_EXIT_CODE,
                }
            });
        };
        if init_alive(pid, monitor_pid) {
            if dir.join(STARTED_FILE).exists() {
                return Ok(ContainerStatus::Running { pid });
            }
            // Maybe started by a daemon that died before it wrote the marker.
            let state = self.cli_for(&dir)?.state(id)?;
            return Ok(match state {
                Some(s) if s.status == "running" || s.status == "paused" => {
                    ContainerStatus::Running { pid }
                }
                _ => ContainerStatus::Created,
            });
        }
        // The init is gone; its monitor writes the exit file once it has drained the pipes.
        let code = if monitor_pid.is_some() {
            wait_for(EXIT_FILE_WAIT, || monitor::read_exit_code(&dir))
        } else {
            monitor::read_exit_code(&dir)
        };
        Ok(ContainerStatus::Exited {
            code: code.unwrap_or(LOST_EXIT_CODE),
        })
    }

    /// Wakes its holder once the container has exited and its exit code is recorded (a pidfd
    /// of its monitor, in the tokio reactor: call it within a tokio runtime). `None` when the
    /// container has no live monitor: it exited already, or never started.
    pub fn exit_watch(&self, id: &str) -> Result<Option<ExitWatch>, RuntimeError> {
        validate_id(id)?;
        let Some(fd) = monitor::monitor_pidfd(&self.bundle_dir(id)) else {
            return Ok(None);
        };
        let fd = sys::register_pidfd(fd)
            .map_err(|e| RuntimeError::io("watching the monitor's pidfd", e))?;
        Ok(Some(ExitWatch(fd)))
    }

    /// Sends `signal` to the container's init through the runtime.
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let dir = self.existing_bundle(id)?;
        match self.status(id)? {
            ContainerStatus::Missing => Err(RuntimeError::NotFound { id: id.to_owned() }),
            ContainerStatus::Exited { .. } => Err(RuntimeError::NotRunning { id: id.to_owned() }),
            ContainerStatus::Created | ContainerStatus::Running { .. } => {
                match self.cli_for(&dir)?.kill(id, signal) {
                    Ok(()) => Ok(()),
                    // It exited in between.
                    Err(_) if matches!(self.status(id)?, ContainerStatus::Exited { .. }) => {
                        Err(RuntimeError::NotRunning { id: id.to_owned() })
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; returns once the exit code is recorded.
    /// A container that already exited is fine.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.existing_bundle(id)?;
        for (signal, wait) in [(libc::SIGTERM, grace), (libc::SIGKILL, KILL_WAIT)] {
            match self.kill(id, signal) {
                Ok(()) | Err(RuntimeError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
            if wait_for(wait, || exited(&dir).then_some(())).is_some() {
                return Ok(());
            }
            tracing::debug!(container = id, signal, ?wait, "still running");
        }
        Err(RuntimeError::StopTimeout {
            id: id.to_owned(),
            waited: KILL_WAIT,
        })
    }

    /// Removes everything of a container: runtime state (killing it if running), monitor,
    /// overlay mount, cgroup dirs in every hierarchy, bundle dir. Idempotent.
    #[tracing::instrument(level = "debug", skip(self))]
    pub fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        let dir = self.bundle_dir(id);
        let remove_err = |step: &str, source: io::Error| RuntimeError::Remove {
            id: id.to_owned(),
            step: step.to_owned(),
            source,
        };
        // 1. Runtime state, in whichever runtime has it.
        for cli in &self.clis {
            if cli.state_dir(id).exists() {
                cli.delete_force(id)?;
            }
        }
        // 2. The monitor exits once it has reaped the init and drained its pipes.
        if let Some(pid) = monitor::monitor_alive(&dir)
            && wait_for(MONITOR_EXIT_WAIT, || {
                monitor::monitor_alive(&dir).is_none().then_some(())
            })
            .is_none()
        {
            tracing::warn!(
                container = id,
                pid,
                "monitor still alive after delete, killing it"
            );
            let _ = sys::send_signal(pid, libc::SIGKILL);
        }
        // 3. Root file system: never remove the dir while anything is mounted in it.
        if dir.exists() {
            rootfs::unmount(&dir).map_err(|e| remove_err("unmounting the root file system", e))?;
        }
        // 4. Cgroup dirs, including parents the runtime left behind.
        self.cgroups
            .remove_container(&self.cfg.cgroup_parent, id)
            .map_err(|e| remove_err("removing cgroup dirs", e))?;
        // 5. Bundle dir (logs included).
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(remove_err("removing the bundle dir", e)),
        }
    }

    /// Ids of all containers with a bundle dir or runtime state, sorted.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let entries = fs::read_dir(&self.cfg.state_dir).map_err(|e| {
            RuntimeError::io(format!("listing {}", self.cfg.state_dir.display()), e)
        })?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                RuntimeError::io(format!("listing {}", self.cfg.state_dir.display()), e)
            })?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
                && validate_id(name).is_ok()
            {
                ids.push(name.to_owned());
            }
        }
        // Runtime state without a bundle (a removal cut short) is a container too.
        for cli in &self.clis {
            if let Ok(entries) = fs::read_dir(&cli.root) {
                for entry in entries.flatten() {
                    if let Some(name) = entry.file_name().to_str()
                        && validate_id(name).is_ok()
                        && entry.file_type().is_ok_and(|t| t.is_dir())
                    {
                        ids.push(name.to_owned());
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The container's log: `<timestamp> <stdout|stderr> <line>` per line; the previous
    /// part is at the same path + ".1".
    /// The container's log (rotated to `<log>.1`). It lives beside the bundles, in
    /// `<state_dir>/../logs/`, so that it outlives restarts of the container in place;
    /// [`ContainerRuntime::retire_logs`] moves it aside when the replica is gone for good.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.cfg
            .state_dir
            .with_file_name("logs")
            .join(format!("{id}.{}", monitor::LOG_FILE))
    }

    /// Complete lines of replica `id`'s log from byte `from` (at most 4 MiB), and the offset
    /// after them, for readers that follow the log by polling. A file shorter than `from` was
    /// rotated: it is read from the start. A missing log reads as empty.
    /// A removed replica's log is read from where [`ContainerRuntime::retire_logs`] kept it.
    pub fn read_log(&self, id: &str, from: u64) -> (Vec<u8>, u64) {
        use std::io::{Read, Seek, SeekFrom};
        let opened = std::fs::File::open(self.log_path(id))
            .or_else(|_| std::fs::File::open(self.retired_log_path(id)));
        let Ok(mut f) = opened else {
            return (Vec::new(), from);
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = if len < from { 0 } else { from };
        if f.seek(SeekFrom::Start(start)).is_err() {
            return (Vec::new(), from);
        }
        let mut buf = Vec::new();
        if f.take(4 << 20).read_to_end(&mut buf).is_err() {
            return (Vec::new(), from);
        }
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(complete);
        (buf, start + complete as u64)
    }

    /// Where a removed replica's log is kept: `<logs>/removed/<id>.log`.
    fn retired_log_path(&self, id: &str) -> PathBuf {
        let live = self.log_path(id);
        let name = live.file_name().map(ToOwned::to_owned).unwrap_or_default();
        live.with_file_name("removed").join(name)
    }

    /// Keeps a removed replica's log for diagnosis (`dash logs --previous`, `dash logs
    /// <replica>`): moved aside (its rotated part is dropped), then the kept logs are trimmed
    /// to the newest [`RETIRED_LOGS_MAX_BYTES`] and to [`RETIRED_LOG_MAX_AGE`]. Idempotent.
    pub fn retire_logs(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        let live = self.log_path(id);
        let kept = self.retired_log_path(id);
        if live.exists() {
            if let Some(dir) = kept.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
            }
            fs::rename(&live, &kept).map_err(|e| {
                RuntimeError::io(
                    format!("moving {} to {}", live.display(), kept.display()),
                    e,
                )
            })?;
        }
        self.remove_logs(id)?;
        self.trim_retired_logs();
        Ok(())
    }

    /// Drops kept logs older than [`RETIRED_LOG_MAX_AGE`], then the oldest until the rest fit in
    /// [`RETIRED_LOGS_MAX_BYTES`].
    fn trim_retired_logs(&self) {
        let Some(dir) = self.retired_log_path("x").parent().map(Path::to_path_buf) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0));
        let mut total = 0u64;
        for (modified, len, path) in files {
            total += len;
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age > RETIRED_LOG_MAX_AGE);
            if old || total > RETIRED_LOGS_MAX_BYTES {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Deletes a container's log files; idempotent.
    pub fn remove_logs(&self, id: &str) -> Result<(), RuntimeError> {
        let log = self.log_path(id);
        let rotated = PathBuf::from(format!("{}.1", log.display()));
        for p in [log, rotated] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RuntimeError::io(format!("removing {}", p.display()), e)),
            }
        }
        Ok(())
    }

    /// Runs `args` in the running container (`runtime exec`); the output is returned whatever
    /// the exit status (health checks look at it).
    pub fn exec(&self, id: &str, args: &[String]) -> Result<Output, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        if args.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                id: id.to_owned(),
                reason: "exec needs a command".to_owned(),
            });
        }
        self.cli_for(&dir)?.exec(id, args)
    }

    /// The command line of `runtime exec` in the running container, not started: the caller
    /// gives it stdio (pipes, or a pseudo-terminal for `dash exec -t`).
    pub fn exec_command(
        &self,
        id: &str,
        args: &[String],
    ) -> Result<std::process::Command, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        if args.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                id: id.to_owned(),
                reason: "exec needs a command".to_owned(),
            });
        }
        let argv = self.cli_for(&dir)?.exec_argv(id, args);
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        Ok(cmd)
    }

    /// Starts `args` in the running container with a terminal the runtime makes inside it:
    /// from the container's devpts, the command's stdio and controlling terminal, sized
    /// `size` (rows, columns) before the command starts when given. The process is the
    /// container's own (environment, user, capabilities) with these args, from an OCI
    /// process file. Returns the runtime's process (it exits with the command's status; its
    /// stderr is piped and carries the runtime's own errors) and a terminal to read the
    /// output from, write the input to and resize.
    ///
    /// crun sends the terminal's master end over a console socket. runc only does that when
    /// it detaches, and then it cannot report the exit status; in the foreground it copies
    /// between the container's terminal and its own stdio, so it gets a host-side
    /// pseudo-terminal as stdio, and a SIGWINCH after each resize of that one.
    pub fn exec_tty(
        &self,
        id: &str,
        args: &[String],
        size: Option<(u16, u16)>,
    ) -> Result<TtyExec, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        if args.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                id: id.to_owned(),
                reason: "exec needs a command".to_owned(),
            });
        }
        let cli = self.cli_for(&dir)?;
        let spawn = |argv: &[std::ffi::OsString], stdio: Option<&std::os::fd::OwnedFd>| {
            let shown = oci_cli::display_argv(argv);
            let mut cmd = std::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]).stderr(std::process::Stdio::piped());
            match stdio {
                Some(fd) => {
                    let io = |fd: &std::os::fd::OwnedFd| {
                        fd.try_clone()
                            .map(std::process::Stdio::from)
                            .map_err(|e| RuntimeError::io("sharing the terminal", e))
                    };
                    cmd.stdin(io(fd)?).stdout(io(fd)?);
                }
                None => {
                    cmd.stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null());
                }
            }
            let child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
                argv: shown.clone(),
                source,
            })?;
            Ok::<_, RuntimeError>((child, shown))
        };
        match self.kind_of(&dir) {
            RuntimeKind::Crun => {
                let socket = console::ConsoleSocket::bind()?;
                let process = socket.scratch.dir.join("process.json");
                exec_process_file(&dir, args, size, &process)?;
                let argv = cli.exec_console_argv(id, &process, Some(&socket.path));
                let (mut child, shown) = spawn(&argv, None)?;
                match socket.receive(&mut child, &shown) {
                    Ok(terminal) => Ok(TtyExec {
                        child,
                        terminal,
                        notify: None,
                        // crun has read the process file before it sends the terminal.
                        scratch: None,
                    }),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        Err(e)
                    }
                }
            }
            RuntimeKind::Runc => {
                let scratch = console::Scratch::new()?;
                let process = scratch.dir.join("process.json");
                exec_process_file(&dir, args, size, &process)?;
                let (master, slave) = host_pty()?;
                if let Some((rows, cols)) = size {
                    set_winsize(&master, rows, cols);
                }
                let argv = cli.exec_console_argv(id, &process, None);
                let (child, _) = spawn(&argv, Some(&slave))?;
                drop(slave);
                let notify = Some(child.id());
                Ok(TtyExec {
                    child,
                    terminal: master,
                    notify,
                    // runc reads the process file some time after it started.
                    scratch: Some(scratch),
                })
            }
        }
    }

    /// Memory and CPU use from the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        let kind = self.kind_of(&dir);
        let (memory_bytes, cpu_usage_ns) = self.cgroups.stats(kind, &self.cfg.cgroup_parent, id)?;
        Ok(Stats {
            memory_bytes,
            cpu_usage_ns,
        })
    }

    /// The pid of the container's monitor, while it runs.
    pub fn monitor_pid(&self, id: &str) -> Option<i32> {
        validate_id(id).ok()?;
        monitor::monitor_alive(&self.bundle_dir(id))
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join(id)
    }

    fn existing_bundle(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        validate_id(id)?;
        let dir = self.bundle_dir(id);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(RuntimeError::NotFound { id: id.to_owned() })
        }
    }

    fn cli(&self, kind: RuntimeKind) -> Result<&OciCli, RuntimeError> {
        self.clis
            .iter()
            .find(|c| c.kind == kind)
            .ok_or_else(|| RuntimeError::NoRuntime {
                tried: format!("{kind} is not usable here"),
            })
    }

    /// The runtime that created the container in `dir`.
    fn kind_of(&self, dir: &Path) -> RuntimeKind {
        fs::read_to_string(dir.join(RUNTIME_FILE))
            .ok()
            .and_then(|s| RuntimeKind::parse(&s))
            .unwrap_or(self.kind)
    }

    fn cli_for(&self, dir: &Path) -> Result<&OciCli, RuntimeError> {
        self.cli(self.kind_of(dir))
    }
}

/// Whether the container init `pid` still runs. While its monitor lives the init must be
/// the monitor's child: another parent means the pid was reused.
fn init_alive(pid: i32, monitor_pid: Option<i32>) -> bool {
    match monitor::proc_state(pid) {
        None | Some(('Z', _)) => false,
        Some((_, ppid)) => monitor_pid.is_none_or(|m| m == ppid),
    }
}

/// Exited for `stop`: the exit code is recorded, or nobody is left to record it.
fn exited(dir: &Path) -> bool {
    if monitor::read_exit_code(dir).is_some() {
        return true;
    }
    let monitor_pid = monitor::monitor_alive(dir);
    if monitor_pid.is_some() {
        return false;
    }
    monitor::read_pid(&dir.join(monitor::PID_FILE)).is_none_or(|pid| !init_alive(pid, None))
}

/// Polls `f` until it returns `Some` or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), RuntimeError> {
    fs::write(path, text).map_err(|e| RuntimeError::io(format!("writing {}", path.display()), e))
}

fn create_and_canonicalize(dir: &Path) -> Result<PathBuf, RuntimeError> {
    fs::create_dir_all(dir)
        .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
    fs::canonicalize(dir).map_err(|e| RuntimeError::io(format!("resolving {}", dir.display()), e))
}

/// Ids become dir names, cgroup names and runtime ids.
pub(crate) fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let invalid = |reason| RuntimeError::InvalidId {
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() || id.len() > 128 {
        return Err(invalid("must be 1 to 128 characters"));
    }
    if id.starts_with(['.', '-']) {
        return Err(invalid("must not start with '.' or '-'"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(invalid("may hold only letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

/// Checks a cgroup parent: relative name segments of letters, digits, `_`, `.` and `-`.
pub fn validate_cgroup_parent(parent: &str) -> Result<(), RuntimeError> {
    let ok = !parent.is_empty()
        && parent.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidConfig {
            reason: format!(
                "cgroup_parent {parent:?} must be relative name segments like \"dash\""
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["c1", "web-1.a_b", "A9"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a b", "..", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroup_parents() {
        assert!(validate_cgroup_parent("dash").is_ok());
        assert!(validate_cgroup_parent("dash/test-1").is_ok());
        for bad in ["", "/dash", "dash/", "a/../b", "a b"] {
            assert!(validate_cgroup_parent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn runtime_is_shareable_and_kinds_parse() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ContainerRuntime>();
        assert_eq!("crun".parse::<RuntimeKind>().unwrap(), RuntimeKind::Crun);
        assert_eq!("runc".parse::<RuntimeKind>().unwrap(), RuntimeKind::Runc);
        assert!("youki".parse::<RuntimeKind>().is_err());
    }

    #[test]
    fn wait_for_polls_until_ready() {
        let mut n = 0;
        assert_eq!(
            wait_for(Duration::from_secs(1), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(wait_for(Duration::from_millis(10), || None::<()>), None);
    }
}
