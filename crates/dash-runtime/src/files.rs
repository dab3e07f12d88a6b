//! container_runtime: a container's secret and config files.
//!
//! ```text
//!  <runtime root>/files/<id>/      a tmpfs of the container's own (mode 0711, nosuid, nodev,
//!    secrets/<name>                 noexec, sized to its files): never on a disk
//!    configs/<n>
//!  in the container:  /run/secrets  ◄─ read-only bind of secrets/
//!                     <target>      ◄─ read-only bind of configs/<n>, for each config
//! ```
//!
//! The files get the owner and mode the service asks for. The tmpfs goes with the container
//! (`remove`), and with a reboot.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::RuntimeError;

/// A file a container gets (a secret or a config).
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerFile {
    /// Its absolute path in the container; a secret's is `/run/secrets/<name>`.
    pub path: String,
    pub data: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// A secret (under /run/secrets) rather than a config.
    pub secret: bool,
}

impl std::fmt::Debug for ContainerFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value: specs are logged at debug level.
        write!(
            f,
            "ContainerFile({}, {} bytes, {}:{} {:o})",
            self.path,
            self.data.len(),
            self.uid,
            self.gid,
            self.mode
        )
    }
}

/// Where the container's secrets are bound.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The (destination in the container, source on the host) binds of `files`, kept in `dir`.
pub(crate) fn binds(dir: &Path, files: &[ContainerFile]) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    if files.iter().any(|f| f.secret) {
        out.push((PathBuf::from(SECRETS_DIR), dir.join("secrets")));
    }
    for (i, f) in files.iter().enumerate().filter(|(_, f)| !f.secret) {
        out.push((
            PathBuf::from(&f.path),
            dir.join("configs").join(i.to_string()),
        ));
    }
    out
}

/// Mounts the tmpfs at `dir` and writes `files` into it; their owners are shifted by
/// `id_offset` (a user namespace's first host id, else 0).
pub(crate) fn write(
    dir: &Path,
    files: &[ContainerFile],
    id_offset: u32,
) -> Result<(), RuntimeError> {
    let io = |what: String| move |e: std::io::Error| RuntimeError::io(what, e);
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", dir.display())))?;
    // Room for the files and their inodes; a tmpfs takes pages as it is written.
    let size = files
        .iter()
        .map(|f| f.data.len() as u64 + 4096)
        .sum::<u64>()
        + 64 * 1024;
    crate::sys::mount_tmpfs(dir, &format!("mode=0711,size={size}"))
        .map_err(io(format!("mounting a tmpfs at {}", dir.display())))?;
    for sub in ["secrets", "configs"] {
        let d = dir.join(sub);
        fs::create_dir(&d).map_err(io(format!("creating {}", d.display())))?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {}", d.display())))?;
    }
    for (i, f) in files.iter().enumerate() {
        let path = if f.secret {
            let name = f
                .path
                .strip_prefix(SECRETS_DIR)
                .and_then(|n| n.strip_prefix('/'))
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| RuntimeError::InvalidSpec {
                    id: dir.display().to_string(),
                    reason: format!("secret path {:?} is not /run/secrets/<name>", f.path),
                })?;
            dir.join("secrets").join(name)
        } else {
            dir.join("configs").join(i.to_string())
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        file.write_all(&f.data)
            .map_err(io(format!("writing {}", path.display())))?;
        let (uid, gid) = (
            f.uid.saturating_add(id_offset),
            f.gid.saturating_add(id_offset),
        );
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(io(format!("chown {}", path.display())))?;
        file.set_permissions(fs::Permissions::from_mode(f.mode))
            .map_err(io(format!("chmod {}", path.display())))?;
    }
    Ok(())
}

/// Unmounts and removes `dir` if it exists; idempotent.
pub(crate) fn remove(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    crate::rootfs::unmount_at(dir)?;
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
