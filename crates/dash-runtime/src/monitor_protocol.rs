//! container_runtime: the monitor protocol, what the daemon (`monitor.rs`, the launcher) and
//! `dash-monitor` say to each other, written once for both sides.
//!
//! ```text
//!  launcher ── argv: Args::to_argv ─────────────▶ monitor: Args::parse
//!  launcher ◀─ stdout: Report::parse ──────────── monitor: Report::to_line
//!             "pid <monitor>"  then  "ok <init pid>" | "error <text>" (+ more lines to EOF)
//!  launcher ◀─ <exit file>: parse_exit_file ───── monitor: exit_file_text   "<code>\n"
//!  launcher ◀─ <log file>, rotated_log(<log>) ─── monitor
//! ```
//! std only: `dash-monitor` includes this file with `#[path]` so that it links neither
//! `dash-runtime` nor its dependencies. Each side uses its half (the launcher formats what the
//! monitor parses and the other way round); the tests here hold the halves together.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The monitor's arguments.
pub mod arg {
    /// The container's id, as the runtime knows it.
    pub const ID: &str = "--id";
    /// The OCI runtime binary (crun or runc).
    pub const RUNTIME: &str = "--runtime";
    /// The runtime's `--root`.
    pub const RUNTIME_ROOT: &str = "--runtime-root";
    /// The OCI bundle dir, also where `runtime create` runs.
    pub const BUNDLE: &str = "--bundle";
    /// Where the runtime writes the container init's pid.
    pub const PID_FILE: &str = "--pid-file";
    /// The container's output: `<RFC 3339 ms UTC> <stdout|stderr> <line>`, rotated to
    /// [`super::rotated_log`].
    pub const LOG_FILE: &str = "--log-file";
    /// Where the monitor records the exit code ([`super::exit_file_text`]).
    pub const EXIT_FILE: &str = "--exit-file";
    /// The log's rotation size in bytes; [`super::DEFAULT_LOG_MAX_BYTES`] when not given.
    pub const LOG_MAX_BYTES: &str = "--log-max-bytes";
    /// A switch: run `runtime create` behind the crun hybrid-cgroup workaround.
    pub const CRUN_HYBRID_WORKAROUND: &str = "--crun-hybrid-workaround";
    /// A switch: start the container too (`runtime run --detach` instead of `runtime create`):
    /// one runtime process instead of two, and no round trip through the daemon between them.
    pub const START: &str = "--start";
    /// `dash-monitor --probe-crun CRUN`: runs `CRUN --version` behind the hybrid-cgroup
    /// workaround, so the daemon learns whether crun works here.
    pub const PROBE_CRUN: &str = "--probe-crun";
}

/// What the monitor prints after an argument error.
pub const USAGE: &str = "usage: dash-monitor --id ID --runtime PATH --runtime-root DIR \
--bundle DIR --pid-file P --log-file L --exit-file E [--log-max-bytes N] \
[--crun-hybrid-workaround] [--start]";

/// The log's rotation size when the launcher gives none.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;

/// The exit code recorded when the real one is unknown.
pub const LOST_EXIT_CODE: i32 = -1;

/// The monitor's command line (the program name left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub id: OsString,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub bundle: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    pub exit_file: PathBuf,
    pub log_max_bytes: u64,
    pub crun_hybrid_workaround: bool,
    /// `runtime run --detach`: the container is started, not only created.
    pub start: bool,
}

