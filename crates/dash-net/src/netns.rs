//! netns: per-replica network namespaces, pinned by a bind mount on a file.
//!
//! The only module that calls unshare, setns, mount and umount. A namespace belongs to a thread,
//! so they run on a dedicated std thread that ends right after (never on a tokio worker, which
//! would stay in the namespace and run other tasks there):
//!
//! ```text
//!  tokio task                            std thread "dash-netns"
//!  ──────────                            ───────────────────────
//!  enter(path) ── spawn ───────────────▶ path pinned?  yes: setns(open(path))
//!                                                      no:  unshare(CLONE_NEWNET)
//!                                                           bind /proc/thread-self/ns/net → path
//!                                        netlink socket() ◀── bound to this netns for life
//!  Netns { fd, handle } ◀── oneshot ──── thread ends
//!  (netlink requests on `handle` now act inside the netns)
//! ```
//! No `unsafe` is needed: nix wraps each call.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::NetError;

/// Aborts a spawned task when dropped: the netlink connection of a [`Netns`] or a [`crate::Network`].
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An open network namespace with a netlink handle that acts inside it.
pub(crate) struct Netns {
    /// Keeps the namespace open; its number goes in `IFLA_NET_NS_FD` to move a link inside.
    fd: OwnedFd,
    /// rtnetlink requests on this handle act inside the namespace.
    pub(crate) handle: rtnetlink::Handle,
    /// True if this call created (and pinned) the namespace, false if it was already there.
    pub(crate) created: bool,
    _connection: AbortOnDrop,
}

impl Netns {
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Whether `path` is a pinned network namespace (an nsfs bind mount), not a plain file.
pub(crate) fn is_pinned(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Opens the namespace pinned at `path`, or creates and pins a new one there, and returns it
/// with a netlink handle inside it. Must be called from within a tokio runtime.
pub(crate) async fn enter(path: &Path) -> Result<Netns, NetError> {
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_path = path.to_path_buf();
    std::thread::Builder::new()
        .name("dash-netns".into())
        .spawn(move || {
            // The receiver only goes away if the caller was cancelled; then nobody needs the answer.
            let _ = tx.send(enter_on_this_thread(&thread_path, &runtime));
        })
        .map_err(|source| NetError::Io {
            op: "spawning a thread for netns",
            path: path.to_path_buf(),
            source,
        })?;
    let (fd, connection, handle, created) = rx.await.map_err(|_| NetError::NetnsThread {
        path: path.to_path_buf(),
    })??;
    let connection = AbortOnDrop(tokio::spawn(connection));
    Ok(Netns {
        fd,
        handle,
        created,
        _connection: connection,
    })
}

type Connection = rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>;

/// Runs on a throwaway thread: this thread's network namespace changes for good.
fn enter_on_this_thread(
    path: &Path,
    runtime: &tokio::runtime::Handle,
) -> Result<(OwnedFd, Connection, rtnetlink::Handle, bool), NetError> {
    let sys = |op: &'static str| {
        move |source: nix::errno::Errno| NetError::Sys {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let io = |op: &'static str| {
        move |source: std::io::Error| NetError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let created = if is_pinned(path) {
        let file = File::open(path).map_err(io("opening netns"))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(sys("setns into"))?;
        tracing::debug!(path = %path.display(), "setns into existing netns");
        false
    } else {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET) for"))?;
        // A leftover plain file (e.g. after a crash between create and mount) is reused.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o444)
            .open(path)
            .map_err(io("creating netns file"))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("bind-mounting the new netns on"))?;
        tracing::debug!(path = %path.display(), "created netns");
        true
    };
    let fd = OwnedFd::from(File::open(path).map_err(io("opening netns"))?);
    // The socket is created here, in the namespace, and stays bound to it; registering it with
    // the runtime's reactor needs the runtime's context.
    let _guard = runtime.enter();
    let (connection, handle, _) = rtnetlink::new_connection().map_err(io("netlink socket in"))?;
    Ok((fd, connection, handle, created))
}

/// Unpins and removes the namespace file at `path`. The kernel frees the namespace, and the
/// veth end inside it (taking the host end with it), in the background once nothing uses it.
/// Returns whether there was anything to remove.
pub(crate) fn remove(path: &Path) -> Result<bool, NetError> {
    let mut found = false;
    // MNT_DETACH: never fail because of a concurrent open of the file.
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) => found = true,
        // Not a mount point (plain leftover file) or no file at all.
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(source) => {
            return Err(NetError::Sys {
                op: "unmounting netns",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => found = true,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(NetError::Io {
                op: "removing netns file",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    if found {
        tracing::debug!(path = %path.display(), "removed netns");
    }
    Ok(found)
}

/// The files in `dir` (pinned namespaces and leftovers); none if `dir` does not exist.
pub(crate) fn list(dir: &Path) -> Result<Vec<PathBuf>, NetError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetError::Io {
                op: "listing netns dir",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetError::Io {
            op: "listing netns dir",
            path: dir.to_path_buf(),
            source,
        })?;
        // file_type() does not follow the mount, so a pinned netns shows as the file it covers.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.path());
        }
    }
    Ok(files)
}

/// Creates the directory that holds the namespace files.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), NetError> {
    std::fs::create_dir_all(dir).map_err(|source| NetError::Io {
        op: "creating netns dir",
        path: dir.to_path_buf(),
        source,
    })
}
