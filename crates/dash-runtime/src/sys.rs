//! container_runtime: the one door to the OS for this crate.
//!
//! Every `unsafe` block, `nix` call and mount of dash-runtime lives here (STYLE.md "One door to
//! the OS"), so the rest of the crate stays `#![deny(unsafe_code)]`.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

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

/// Runs `program args…` the way the monitor runs `crun create` on a hybrid cgroup host: in a
/// private mount namespace where a tmpfs hides /sys/fs/cgroup/unified (crun refuses "hybrid
/// mode" otherwise). Used to check that the workaround is possible here before choosing crun.
pub(crate) fn run_with_hybrid_workaround(program: &Path, args: &[&OsStr]) -> io::Result<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec; it only makes raw system calls
    // (unshare, mount) with static C strings: no allocation, no locks.
    unsafe {
        cmd.pre_exec(hybrid_workaround);
    }
    cmd.output()
}

/// The mount-namespace dance of the crun workaround; async-signal-safe (see RECIPES.md
/// "crun on this hybrid layout"). dash-monitor's main.rs does the same before `crun create`.
fn hybrid_workaround() -> io::Result<()> {
    // SAFETY: unshare takes a flag word only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // On a systemd host / is shared: make the new namespace private first, so the tmpfs
    // never propagates back to the host.
    // SAFETY: static NUL-terminated strings; null source/type/data are allowed for a
    // propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: static NUL-terminated strings, null data.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/sys/fs/cgroup/unified".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