impl Args {
    /// The arguments in their order; `--log-max-bytes` only when it is not the default.
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut argv = Vec::with_capacity(17);
        for (name, value) in [
            (arg::ID, self.id.as_os_str()),
            (arg::RUNTIME, self.runtime.as_os_str()),
            (arg::RUNTIME_ROOT, self.runtime_root.as_os_str()),
            (arg::BUNDLE, self.bundle.as_os_str()),
            (arg::PID_FILE, self.pid_file.as_os_str()),
            (arg::LOG_FILE, self.log_file.as_os_str()),
            (arg::EXIT_FILE, self.exit_file.as_os_str()),
        ] {
            argv.push(name.into());
            argv.push(value.to_owned());
        }
        if self.log_max_bytes != DEFAULT_LOG_MAX_BYTES {
            argv.push(arg::LOG_MAX_BYTES.into());
            argv.push(self.log_max_bytes.to_string().into());
        }
        if self.crun_hybrid_workaround {
            argv.push(arg::CRUN_HYBRID_WORKAROUND.into());
        }
        if self.start {
            argv.push(arg::START.into());
        }
        argv
    }

    /// Parses the arguments in any order; every path but `--runtime` must be absolute.
    pub fn parse(mut it: impl Iterator<Item = OsString>) -> Result<Args, String> {
        let mut id = None;
        let mut runtime = None;
        let mut runtime_root = None;
        let mut bundle = None;
        let mut pid_file = None;
        let mut log_file = None;
        let mut exit_file = None;
        let mut log_max_bytes = DEFAULT_LOG_MAX_BYTES;
        let mut crun_hybrid_workaround = false;
        let mut start = false;
        while let Some(name) = it.next() {
            let name = name.to_string_lossy().into_owned();
            if name == arg::CRUN_HYBRID_WORKAROUND {
                crun_hybrid_workaround = true;
                continue;
            }
            if name == arg::START {
                start = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            match name.as_str() {
                arg::ID => id = Some(value),
                arg::RUNTIME => runtime = Some(PathBuf::from(value)),
                arg::RUNTIME_ROOT => runtime_root = Some(PathBuf::from(value)),
                arg::BUNDLE => bundle = Some(PathBuf::from(value)),
                arg::PID_FILE => pid_file = Some(PathBuf::from(value)),
                arg::LOG_FILE => log_file = Some(PathBuf::from(value)),
                arg::EXIT_FILE => exit_file = Some(PathBuf::from(value)),
                arg::LOG_MAX_BYTES => {
                    log_max_bytes = value
                        .to_str()
                        .and_then(|v| v.parse().ok())
                        .filter(|v| *v > 0)
                        .ok_or_else(|| {
                            format!("{} {value:?}: not a positive number", arg::LOG_MAX_BYTES)
                        })?;
                }
                _ => return Err(format!("unknown argument {name}")),
            }
        }
        let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("{name} is required"));
        let absolute = |v: Option<PathBuf>, name: &str| {
            let p = need(v, name)?;
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(format!("{name} {} must be absolute", p.display()))
            }
        };
        Ok(Args {
            id: id.ok_or_else(|| format!("{} is required", arg::ID))?,
            runtime: need(runtime, arg::RUNTIME)?,
            runtime_root: absolute(runtime_root, arg::RUNTIME_ROOT)?,
            bundle: absolute(bundle, arg::BUNDLE)?,
            // crun resolves a relative --pid-file against the bundle: insist on absolute paths.
            pid_file: absolute(pid_file, arg::PID_FILE)?,
            log_file: absolute(log_file, arg::LOG_FILE)?,
            exit_file: absolute(exit_file, arg::EXIT_FILE)?,
            log_max_bytes,
            crun_hybrid_workaround,
            start,
        })
    }
}

/// One line of the monitor's report on its stdout. The launcher reads `Pid` first, then
/// `Created` or `Error`; the monitor lets go of its stdout after `Created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `pid <n>`: the detached monitor's own pid.
    Pid(i32),
    /// `ok <n>`: `runtime create` (or with `--start`, `runtime run --detach`) succeeded; the
    /// container init's pid.
    Created(i32),
    /// `error <text>`: the monitor failed; the lines that follow, up to EOF, belong to the text.
    Error(String),
}

impl Report {
    /// The line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Report::Pid(pid) => format!("pid {pid}\n"),
            Report::Created(pid) => format!("ok {pid}\n"),
            Report::Error(text) => format!("error {text}\n"),
        }
    }

    /// A line without its newline; `None` for anything else, a pid that is not positive
    /// included.
    pub fn parse(line: &str) -> Option<Report> {
        if let Some(pid) = line.strip_prefix("pid ") {
            parse_pid(pid).map(Report::Pid)
        } else if let Some(pid) = line.strip_prefix("ok ") {
            parse_pid(pid).map(Report::Created)
        } else {
            line.strip_prefix("error ")
                .map(|text| Report::Error(text.to_owned()))
        }
    }
}

/// A pid as the runtime's pid file and the report hold it: a positive number, white space
/// around it allowed.
pub fn parse_pid(s: &str) -> Option<i32> {
    s.trim().parse().ok().filter(|p: &i32| *p > 0)
}

