//! container_runtime: the one door to the OS for this crate.
//!
//! Every `unsafe` block, `nix` call and mount of dash-runtime lives here (STYLE.md "One door to
//! the OS"), so the rest of the crate stays `#![deny(unsafe_code)]`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

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

// ---- user namespaces (crate::userns) ------------------------------------------------------

/// A user namespace with `map`, for idmapped mounts.
pub(crate) fn namespace_with(map: crate::userns::IdMap) -> io::Result<OwnedFd> {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("10")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec the child only calls unshare(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn()?;
    let result = (|| {
        let pid = child.id();
        let mine = std::fs::read_link("/proc/self/ns/user")?;
        // The child is in its namespace once exec'd: its ns link differs from ours.
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::read_link(format!("/proc/{pid}/ns/user"))? == mine {
            if Instant::now() > deadline {
                return Err(io::Error::other("the user namespace helper did not start"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let line = format!("0 {} {}\n", map.host_id, map.size);
        std::fs::write(format!("/proc/{pid}/uid_map"), &line)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &line)?;
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The `mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Binds `src` at `dst` (an existing directory) through the mapping of user namespace
/// `userns`: a file of uid u under `src` is uid (its host id) + u under `dst`.
pub(crate) fn idmapped_bind(src: &Path, dst: &Path, userns: &OwnedFd) -> io::Result<()> {
    let (src_c, dst_c, empty) = (cstr(src)?, cstr(dst)?, CString::default());
    // SAFETY: open_tree(2) reads a NUL-terminated path; it returns a new fd we own.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `tree` is a valid fd just returned to us, owned from here on.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) reads `attr` (size given) and an empty path for AT_EMPTY_PATH.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: move_mount(2) reads the two NUL-terminated paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts a tmpfs at `dir` (nosuid, nodev, noexec) with `options` (e.g. `mode=0711,size=…`).
pub(crate) fn mount_tmpfs(dir: &Path, options: &str) -> io::Result<()> {
    tracing::debug!(target = %dir.display(), options, "mount tmpfs");
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options),
    )
    .map_err(io::Error::from)
}
