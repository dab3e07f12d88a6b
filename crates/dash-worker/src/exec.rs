//! Exec sessions in local replicas (`dash exec`): the runtime's `exec` with its stdio wired to
//! channels, or to a pseudo-terminal (`-t`: the command sees a terminal, one output stream).
//! Used by worker_api for remote callers and in process on a master's own node.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;

use dash_core::api::{ExecEvent, ExecRequest};
use dash_runtime::container::ContainerRuntime;
use tokio::sync::mpsc;

/// A running exec: send stdin chunks (None closes stdin), receive output until `Exit`.
pub struct ExecSession {
    pub stdin: mpsc::Sender<Option<Vec<u8>>>,
    pub events: mpsc::Receiver<ExecEvent>,
}

/// Starts `req` in replica `id`.
pub fn start(
    runtime: &Arc<ContainerRuntime>,
    id: &str,
    req: &ExecRequest,
) -> Result<ExecSession, String> {
    if req.command.is_empty() {
        return Err("exec needs a command, e.g. `dash exec REPLICA -- sh`".into());
    }
    let mut cmd = runtime
        .exec_command(id, &req.command)
        .map_err(|e| e.to_string())?;
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Vec<u8>>>(16);
    let (ev_tx, ev_rx) = mpsc::channel::<ExecEvent>(64);
    if req.tty {
        let pty =
            nix::pty::openpty(None, None).map_err(|e| format!("allocating a terminal: {e}"))?;
        let slave: OwnedFd = pty.slave;
        let master = std::fs::File::from(pty.master);
        cmd.stdin(Stdio::from(slave.try_clone().map_err(|e| e.to_string())?))
            .stdout(Stdio::from(slave.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(slave));
        let mut child = cmd.spawn().map_err(|e| format!("starting exec: {e}"))?;
        // The child holds the slave now; our copies are closed with `cmd`.
        drop(cmd);
        let mut reader = master.try_clone().map_err(|e| e.to_string())?;
        let mut writer = master;
        let out_tx = ev_tx.clone();
        let pump_out = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once the last slave user is gone: the end of output.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0
                    || out_tx
                        .blocking_send(ExecEvent::Stdout(buf[..n].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            while let Some(Some(data)) = stdin_rx.blocking_recv() {
                if writer.write_all(&data).is_err() {
                    break;
                }
            }
            // ^D for a closed stdin: the shell's end of input.
            let _ = writer.write_all(&[4]);
        });
        std::thread::spawn(move || {
            let code = child.wait().map(exit_code).unwrap_or(-1);
            let _ = pump_out.join();
            let _ = ev_tx.blocking_send(ExecEvent::Exit(code));
        });
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting exec: {e}"))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("exec: no stdio pipes".into());
        };
        let pump = |mut src: Box<dyn Read + Send>, tx: mpsc::Sender<ExecEvent>, err: bool| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = src.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = buf[..n].to_vec();
                    let ev = if err {
                        ExecEvent::Stderr(chunk)
                    } else {
                        ExecEvent::Stdout(chunk)
                    };
                    if tx.blocking_send(ev).is_err() {
                        break;
                    }
                }
            })
        };
        let out = pump(Box::new(stdout), ev_tx.clone(), false);
        let err = pump(Box::new(stderr), ev_tx.clone(), true);
        std::thread::spawn(move || {
            while let Some(Some(data)) = stdin_rx.blocking_recv() {
                if stdin.write_all(&data).is_err() {
                    break;
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
    }
    Ok(ExecSession {
        stdin: stdin_tx,
        events: ev_rx,
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
