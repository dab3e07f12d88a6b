//! container_runtime: the crun/runc command line, the only place they are run from (except
//! `create`, which the monitor runs so that it becomes the container's subreaper).
//!
//! Every call has a timeout; a failure records argv, exit status and stderr.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::container::RuntimeKind;
use crate::error::RuntimeError;
use crate::sys;

/// Time allowed for start/kill/state/delete: they take 5–12 ms here (RECIPES.md).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `delete` is tried before a removal fails, and the pause after the n-th try.
const DELETE_ATTEMPTS: u32 = 6;
const DELETE_RETRY: Duration = Duration::from_millis(50);

/// One OCI runtime binary with its state root (`--root`).
#[derive(Debug, Clone)]
pub(crate) struct OciCli {
    pub kind: RuntimeKind,
    pub bin: PathBuf,
    pub root: PathBuf,
}

/// What `<runtime> state` says about a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct OciState {
    /// "creating", "created", "running", "paused" or "stopped".
    pub status: String,
    #[serde(default)]
    pub pid: i32,
}

impl OciCli {
    /// Looks for the runtime binary in $PATH and the usual sbin/bin dirs.
    pub(crate) fn find(kind: RuntimeKind) -> Option<PathBuf> {
        let name = kind.binary_name();
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_var)
            .chain(
                [
                    "/usr/local/sbin",
                    "/usr/local/bin",
                    "/usr/sbin",
                    "/usr/bin",
                    "/sbin",
                    "/bin",
                ]
                .into_iter()
                .map(PathBuf::from),
            )
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    fn argv(&self, args: &[&OsStr]) -> Vec<OsString> {
        let mut argv = vec![
            self.bin.clone().into_os_string(),
            OsString::from("--root"),
            self.root.clone().into_os_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_os_string()));
        argv
    }

    /// Runs the runtime and returns its output whatever its exit status.
    pub(crate) fn output(
        &self,
        args: &[&OsStr],
        timeout: Duration,
    ) -> Result<Output, RuntimeError> {
        let argv = self.argv(args);
        run_with_timeout(&argv, timeout)
    }

    /// Runs the runtime; a non-zero exit is an error.
    pub(crate) fn run(&self, args: &[&OsStr]) -> Result<Output, RuntimeError> {
        let argv = self.argv(args);
        let out = run_with_timeout(&argv, COMMAND_TIMEOUT)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(RuntimeError::OciCommand {
                argv: display_argv(&argv),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    pub(crate) fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run(&[OsStr::new("start"), OsStr::new(id)]).map(drop)
    }

    pub(crate) fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        self.run(&[OsStr::new("kill"), OsStr::new(id), OsStr::new(&sig)])
            .map(drop)
    }

    /// `delete -f`: kills a running container and removes its runtime state. A container the
    /// runtime does not know is not an error.
    ///
    /// Retried until the runtime's state is gone: crun's `delete -f` fails with "open pidfd:
    /// No such file or directory" when the container's process exits at that moment (seen
    /// once in 200 removals under load), and a plain `delete` of the now stopped container
    /// then works.
    pub(crate) fn delete_force(&self, id: &str) -> Result<(), RuntimeError> {
        let mut last = None;
        for attempt in 0..DELETE_ATTEMPTS {
            if attempt > 0 {
                thread::sleep(DELETE_RETRY * attempt);
            }
            let err = match self.run(&[OsStr::new("delete"), OsStr::new("-f"), OsStr::new(id)]) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if !self.state_dir(id).exists()
                || self.run(&[OsStr::new("delete"), OsStr::new(id)]).is_ok()
                || !self.state_dir(id).exists()
            {
                return Ok(());
            }
            tracing::debug!(container = id, attempt, error = %err, "delete failed; retrying");
            last = Some(err);
        }
        Err(last.expect("DELETE_ATTEMPTS > 0"))
    }

    /// `state`; `None` when the runtime has no such container.
    pub(crate) fn state(&self, id: &str) -> Result<Option<OciState>, RuntimeError> {
        let argv = self.argv(&[OsStr::new("state"), OsStr::new(id)]);
        let out = run_with_timeout(&argv, COMMAND_TIMEOUT)?;
        if !out.status.success() {
            if !self.state_dir(id).exists() {
                return Ok(None);
            }
            return Err(RuntimeError::OciCommand {
                argv: display_argv(&argv),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| RuntimeError::Parse {
                path: PathBuf::from(display_argv(&argv)),
                reason: e.to_string(),
            })
    }

    /// `exec <id> args…`, output captured whatever the exit status.
    pub(crate) fn exec(&self, id: &str, args: &[String]) -> Result<Output, RuntimeError> {
        let mut all: Vec<&OsStr> = vec![OsStr::new("exec"), OsStr::new(id)];
        all.extend(args.iter().map(OsStr::new));
        self.output(&all, COMMAND_TIMEOUT)
    }

    /// The argv of `exec <id> args…`, for callers that wire its stdio themselves
    /// (interactive `dash exec`).
    pub(crate) fn exec_argv(&self, id: &str, args: &[String]) -> Vec<OsString> {
        let mut all: Vec<&OsStr> = vec![OsStr::new("exec"), OsStr::new(id)];
        all.extend(args.iter().map(OsStr::new));
        self.argv(&all)
    }

    /// The argv of `exec --process <file> --tty [--console-socket <socket>] <id>`: the
    /// process (args, environment, terminal size) from an OCI process file. With a socket the
    /// terminal's master end goes to whoever listens there; without, the runtime copies
    /// between the terminal and its own stdio, which must be a terminal.
    pub(crate) fn exec_console_argv(
        &self,
        id: &str,
        process: &Path,
        socket: Option<&Path>,
    ) -> Vec<OsString> {
        let mut all: Vec<&OsStr> = vec![
            OsStr::new("exec"),
            OsStr::new("--process"),
            process.as_os_str(),
            OsStr::new("--tty"),
        ];
        if let Some(socket) = socket {
            all.extend([OsStr::new("--console-socket"), socket.as_os_str()]);
        }
        all.push(OsStr::new(id));
        self.argv(&all)
    }

    /// Where the runtime keeps the container's state (`<root>/<id>`).
    pub(crate) fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

pub(crate) fn display_argv(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` with stdin from /dev/null and captured output; kills it after `timeout`.
///
/// The wait happens on a helper thread so the caller can give up on time even when a
/// grandchild keeps the output pipes open.
pub(crate) fn run_with_timeout(
    argv: &[OsString],
    timeout: Duration,
) -> Result<Output, RuntimeError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RuntimeError::Spawn {
            argv: String::new(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    };
    let shown = display_argv(argv);
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RuntimeError::Spawn {
            argv: shown.clone(),
            source,
        })?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // The receiver may be gone after a timeout; nothing to do then.
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => {
            tracing::debug!(argv = %shown, status = %out.status, elapsed = ?started.elapsed(), "ran");
            Ok(out)
        }
        Ok(Err(source)) => Err(RuntimeError::Spawn {
            argv: shown,
            source,
        }),
        Err(_) => {
            // The helper thread reaps the child only after its pipes close, and sends right
            // after: the pid is ours unless the timeout fell into that instant.
            let _ = sys::send_signal(pid, libc::SIGKILL);
            Err(RuntimeError::Timeout {
                argv: shown,
                timeout,
            })
        }
    }
}
