//! The data dir is root's alone: created 0700, and on every start the dir itself and what lies
//! directly in it lose any group or other permission bits (an older release made the dir 0755
//! and `dash.db` 0644, so any local user could read every service's spec, env values included).
//!
//! Only the top level is walked: once the dir is 0700 nothing below it can be reached by
//! another user, and the layers and bundles below keep the modes their images give them (a
//! container's root directory must stay 0755 for its non-root users).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (0700, with any missing parents) or makes it private, and makes private every
/// file and directory directly in it. Returns (and logs) the paths whose modes it changed.
pub fn ensure_private(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut changed = Vec::new();
    if strip_group_other(dir)? {
        changed.push(dir.to_path_buf());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // A symlink's own mode means nothing, and its target may lie outside the data dir.
        if std::fs::symlink_metadata(&path)?.file_type().is_symlink() {
            continue;
        }
        if strip_group_other(&path)? {
            changed.push(path);
        }
    }
    for path in &changed {
        tracing::info!(path = %path.display(), "made private (no group or other access)");
    }
    Ok(changed)
}

/// Clears the group and other bits of `path`'s mode (the owner's stay); whether it changed.
fn strip_group_other(path: &Path) -> std::io::Result<bool> {
    let mode = std::fs::symlink_metadata(path)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7700))?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_dir_is_made_0700_with_its_missing_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        assert!(ensure_private(&dir).unwrap().is_empty());
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn an_old_open_dir_and_its_files_are_made_private_and_links_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("dash.db");
        std::fs::write(&db, "x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let tool = dir.join("hook");
        std::fs::write(&tool, "x").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sub = dir.join("images");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let deep = sub.join("layer");
        std::fs::create_dir(&deep).unwrap();
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o755)).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        let mut changed = ensure_private(&dir).unwrap();
        changed.sort();
        assert_eq!(
            changed,
            vec![dir.clone(), db.clone(), tool.clone(), sub.clone()]
        );
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&tool), 0o700, "the owner's bits stay");
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(
            mode(&deep),
            0o755,
            "below the top level, modes are the images' own"
        );
        assert_eq!(mode(&outside), 0o644, "a link's target is not followed");
        // Nothing left to change the second time.
        assert!(ensure_private(&dir).unwrap().is_empty());
    }
}
