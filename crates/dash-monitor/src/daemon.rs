//! Letting go of the daemon that started the monitor: its fds, its session, and the report
//! pipe (our stdout) once the report is written.
#![allow(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;

use crate::protocol::Report;

/// Closes every fd but 0, 1 and 2: a daemon fd without O_CLOEXEC (a listening socket, a
/// database) must not stay open for as long as the container runs.
pub fn close_inherited_fds() {
    // SAFETY: close_range(2) takes integers; nothing in this process uses fds ≥ 3 yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists (collected first: reading the dir uses an fd).
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // SAFETY: closing an fd number we inherited and do not use; EBADF is harmless.
        unsafe { libc::close(fd) };
    }
}

/// Forks: the parent exits 0 at once (the daemon reaps it), the child goes on in a session
/// of its own. Call it while single-threaded.
pub fn detach() -> io::Result<()> {
    // SAFETY: single-threaded at this point; the child continues with a consistent copy.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the child.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: setsid takes no arguments; it cannot fail in a fresh child (not a group leader).
    unsafe { libc::setsid() };
    Ok(())
}

/// One line to the daemon on our stdout, until [`close_report`].
pub fn report(report: &Report) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(report.to_line().as_bytes());
    let _ = out.flush();
}

/// Lets go of the daemon's report pipe: from here on nothing of the daemon's is held.
pub fn close_report() -> io::Result<()> {
    let null = File::open("/dev/null")?;
    // SAFETY: dup2 of two fds we own onto fd 1; the old pipe end is closed by it.
    if unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