/// What the exit file holds: the exit status, or 128 + the signal, or [`LOST_EXIT_CODE`].
pub fn exit_file_text(code: i32) -> String {
    format!("{code}\n")
}

/// The exit code in an exit file's text; `None` when garbled.
pub fn parse_exit_file(text: &str) -> Option<i32> {
    text.trim().parse().ok()
}

/// Where the monitor moves the log when it rotates it: `<log>.1`.
pub fn rotated_log(log: &Path) -> PathBuf {
    let mut rotated = log.as_os_str().to_owned();
    rotated.push(".1");
    PathBuf::from(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            id: "c1".into(),
            runtime: "/usr/bin/crun".into(),
            runtime_root: "/run/dash/runtime/crun".into(),
            bundle: "/data/containers/c1".into(),
            pid_file: "/data/containers/c1/pid".into(),
            log_file: "/data/logs/c1.log".into(),
            exit_file: "/data/containers/c1/exit".into(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            crun_hybrid_workaround: false,
            start: false,
        }
    }

    fn argv(s: &str) -> impl Iterator<Item = OsString> {
        s.split(' ')
            .map(OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn args_round_trip() {
        let plain = args();
        let argv = plain.to_argv();
        assert!(!argv.iter().any(|a| a == arg::LOG_MAX_BYTES
            || a == arg::CRUN_HYBRID_WORKAROUND
            || a == arg::START));
        assert_eq!(Args::parse(argv.into_iter()).unwrap(), plain);
        let all = Args {
            runtime: "crun".into(),
            log_max_bytes: 100,
            crun_hybrid_workaround: true,
            start: true,
            ..args()
        };
        assert_eq!(Args::parse(all.to_argv().into_iter()).unwrap(), all);
    }

    #[test]
    fn args_the_monitor_refuses() {
        let parsed = Args::parse(argv(
            "--crun-hybrid-workaround --id c1 --runtime runc --runtime-root /r --bundle /b \
             --pid-file /b/pid --log-file /b/log --exit-file /b/exit --log-max-bytes 100",
        ))
        .unwrap();
        assert_eq!(parsed.log_max_bytes, 100);
        assert!(parsed.crun_hybrid_workaround);
        for (line, error) in [
            (
                "--id c1 --runtime runc --runtime-root /r --bundle b --pid-file /p --log-file /l \
                 --exit-file /e",
                "--bundle b must be absolute",
            ),
            (
                "--id c1 --runtime runc --runtime-root /r --bundle /b --pid-file /p --log-file /l",
                "--exit-file is required",
            ),
            ("--runtime runc", "--id is required"),
            ("--id c1 --bogus x", "unknown argument --bogus"),
            ("--id", "--id needs a value"),
            (
                "--log-max-bytes 0",
                "--log-max-bytes \"0\": not a positive number",
            ),
        ] {
            assert_eq!(Args::parse(argv(line)).unwrap_err(), error, "{line}");
        }
    }

    #[test]
    fn reports_round_trip() {
        for report in [
            Report::Pid(42),
            Report::Created(7),
            Report::Error("crun create exited with 1: no | such file".into()),
            Report::Error(String::new()),
        ] {
            let line = report.to_line();
            let line = line.strip_suffix('\n').unwrap();
            assert_eq!(Report::parse(line), Some(report));
        }
        for bad in ["pid 0", "ok -3", "ok x", "pid", "error", "hello", ""] {
            assert_eq!(Report::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pids_are_positive_numbers() {
        assert_eq!(parse_pid("42\n"), Some(42));
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("-3"), None);
        assert_eq!(parse_pid("x"), None);
    }

    #[test]
    fn exit_file_round_trip() {
        for code in [0, 1, 137, LOST_EXIT_CODE] {
            assert_eq!(parse_exit_file(&exit_file_text(code)), Some(code));
        }
        assert_eq!(parse_exit_file(""), None);
        assert_eq!(parse_exit_file("1x"), None);
    }

    #[test]
    fn rotated_log_is_beside_the_log() {
        assert_eq!(
            rotated_log(Path::new("/data/logs/c1.log")),
            Path::new("/data/logs/c1.log.1")
        );
    }
}
