//! container_runtime: the one door to the OS for this crate.
//!
//! Every `unsafe` block, `nix` call and mount of dash-runtime lives here (STYLE.md "One door to
//! the OS"), so the rest of the crate stays `#![deny(unsafe_code)]`.
#![allow(unsafe_code)]

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

/// Mounts an overlay at `target`: `lowers` bottom→top (as image layers are listed), with
/// `upper` and `work` on the same file system.
pub(crate) fn mount_overlay(
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    // overlayfs wants lowerdir=top:…:bottom.
    let mut data = String::from("lowerdir=");
    for (i, dir) in lowers.iter().rev().enumerate() {
        if i > 0 {
            data.push(':');
        }
        data.push_str(path_str(dir)?);
    }
    data.push_str(",upperdir=");
    data.push_str(path_str(upper)?);
    data.push_str(",workdir=");
    data.push_str(path_str(work)?);
    tracing::debug!(target = %target.display(), %data, "mount overlay");
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

fn path_str(p: &Path) -> io::Result<&str> {
    match p.to_str() {
        // ':' and ',' separate overlay options; the kernel has no escaping for them here.
        Some(s) if !s.contains([':', ',']) => Ok(s),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} cannot be an overlay directory", p.display()),
        )),
    }
}

/// Unmounts `target`; with `detach` lazily (MNT_DETACH), for a mount still busy.
pub(crate) fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    let flags = if detach {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    tracing::debug!(target = %target.display(), detach, "umount");
    nix::mount::umount2(target, flags).map_err(io::Error::from)
}

/// Sends `signal` to `pid`.
pub(crate) fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The current hard limit of open files: a container may not ask for more, because root here
/// lacks CAP_SYS_RESOURCE ("error setting rlimit type 7: operation not permitted").
pub(crate) fn nofile_hard_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own and pass by pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc == 0 {
        Ok(lim.rlim_max)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Registers a pidfd with the tokio reactor, to be woken when its process exits (a pidfd turns
/// readable then, and stays so).
pub(crate) fn register_pidfd(
    fd: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd for its whole life, so the descriptor stays open
    // and names the same pidfd until the AsyncFd is dropped; OwnedFd::as_raw_fd always
    // returns that one descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
