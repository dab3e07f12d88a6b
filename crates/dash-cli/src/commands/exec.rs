//! `dash exec`: runs a command in a replica over an upgraded admin API connection carrying
//! exec frames (see `dash_core::api::exec_frame`). With `-t` on a terminal, the local terminal
//! is put in raw mode for the session (keys go to the remote terminal as typed) and restored
//! after, and the remote terminal gets its size, at the start and on every SIGWINCH.

use std::io::Write;

use clap::Args;
use dash_core::api::{ExecEvent, ExecInput, exec_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;

/// `dash exec [-i] [-t] REPLICA -- COMMAND…`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open and send it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (raw keyboard input; one output stream).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The replica's id, as `dash ps` shows it.
    pub replica: String,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// Runs `dash exec` and exits with the command's status (1 if the session failed).
pub async fn run(client: &Client, args: ExecArgs) -> anyhow::Result<()> {
    let ExecArgs {
        interactive,
        tty,
        replica,
        command,
    } = args;
    // Exits here, error or not: returning would wait for the blocking read of stdin
    // that tokio may still have in flight.
    match session(client, &replica, command, interactive, tty).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Raw mode on stdin while alive.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter(tty: bool) -> RawMode {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        if !tty {
            return RawMode(None);
        }
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// The size of the terminal on stdin (or stdout), if there is one.
fn terminal_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdin())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdout()))
        .ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// Runs the session; returns the command's exit status.
async fn session(
    client: &Client,
    replica: &str,
    command: Vec<String>,
    interactive: bool,
    tty: bool,
) -> anyhow::Result<i32> {
    let json = serde_json::to_string(&command)?;
    let mut path = format!(
        "/v1/replicas/{}/exec?command={}&tty={tty}",
        crate::encode(replica),
        crate::encode(&json)
    );
    let size = if tty { terminal_size() } else { None };
    if let Some((rows, cols)) = size {
        path.push_str(&format!("&rows={rows}&cols={cols}"));
    }
    let io = client.upgrade(&path, "dash-exec").await?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let _raw = RawMode::enter(tty && interactive);
    // One writer for the frames of stdin and of resizes.
    let (frames, mut outgoing) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
        // Keep the write half open: closing it could end the session before the output.
        std::future::pending::<()>().await;
    });
    let stdin_frames = frames.clone();
    let input = tokio::spawn(async move {
        if interactive {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let frame = exec_frame::encode_input(&ExecInput::Stdin(buf[..n].to_vec()));
                        if stdin_frames.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        // Without -i: no input at all. Pipes are closed at once; a terminal is left alone
        // (as docker does: an end of input typed into it would end a shell).
        if interactive || !tty {
            let _ = stdin_frames
                .send(exec_frame::encode_input(&ExecInput::StdinEof))
                .await;
        }
    });
    // The remote terminal follows the local one's size.
    let resizes = tokio::spawn(async move {
        if size.is_none() {
            return;
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = terminal_size() {
                let frame = exec_frame::encode_input(&ExecInput::Resize { rows, cols });
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let code = 'outer: loop {
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            anyhow::bail!("the server ended the exec session without an exit status");
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some((kind, payload)) =
            exec_frame::decode(&mut buf).map_err(anyhow::Error::msg)?
        {
            match exec_frame::to_event(kind, payload) {
                Some(ExecEvent::Stdout(d)) => {
                    let mut out = std::io::stdout();
                    out.write_all(&d)?;
                    out.flush()?;
                }
                Some(ExecEvent::Stderr(d)) => {
                    let mut err = std::io::stderr();
                    err.write_all(&d)?;
                    err.flush()?;
                }
                Some(ExecEvent::Exit(code)) => break 'outer code,
                Some(ExecEvent::Error(m)) => anyhow::bail!("exec: {m}"),
                None => {}
            }
        }
    };
    input.abort();
    resizes.abort();
    writer.abort();
    Ok(code)
}
