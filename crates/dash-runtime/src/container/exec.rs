//! container_runtime: running commands in a running container (`runtime exec`), with pipes
//! or with a terminal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::{ContainerRuntime, RuntimeKind};
use crate::console;
use crate::error::RuntimeError;
use crate::oci_cli;

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

impl ContainerRuntime {
    /// Runs `args` in the running container (`runtime exec`); the output is returned whatever
    /// the exit status (health checks look at it).
    pub fn exec(&self, id: &str, args: &[String]) -> Result<Output, RuntimeError> {
        let dir = self.exec_bundle(id, args)?;
        self.cli_for(&dir)?.exec(id, args)
    }

    /// The command line of `runtime exec` in the running container, not started: the caller
    /// gives it stdio (pipes, or a pseudo-terminal for `dash exec -t`).
    pub fn exec_command(
        &self,
        id: &str,
        args: &[String],
    ) -> Result<std::process::Command, RuntimeError> {
        let dir = self.exec_bundle(id, args)?;
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
        let dir = self.exec_bundle(id, args)?;
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

    /// The bundle of container `id`, for an exec of `args`: they must name a command.
    fn exec_bundle(&self, id: &str, args: &[String]) -> Result<PathBuf, RuntimeError> {
        let dir = self.existing_bundle(id)?;
        if args.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                id: id.to_owned(),
                reason: "exec needs a command".to_owned(),
            });
        }
        Ok(dir)
    }
}
