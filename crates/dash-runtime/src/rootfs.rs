//! container_runtime: the writable overlay root file system of a container.
//!
//! ```text
//!   <bundle>/rootfs  = overlay( lowerdir = layer_n : … : layer_1,   (read-only image layers)
//!                               upperdir = <bundle>/upper,          (the container's writes)
//!                               workdir  = <bundle>/work )
//! ```
//! Layers are never written: overlay copies up into `upper`, deletions become whiteouts there.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::error::RuntimeError;
use crate::sys;

/// Mounts the overlay root of a container at `<bundle>/rootfs`.
pub(crate) fn mount(bundle: &Path, layer_dirs: &[PathBuf]) -> Result<PathBuf, RuntimeError> {
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    let target = bundle.join("rootfs");
    for dir in [&upper, &work, &target] {
        fs::create_dir_all(dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
    }
    for layer in layer_dirs {
        if !layer.is_dir() {
            return Err(RuntimeError::io(
                format!("layer {}", layer.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
    }
    let lowers: Vec<&Path> = layer_dirs.iter().map(PathBuf::as_path).collect();
    sys::mount_overlay(&lowers, &upper, &work, &target).map_err(|e| {
        RuntimeError::io(
            format!("mounting the overlay root at {}", target.display()),
            e,
        )
    })?;
    Ok(target)
}

/// The overlay root of a container with a user namespace (`crate::userns`): its layers bound
/// through `map` at `<bundle>/lower/<i>`, its upper dir owned by the mapped root, mounted at
/// `target` (outside the data dir, which the mapped root cannot traverse).
pub(crate) fn mount_userns(
    bundle: &Path,
    target: &Path,
    layer_dirs: &[PathBuf],
    map: crate::userns::IdMap,
    ns: &std::os::fd::OwnedFd,
) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: String| move |e: std::io::Error| RuntimeError::io(what, e);
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    for dir in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    // The mapped root may pass through the parents (not list them).
    if let Some(parent) = target.parent() {
        fs::set_permissions(parent, fs::Permissions::from_mode(0o711))
            .map_err(io(format!("chmod {}", parent.display())))?;
    }
    std::os::unix::fs::chown(&upper, Some(map.host_id), Some(map.host_id))
        .map_err(io(format!("chown {}", upper.display())))?;
    let mut lowers = Vec::new();
    for (i, layer) in layer_dirs.iter().enumerate() {
        if !layer.is_dir() {
            return Err(RuntimeError::io(
                format!("layer {}", layer.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let at = bundle.join("lower").join(i.to_string());
        fs::create_dir_all(&at).map_err(io(format!("creating {}", at.display())))?;
        crate::userns::idmapped_bind(layer, &at, ns).map_err(io(format!(
            "idmapped bind of {} at {}",
            layer.display(),
            at.display()
        )))?;
        lowers.push(at);
    }
    let lowers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    sys::mount_overlay(&lowers, &upper, &work, target).map_err(|e| {
        RuntimeError::io(
            format!("mounting the overlay root at {}", target.display()),
            e,
        )
    })
}

/// Undoes [`mount_userns`]: the overlay at `target`, the idmapped layers, `target` itself.
pub(crate) fn unmount_userns(bundle: &Path, target: &Path) -> std::io::Result<()> {
    unmount_at(target)?;
    if let Ok(entries) = fs::read_dir(bundle.join("lower")) {
        for e in entries.flatten() {
            unmount_at(&e.path())?;
        }
    }
    match fs::remove_dir(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Unmounts `<bundle>/rootfs` if it is mounted (all stacked mounts); idempotent.
pub(crate) fn unmount(bundle: &Path) -> std::io::Result<()> {
    unmount_at(&bundle.join("rootfs"))
}

/// Unmounts `target` if it is mounted (all stacked mounts); idempotent.
pub(crate) fn unmount_at(target: &Path) -> std::io::Result<()> {
    let target = target.to_path_buf();
    // A container that just died can keep the mount busy for a moment; after a few tries
    // detach it lazily: the kernel frees it once the last user is gone.
    for tries in 1..=40 {
        if !is_mounted(&target)? {
            return Ok(());
        }
        match sys::unmount(&target, tries > 20) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                thread::sleep(Duration::from_millis(10));
            }
            // Not (or no longer) a mount point.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{} is still mounted after 40 unmounts",
        target.display()
    )))
}

/// Whether `path` is a mount point in our mount namespace (by /proc/self/mountinfo).
pub(crate) fn is_mounted(path: &Path) -> std::io::Result<bool> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_points(&info).any(|p| Path::new(&p) == path))
}

/// The mount points listed in a mountinfo text (field 5, octal escapes decoded).
pub(crate) fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n";
        let points: Vec<String> = mount_points(info).collect();
        assert_eq!(points, vec!["/mnt with space", "/sys/fs/cgroup"]);
    }

    #[test]
    fn trailing_backslash_is_kept() {
        assert_eq!(unescape_octal("a\\"), "a\\");
        assert_eq!(unescape_octal("a\\04"), "a\\04");
        assert_eq!(unescape_octal("\\134x"), "\\x");
    }
}
