//! The pull cache: where registry pulls keep blobs between their download and the import.
//!
//! ```text
//!  <root>/pulls/
//!    ├── lock                     shared flock held by every running pull
//!    ├── partial/<hex>-<unique>   a download in progress, hashed as it is written
//!    └── blobs/<hex>              verified (size + sha256), fsynced, then renamed here
//! ```
//!
//! Only content that matched its digest ever gets a name under `blobs/`, so a pull that was
//! killed leaves either a verified blob (which the next pull uses instead of downloading it
//! again) or a file in `partial/`, which `ImageStore::open` removes. The import hashes every
//! pulled blob once more anyway, and removes one that no longer matches.
//!
//! Emptying the cache (`open` for `partial/`, `prune` for everything) needs the lock
//! exclusively and is skipped while any pull holds it shared, so it never takes a blob from
//! under a running pull.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::os::{self, StoreLock};
use super::store::unique_name;
use super::stream::is_sha256_hex;
use super::{ImageError, ImageStore};

/// Paths and locks of a store's pull cache.
#[derive(Debug, Clone)]
pub(crate) struct PullCache {
    dir: PathBuf,
}

/// What emptying part of the cache removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
}

impl PullCache {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            dir: root.join("pulls"),
        }
    }

    pub(crate) fn create_dirs(&self) -> Result<(), ImageError> {
        for dir in [self.partial_dir(), self.blobs_dir()] {
            fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating directory", &dir, e))?;
        }
        Ok(())
    }

    pub(crate) fn partial_dir(&self) -> PathBuf {
        self.dir.join("partial")
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    /// Where the verified blob `hex` lives (or would).
    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.blobs_dir().join(hex)
    }

    /// A fresh name in `partial/` for one download of blob `hex`.
    pub(crate) fn new_partial_path(&self, hex: &str) -> PathBuf {
        self.partial_dir()
            .join(format!("{hex}-{}", unique_name("download")))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The lock a pull holds (shared) from its start to its end. Blocks while the cache is
    /// being emptied: call it off the async runtime.
    pub(crate) fn lock_shared(&self) -> Result<StoreLock, ImageError> {
        let path = self.lock_path();
        os::lock_shared(&path).map_err(|e| ImageError::io("locking", &path, e))
    }

    /// The lock needed to empty the cache; `None` while a pull is running.
    pub(crate) fn try_lock_exclusive(&self) -> Result<Option<StoreLock>, ImageError> {
        let path = self.lock_path();
        os::lock_exclusive(&path, false).map_err(|e| ImageError::io("locking", &path, e))
    }

    /// Removes every file in `partial/`: downloads a killed pull left. The caller holds the
    /// exclusive lock.
    pub(crate) fn clean_partial(&self) -> Result<Removed, ImageError> {
        let removed = remove_files(&self.partial_dir(), |_| true)?;
        if removed.files > 0 {
            tracing::info!(
                files = removed.files,
                "removed partial downloads of interrupted pulls"
            );
        }
        Ok(removed)
    }

    /// Removes every verified blob. The caller holds the exclusive lock.
    pub(crate) fn clear_blobs(&self) -> Result<Removed, ImageError> {
        remove_files(&self.blobs_dir(), is_sha256_hex)
    }
}

/// Removes the regular files in `dir` whose names pass `wanted`.
fn remove_files(dir: &Path, wanted: impl Fn(&str) -> bool) -> Result<Removed, ImageError> {
    let mut removed = Removed::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(ImageError::io("reading directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("reading directory", dir, e))?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(&wanted) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                removed.files += 1;
                removed.bytes += meta.len();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("removing", &path, e)),
        }
    }
    Ok(removed)
}

impl ImageStore {
    pub(crate) fn pull_cache(&self) -> PullCache {
        PullCache::new(&self.root)
    }

    /// True when the store holds the blob `hex` (`blobs/sha256/<hex>`), which it verified when
    /// it was imported.
    pub(crate) fn has_blob(&self, hex: &str) -> bool {
        is_sha256_hex(hex) && self.blob_path(hex).is_file()
    }
}
