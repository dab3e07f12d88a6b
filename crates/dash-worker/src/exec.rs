//! Exec sessions in local replicas (`dash exec`): the runtime's `exec` with its stdio wired to
//! channels, or with a terminal (`-t`). Used by worker_api for remote callers and in process
//! on a master's own node.
//!
//! The terminal is made by the runtime itself (`ContainerRuntime::exec_tty`, as containerd
//! does): it comes from the container's own devpts and is the command's controlling
//! terminal, so `tty` names it, shells get job control and ^C reaches the foreground job.
//! Dash pumps its master end and sets its size from the caller's terminal, at the start and
//! on every resize.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{ExecEvent, ExecInput, ExecRequest};
use dash_runtime::container::ContainerRuntime;
use tokio::sync::mpsc;

/// A running exec: send input (stdin, its end, resizes), receive output until `Exit`.
pub struct ExecSession {
    pub stdin: mpsc::Sender<ExecInput>,
    pub events: mpsc::Receiver<ExecEvent>,
}

/// How long output is still read after the command ended (a background job can keep the
/// terminal open; the session ends anyway).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Starts `req` in replica `id`.
pub async fn start(
    runtime: &Arc<ContainerRuntime>,
    id: &str,
    req: &ExecRequest,
) -> Result<ExecSession, String> {
    if req.command.is_empty() {
        return Err("exec needs a command, e.g. `dash exec REPLICA -- sh`".into());
    }
    if req.tty {
        let runtime = runtime.clone();
        let id = id.to_string();
        let req = req.clone();
        tokio::task::spawn_blocking(move || start_tty(&runtime, &id, &req))
            .await
            .map_err(|e| format!("exec: {e}"))?
    } else {
        start_piped(runtime, id, req)
    }
}

fn start_piped(
    runtime: &Arc<ContainerRuntime>,
    id: &str,
    req: &ExecRequest,
) -> Result<ExecSession, String> {
    let mut cmd = runtime
        .exec_command(id, &req.command)
        .map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting exec: {e}"))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("exec: no stdio pipes".into());
    };
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<ExecInput>(16);
    let (ev_tx, ev_rx) = mpsc::channel::<ExecEvent>(64);
    let out = pump(Box::new(stdout), ev_tx.clone(), ExecEvent::Stdout, None);
    let err = pump(Box::new(stderr), ev_tx.clone(), ExecEvent::Stderr, None);
    std::thread::spawn(move || {
        while let Some(input) = stdin_rx.blocking_recv() {
            match input {
                ExecInput::Stdin(data) => {
                    if stdin.write_all(&data).is_err() {
                        break;
                    }
                }
                ExecInput::StdinEof => break,
                ExecInput::Resize { .. } => {}
            }
        }
        drop(stdin);
    });
    std::thread::spawn(move || {
        let code = child.wait().map(exit_code).unwrap_or(-1);
        let _ = out.join();
        let _ = err.join();
        let _ = ev_tx.blocking_send(ExecEvent::Exit(code));
    });
    Ok(ExecSession {
        stdin: stdin_tx,
        events: ev_rx,
    })
}

