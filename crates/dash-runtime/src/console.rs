//! The OCI console socket: with `--tty --console-socket PATH`, crun and runc make the
//! pseudo-terminal inside the container (from its devpts; the process's controlling
//! terminal) and send its master end, as one SCM_RIGHTS file descriptor, to whoever listens
//! on PATH.

use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::RuntimeError;

/// How long the runtime may take to hand over the terminal.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A private directory for an exec's files (its OCI process file, the console socket),
/// removed on drop.
pub struct Scratch {
    pub(crate) dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new() -> Result<Scratch, RuntimeError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Short: a socket's path is limited to 107 bytes.
        let dir = std::env::temp_dir().join(format!(
            "dash-console-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A listening socket in a directory of its own; both are removed on drop.
pub(crate) struct ConsoleSocket {
    /// Removed with the socket: a place for files that live as long as it (process.json).
    pub(crate) scratch: Scratch,
    pub(crate) path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub(crate) fn bind() -> Result<ConsoleSocket, RuntimeError> {
        let scratch = Scratch::new()?;
        let path = scratch.dir.join("sock");
        let listener = UnixListener::bind(&path)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| RuntimeError::io(format!("listening on {}", path.display()), e))?;
        Ok(ConsoleSocket {
            scratch,
            path,
            listener,
        })
    }

    /// Waits for the runtime `child` to connect and send the terminal. If it exits first,
    /// the error carries what it wrote to its stderr (which must be piped).
    pub(crate) fn receive(&self, child: &mut Child, argv: &str) -> Result<OwnedFd, RuntimeError> {
        let deadline = Instant::now() + HANDOVER_TIMEOUT;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return receive_fd(&stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(RuntimeError::io("accepting on the console socket", e)),
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut stderr);
                }
                return Err(RuntimeError::OciCommand {
                    argv: argv.to_owned(),
                    status,
                    stderr: stderr.trim().to_owned(),
                });
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Timeout {
                    argv: argv.to_owned(),
                    timeout: HANDOVER_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One file descriptor passed with SCM_RIGHTS (the runtime also sends the terminal's name,
/// which is not needed).
fn receive_fd(stream: &UnixStream) -> Result<OwnedFd, RuntimeError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(HANDOVER_TIMEOUT)))
        .map_err(|e| RuntimeError::io("console socket", e))?;
    let mut name = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    rustix::net::recvmsg(
        stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| RuntimeError::io("receiving the terminal from the runtime", e.into()))?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(RuntimeError::io(
        "the runtime connected to the console socket but sent no terminal",
        std::io::Error::from(std::io::ErrorKind::InvalidData),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_descriptor_sent_over_the_socket_is_received_and_the_directory_removed() {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let socket = ConsoleSocket::bind().unwrap();
        let dir = socket.scratch.dir.clone();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let sender = UnixStream::connect(&socket.path).unwrap();
        let fds = [writer.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &sender,
            &[std::io::IoSlice::new(b"/dev/pts/0")],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let got = socket.receive(&mut child, "test");
        child.kill().unwrap();
        child.wait().unwrap();
        let got = std::fs::File::from(got.unwrap());
        // The received descriptor is the pipe's write end.
        std::io::Write::write_all(&mut &got, b"through").unwrap();
        drop(got);
        std::io::Write::flush(&mut writer).unwrap();
        drop(writer);
        let mut text = String::new();
        let mut reader = reader;
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through");
        drop(socket);
        assert!(!dir.exists());
    }

    #[test]
    fn a_runtime_that_exits_without_connecting_is_reported_with_its_stderr() {
        let socket = ConsoleSocket::bind().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo 'no such command' >&2; exit 1"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let e = socket.receive(&mut child, "crun exec").unwrap_err();
        assert!(e.to_string().contains("no such command"), "{e}");
    }
}
