//! container_runtime: running containers with crun or runc, one monitor each (blocking code).
//!
//! ```text
//!  create ─▶ bundle dir + overlay root + config.json ─▶ dash-monitor ─▶ runtime create
//!  start  ─▶ runtime start            status ─▶ exit file │ pid liveness │ runtime state
//!  stop   ─▶ kill TERM, wait grace, kill KILL, wait for the exit file
//!  remove ─▶ runtime delete -f, wait for the monitor, umount, cgroup dirs, bundle dir
//! ```
//! Every step is keyed by the container id and idempotent where it can be (remove is).
//!
//! This file holds [`ContainerRuntime`] itself (finding the runtimes), its configuration and
//! the types every operation shares; the operations are one file per concern:
//! `lifecycle.rs` (create, start, status, kill, stop, remove, list), `exec.rs`, `logs.rs` and
//! `stats.rs`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::cgroups::OwnCgroups;
use crate::error::RuntimeError;
use crate::monitor_protocol;
use crate::oci_cli::{self, OciCli};
use crate::sys;

mod exec;
mod lifecycle;
mod logs;
mod stats;

pub use exec::{TtyExec, TtyResizer};
pub use lifecycle::{ExitWatch, Prepared};
pub use logs::{RETIRED_LOG_MAX_AGE, RETIRED_LOGS_MAX_BYTES};
pub use stats::{MemoryFacts, Stats};

/// The exit code reported when the monitor died before it could record the real one.
pub const LOST_EXIT_CODE: i32 = monitor_protocol::LOST_EXIT_CODE;

const POLL: Duration = Duration::from_millis(5);

/// Bundle-dir marker file: which runtime created the container.
const RUNTIME_FILE: &str = "runtime";

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
    /// The cluster's DNS server: the container's only name server, with the search domain
    /// `dash`. None: the host's name servers (those not on loopback).
    pub dns: Option<std::net::IpAddr>,
    /// The capabilities of its processes (`CAP_…`); `None`: the default set
    /// (`dash_core::spec::DEFAULT_CAPABILITIES`).
    pub capabilities: Option<Vec<String>>,
    /// `linux.seccomp` as JSON (the OCI form, see `dash_core::seccomp::OciSeccomp`); `None`:
    /// no filter.
    pub seccomp: Option<String>,
    /// Secret and config files, on a tmpfs of the container's own (`crate::files`).
    pub files: Vec<crate::files::ContainerFile>,
    /// A user namespace of its own with this mapping (`crate::userns`); `None`: the host's.
    pub userns: Option<crate::userns::IdMap>,
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

/// Runs containers with crun or runc; cheap to share across threads (`&self` everywhere).
#[derive(Debug)]
pub struct ContainerRuntime {
    cfg: RuntimeConfig,
    kind: RuntimeKind,
    /// Every usable runtime, so containers created by the other one can still be managed.
    clis: Vec<OciCli>,
    crun_hybrid_workaround: bool,
    cgroups: std::sync::Arc<OwnCgroups>,
    nofile_hard: u64,
    /// A [`ContainerRuntime::prime_cgroup_migration`] is under way.
    priming: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// User namespaces carrying a range's mapping, by the range's first host id: made once
    /// per range (a helper process each time costs about a millisecond), kept for the next
    /// container that gets the same range.
    userns: crate::userns::Cache,
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
                        monitor_protocol::arg::PROBE_CRUN.into(),
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
            cgroups: std::sync::Arc::new(cgroups),
            nofile_hard,
            priming: Default::default(),
            userns: Default::default(),
        })
    }

    /// Gets the kernel's cgroup-migration lock warm in the background, so that the move of the
    /// container about to be started does not wait for it (see `OwnCgroups::prime_migration`):
    /// call it as a start begins. Returns at once; does nothing while one is under way.
    pub fn prime_cgroup_migration(&self) {
        use std::sync::atomic::Ordering;
        if self.priming.swap(true, Ordering::AcqRel) {
            return;
        }
        let cgroups = self.cgroups.clone();
        let priming = self.priming.clone();
        let spawned = std::thread::Builder::new()
            .name("cgroup-prime".into())
            .spawn(move || {
                if let Err(e) = cgroups.prime_migration() {
                    tracing::debug!(error = %e, "priming the cgroup migration lock");
                }
                priming.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.priming.store(false, Ordering::Release);
        }
    }

    /// The runtime new containers are created with.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join(id)
    }

    /// The tmpfs of container `id`'s secret and config files: under the runtime root (a
    /// tmpfs itself on a usual host), never in the data dir.
    fn files_dir(&self, id: &str) -> PathBuf {
        self.cfg.runtime_root.join("files").join(id)
    }

    /// Where the root file system of container `id` with a user namespace is mounted (its
    /// mapped root must be able to reach it: not in the data dir).
    fn userns_rootfs(&self, id: &str) -> PathBuf {
        self.cfg.runtime_root.join("rootfs").join(id)
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
