//! The image store's few system calls that std does not offer: flock, syncfs, mknod for
//! overlay whiteouts, extended attributes and symlink timestamps.
//!
//! Kept together so they can move into `crate::sys` (the crate's one door to the OS) as a
//! whole; nothing else in `image/` uses `nix` or `libc` directly.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The store's lock: an exclusive flock on `root/lock`, released on drop (also when the
/// process dies, so a killed import never leaves the store locked).
pub(crate) type StoreLock = Flock<File>;

/// Takes the exclusive lock on `path`, waiting for it if `wait`; `Ok(None)` when not waiting
/// and someone else holds it.
pub(crate) fn lock_exclusive(path: &Path, wait: bool) -> io::Result<Option<StoreLock>> {
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    lock(path, arg, wait)
}

/// Takes a shared lock on `path`, waiting while someone holds it exclusively. Pulls hold one
/// on the pull cache's lock for their whole duration; whoever wants to empty the cache takes
/// it exclusively without waiting, and leaves the cache alone when a pull is running.
pub(crate) fn lock_shared(path: &Path) -> io::Result<StoreLock> {
    lock(path, FlockArg::LockShared, true)?
        .ok_or_else(|| io::Error::other("shared lock not granted"))
}

fn lock(path: &Path, arg: FlockArg, wait: bool) -> io::Result<Option<StoreLock>> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => Ok(None),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

/// Flushes the whole file system holding `path` to disk.
pub(crate) fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    nix::unistd::syncfs(dir.as_raw_fd()).map_err(io::Error::from)
}

/// Creates an overlayfs whiteout at `path`: a character device 0/0 with mode 0.
pub(crate) fn make_whiteout(path: &Path) -> io::Result<()> {
    nix::sys::stat::mknod(
        path,
        SFlag::S_IFCHR,
        Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .map_err(io::Error::from)
}

/// Creates a named pipe at `path` with mode 0600 (the caller sets the real mode); fails if
/// anything is already there.
pub(crate) fn make_fifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).map_err(io::Error::from)
}

/// Marks `dir` as opaque for overlayfs: entries of lower layers under it are hidden.
pub(crate) fn set_opaque(dir: &Path) -> io::Result<()> {
    set_xattr(dir, "trusted.overlay.opaque", b"y")
}

/// Sets the extended attribute `name` on `path` itself (a symlink is not followed).
#[allow(unsafe_code)]
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let c_name = CString::new(name)?;
    // SAFETY: `c_path` and `c_name` are NUL-terminated strings that live until after the call;
    // `value` is a live slice and its exact length is passed with it. lsetxattr only reads
    // these buffers and keeps no pointer to them.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the extended attribute `name` of `path` itself; `None` when it is not set.
#[cfg(test)]
#[allow(unsafe_code)]
pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let c_name = CString::new(name)?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `c_path` and `c_name` are NUL-terminated strings that outlive the call; `buf` is
    // a live, writable buffer whose exact length is passed with it.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(usize::try_from(n).unwrap_or(0));
    Ok(Some(buf))
}

/// Sets the access and modification times of `path` itself: a symlink is not followed, a
/// fifo not opened.
pub(crate) fn set_symlink_mtime(path: &Path, secs: i64, nanos: u32) -> io::Result<()> {
    let ts = TimeSpec::new(secs, i64::from(nanos));
    nix::sys::stat::utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    #[test]
    fn whiteout_is_a_0_0_char_device() {
        let dir = tempfile::tempdir().unwrap();
        let wh = dir.path().join("gone");
        make_whiteout(&wh).unwrap();
        let meta = std::fs::symlink_metadata(&wh).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), 0);
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = lock_exclusive(&path, true).unwrap().unwrap();
        assert!(lock_exclusive(&path, false).unwrap().is_none());
        drop(held);
        assert!(lock_exclusive(&path, false).unwrap().is_some());
    }

    #[test]
    fn shared_locks_coexist_and_keep_exclusive_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let a = lock_shared(&path).unwrap();
        let b = lock_shared(&path).unwrap();
        assert!(lock_exclusive(&path, false).unwrap().is_none());
        drop(a);
        assert!(lock_exclusive(&path, false).unwrap().is_none());
        drop(b);
        assert!(lock_exclusive(&path, false).unwrap().is_some());
    }

    #[test]
    fn symlink_times_do_not_touch_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let before = std::fs::metadata(&target).unwrap().mtime();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        set_symlink_mtime(&link, 1_000_000, 5).unwrap();
        assert_eq!(std::fs::symlink_metadata(&link).unwrap().mtime(), 1_000_000);
        assert_eq!(std::fs::metadata(&target).unwrap().mtime(), before);
    }
}