fn start_tty(
    runtime: &Arc<ContainerRuntime>,
    id: &str,
    req: &ExecRequest,
) -> Result<ExecSession, String> {
    let size = (req.rows > 0 && req.cols > 0).then_some((req.rows, req.cols));
    let mut tty = runtime
        .exec_tty(id, &req.command, size)
        .map_err(|e| e.to_string())?;
    let keep = tty.keep_until_exit();
    let parts = (|| {
        let resizer = tty.resizer().map_err(|e| e.to_string())?;
        let reader = tty.terminal.try_clone().map_err(|e| e.to_string())?;
        let (cancel_rx, cancel_tx) = std::io::pipe().map_err(|e| e.to_string())?;
        let cancel_waiter = cancel_tx.try_clone().map_err(|e| e.to_string())?;
        let stderr = tty
            .child
            .stderr
            .take()
            .ok_or_else(|| "exec: no stderr pipe".to_string())?;
        Ok::<_, String>((resizer, reader, cancel_rx, cancel_tx, cancel_waiter, stderr))
    })();
    let (resizer, reader, cancel_rx, mut cancel_tx, mut cancel_waiter, runtime_stderr) = match parts
    {
        Ok(p) => p,
        Err(e) => {
            let _ = tty.child.kill();
            let _ = tty.child.wait();
            return Err(e);
        }
    };
    // The waiter takes the child out once it has exited: a hangup signals only a process
    // not reaped yet (never a reused pid).
    let child = Arc::new(std::sync::Mutex::new(Some(tty.child)));
    let mut writer = std::fs::File::from(tty.terminal);
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<ExecInput>(16);
    let (ev_tx, ev_rx) = mpsc::channel::<ExecEvent>(64);
    let (drained_tx, drained_rx) = std::sync::mpsc::channel();
    let out = pump_terminal(reader, cancel_rx, ev_tx.clone(), drained_tx);
    // What the runtime itself says (a command that does not exist, say).
    let err = pump(
        Box::new(runtime_stderr),
        ev_tx.clone(),
        ExecEvent::Stderr,
        None,
    );
    let hangup_child = child.clone();
    std::thread::spawn(move || {
        while let Some(input) = stdin_rx.blocking_recv() {
            match input {
                ExecInput::Stdin(data) => {
                    if writer.write_all(&data).is_err() {
                        break;
                    }
                }
                // ^D: the end of input for whatever reads the terminal.
                ExecInput::StdinEof => {
                    let _ = writer.write_all(&[4]);
                }
                // Under the lock, while the runtime is not reaped: runc hears of a resize by
                // a signal to its pid, which must not be a reused one.
                ExecInput::Resize { rows, cols } => {
                    if let Ok(mut guard) = hangup_child.lock()
                        && let Some(c) = guard.as_mut()
                        && matches!(c.try_wait(), Ok(None))
                    {
                        resizer.resize(rows, cols);
                    }
                }
            }
        }
        // The caller is gone: hang the terminal up, as closing an ssh session does. The
        // runtime passes SIGHUP on (runc); closing every copy of the master makes the kernel
        // send it to the command's session (crun).
        if let Ok(mut guard) = hangup_child.lock()
            && let Some(c) = guard.as_mut()
            && matches!(c.try_wait(), Ok(None))
            && let Ok(pid) = i32::try_from(c.id())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            );
        }
        let _ = cancel_tx.write_all(&[1]);
        drop(writer);
        drop(resizer);
    });
    std::thread::spawn(move || {
        let code = loop {
            let done = match child.lock() {
                Ok(mut guard) => match guard.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => {
                        guard.take();
                        Some(exit_code(status))
                    }
                    Some(Ok(None)) => None,
                    Some(Err(_)) | None => Some(-1),
                },
                Err(_) => Some(-1),
            };
            if let Some(code) = done {
                break code;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(keep);
        let _ = err.join();
        // A background job can keep the terminal open: its output is given a moment, then
        // the terminal is closed (which hangs the job up).
        if drained_rx.recv_timeout(DRAIN_AFTER_EXIT).is_err() {
            let _ = cancel_waiter.write_all(&[1]);
        }
        let _ = out.join();
        let _ = ev_tx.blocking_send(ExecEvent::Exit(code));
    });
    Ok(ExecSession {
        stdin: stdin_tx,
        events: ev_rx,
    })
}

/// Copies the terminal's output into events until it ends (EIO once its last user is gone)
/// or `cancel` becomes readable; then closes this copy of the terminal.
fn pump_terminal(
    terminal: std::os::fd::OwnedFd,
    cancel: std::io::PipeReader,
    tx: mpsc::Sender<ExecEvent>,
    done: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut file = std::fs::File::from(terminal);
        loop {
            let mut fds = [
                PollFd::new(&file, PollFlags::IN),
                PollFd::new(&cancel, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            let (term, cancelled) = (fds[0].revents(), fds[1].revents());
            if !cancelled.is_empty() {
                break;
            }
            if term.is_empty() {
                continue;
            }
            match file.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if tx
                        .blocking_send(ExecEvent::Stdout(buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
                _ => {
                    let _ = done.send(());
                    break;
                }
            }
        }
        drop(file);
    })
}

/// Copies `src` into events until it ends; says so on `done`.
fn pump(
    mut src: Box<dyn Read + Send>,
    tx: mpsc::Sender<ExecEvent>,
    wrap: fn(Vec<u8>) -> ExecEvent,
    done: Option<std::sync::mpsc::Sender<()>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = src.read(&mut buf) {
            if n == 0 || tx.blocking_send(wrap(buf[..n].to_vec())).is_err() {
                break;
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
