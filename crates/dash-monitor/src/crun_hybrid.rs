//! The crun hybrid-cgroup workaround: crun 1.8 refuses cgroup v1 "hybrid mode" while
//! /sys/fs/cgroup/unified holds controllers, so its `create` (and the daemon's probe of crun)
//! runs in a private mount namespace where a tmpfs hides that hierarchy.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd` run behind the workaround.
pub fn apply(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and makes raw system calls only
    // (unshare, mount with static strings): async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(hide_unified_hierarchy);
    }
}

/// `dash-monitor --probe-crun CRUN`: execs `CRUN --version` behind the workaround. Returns
/// only when that fails, with what to report.
pub fn probe(crun: &OsStr) -> String {
    if let Err(e) = hide_unified_hierarchy() {
        return format!("hybrid-cgroup workaround: {e}");
    }
    let e = Command::new(crun).arg("--version").exec();
    format!("exec crun: {e}")
}

/// Unshares the mount namespace and mounts a tmpfs over /sys/fs/cgroup/unified.
/// Async-signal-safe: raw system calls with static strings only.
fn hide_unified_hierarchy() -> io::Result<()> {
    // SAFETY: unshare takes a flag word only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // On a systemd host / is shared: make everything private first so the tmpfs stays here.
    // SAFETY: static NUL-terminated strings; null source/type/data are allowed here.
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
