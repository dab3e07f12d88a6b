//! Opening the store, finding images, removing them, and collecting what nothing uses.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::ImageConfiguration;

use super::layout;
use super::os::{self, StoreLock};
use super::reference::id_prefix;
use super::refs::{ImageEntry, Refs, hex_of};
use super::stream::is_sha256_hex;
use super::{ImageError, ImageRecord, ImageStore, Limits, ResolvedImage, normalize_reference};

impl ImageStore {
    /// Opens (creating if needed) the store at `root`. Removes what interrupted imports left:
    /// everything in `tmp/`, and blobs and layers that refs.json does not name. That cleanup is
    /// skipped while another process holds the store lock (its import is still running).
    ///
    /// Of the pull cache (`pulls/`), only the partial downloads of killed pulls are removed,
    /// and only when no pull is running; verified blobs stay, so an interrupted pull resumes
    /// without fetching them again.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let root = std::path::absolute(root).map_err(|e| ImageError::io("resolving", root, e))?;
        let store = Self {
            root,
            limits: Limits::default(),
        };
        for dir in [
            store.root.join("blobs").join("sha256"),
            store.layers_dir(),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating directory", &dir, e))?;
        }
        let pull_cache = store.pull_cache();
        pull_cache.create_dirs()?;
        let lock_path = store.lock_path();
        let lock = os::lock_exclusive(&lock_path, false)
            .map_err(|e| ImageError::io("locking", &lock_path, e))?;
        if lock.is_some() {
            store.clean_tmp()?;
            store.collect_garbage(&Refs::load(&store.root)?)?;
            if let Some(_pulls) = pull_cache.try_lock_exclusive()? {
                pull_cache.clean_partial()?;
            }
        } else {
            tracing::debug!(root = %store.root.display(), "image store busy; cleanup skipped");
        }
        Ok(store)
    }

    /// Replaces the limits (tests use small ones).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits imports are held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every image in the store, ordered by first tag (untagged last), then id.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let refs = Refs::load(&self.root)?;
        let mut records: Vec<_> = refs
            .images
            .keys()
            .filter_map(|id| refs.record(id))
            .collect();
        records.sort_by(|a, b| {
            (a.tags.is_empty(), a.tags.first(), &a.id).cmp(&(
                b.tags.is_empty(),
                b.tags.first(),
                &b.id,
            ))
        });
        Ok(records)
    }

    /// Finds an image by tag (`busybox`, `busybox:latest`, `localhost/bb:1`) or by id or id
    /// prefix (`sha256:<hex>` or at least 12 hex digits), with its config and layer dirs.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        let refs = Refs::load(&self.root)?;
        let (id, _) = find(&refs, reference)?;
        let entry = &refs.images[&id];
        let record = refs.record(&id).expect("find returns ids of refs.images");
        let config = self.load_config(&id)?;
        let layer_dirs = entry
            .layers
            .iter()
            .map(|layer| {
                let dir = self.layer_dir(hex_of(&layer.id));
                if dir.is_dir() {
                    Ok(dir)
                } else {
                    Err(self.damaged(format!(
                        "layer {} of image {id} is not unpacked at {}",
                        layer.id,
                        dir.display()
                    )))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(ResolvedImage {
            record,
            config: layout::image_config(&config),
            layer_dirs,
        })
    }

    /// Removes a tag; by id, removes all the image's tags. When the image has no tag left, it is
    /// removed too, with its blobs and unpacked layers that no other image shares. Returns the
    /// record after the removal: `tags` holds the tags left, and is empty when the image is
    /// gone.
    ///
    /// The caller makes sure no container still uses the image's layer dirs.
    pub fn remove(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let _lock = self.lock()?;
        let mut refs = Refs::load(&self.root)?;
        let (id, tag) = find(&refs, reference)?;
        match tag {
            Some(tag) => {
                refs.tags.remove(&tag);
            }
            None => refs.tags.retain(|_, image| *image != id),
        }
        if refs.tags.values().any(|image| *image == id) {
            refs.save(&self.root, &self.tmp_dir())?;
            return Ok(refs.record(&id).expect("the image is still in refs"));
        }
        let mut record = refs.record(&id).expect("find returns ids of refs.images");
        record.tags.clear();
        let entry = refs
            .images
            .remove(&id)
            .expect("find returns ids of refs.images");
        refs.save(&self.root, &self.tmp_dir())?;
        self.delete_unused(&refs, &id, &entry);
        tracing::info!(image = %id, "image removed");
        Ok(record)
    }

    pub(crate) fn lock(&self) -> Result<StoreLock, ImageError> {
        let path = self.lock_path();
        os::lock_exclusive(&path, true)
            .map_err(|e| ImageError::io("locking", &path, e))?
            .ok_or_else(|| ImageError::io("locking", &path, io::Error::other("lock not granted")))
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join("sha256").join(hex)
    }

    pub(crate) fn layer_dir(&self, hex: &str) -> PathBuf {
        self.layers_dir().join(hex)
    }

    /// Reads and parses the config blob of image `id`.
    pub(super) fn load_config(&self, id: &str) -> Result<ImageConfiguration, ImageError> {
        let config_path = self.blob_path(hex_of(id));
        let bytes = fs::read(&config_path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                self.damaged(format!("the config blob of image {id} is missing"))
            } else {
                ImageError::io("reading", &config_path, e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            what: format!("config {id}"),
            source,
        })
    }

    pub(super) fn damaged(&self, problem: String) -> ImageError {
        ImageError::Damaged {
            root: self.root.clone(),
            problem,
        }
    }

    /// Deletes the blobs and layers of a removed image that `refs` no longer uses. Failures are
    /// logged, not returned: the image is already gone, and the next `open` collects leftovers.
    pub(crate) fn delete_unused(&self, refs: &Refs, id: &str, entry: &ImageEntry) {
        let blobs_in_use = refs.blobs_in_use();
        let mut blobs = vec![hex_of(id), hex_of(&entry.manifest)];
        blobs.extend(entry.layers.iter().map(|l| hex_of(&l.blob)));
        for hex in blobs {
            if !blobs_in_use.contains(hex) {
                let path = self.blob_path(hex);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove blob")
                    }
                }
            }
        }
        let layers_in_use = refs.layers_in_use();
        for layer in &entry.layers {
            let hex = hex_of(&layer.id);
            if !layers_in_use.contains(hex) {
                self.delete_layer(hex);
            }
        }
    }

    /// Moves a layer dir into `tmp/` first, so a crash midway never leaves a half-deleted
    /// layer under `layers/`, then deletes it.
    fn delete_layer(&self, hex: &str) {
        let dir = self.layer_dir(hex);
        let trash = self.tmp_dir().join(unique_name("rm"));
        let result = fs::rename(&dir, &trash).and_then(|()| fs::remove_dir_all(&trash));
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(layer = %dir.display(), error = %e, "cannot remove layer"),
        }
    }

    fn clean_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.tmp_dir();
        let entries =
            fs::read_dir(&tmp).map_err(|e| ImageError::io("reading directory", &tmp, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("reading directory", &tmp, e))?;
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let result = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(|e| ImageError::io("removing leftover", &path, e))?;
            tracing::info!(path = %path.display(), "removed leftover of an interrupted import");
        }
        Ok(())
    }

    /// Removes blobs and layers that no image in `refs` names: what an import killed
    /// between moving them into place and writing refs.json left behind, or what `prune` let
    /// go. The caller holds the store lock.
    pub(super) fn collect_garbage(&self, refs: &Refs) -> Result<Garbage, ImageError> {
        let mut garbage = Garbage::default();
        let blobs_in_use = refs.blobs_in_use();
        let blobs_dir = self.root.join("blobs").join("sha256");
        for name in hex_names(&blobs_dir)? {
            if !blobs_in_use.contains(&name) {
                let path = blobs_dir.join(&name);
                let bytes = fs::symlink_metadata(&path).map_or(0, |m| m.len());
                fs::remove_file(&path)
                    .map_err(|e| ImageError::io("removing unused blob", &path, e))?;
                garbage.blobs += 1;
                garbage.bytes += bytes;
                tracing::info!(blob = %name, "removed unused blob");
            }
        }
        let layers_in_use = refs.layers_in_use();
        for name in hex_names(&self.layers_dir())? {
            if !layers_in_use.contains(&name) {
                garbage.bytes += dir_size(&self.layer_dir(&name));
                self.delete_layer(&name);
                garbage.layers += 1;
                tracing::info!(layer = %name, "removed unused layer");
            }
        }
        Ok(garbage)
    }
}

/// What [`ImageStore::collect_garbage`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Garbage {
    pub(super) blobs: usize,
    pub(super) layers: usize,
    pub(super) bytes: u64,
}

/// The bytes of the files under `dir` (symlinks not followed; their own length counts).
pub(super) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Finds the image a reference names: by tag first, then by id or id prefix. Returns the id
/// and, when found by tag, the normalised tag.
pub(super) fn find(refs: &Refs, reference: &str) -> Result<(String, Option<String>), ImageError> {
    let normalized = normalize_reference(reference);
    if let Ok(tag) = &normalized
        && let Some(id) = refs.tags.get(tag)
    {
        return Ok((id.clone(), Some(tag.clone())));
    }
    if let Some(prefix) = id_prefix(reference) {
        let matches: Vec<&String> = refs
            .images
            .keys()
            .filter(|id| hex_of(id).starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [] => {}
            [id] => return Ok(((*id).clone(), None)),
            _ => {
                return Err(ImageError::AmbiguousId {
                    prefix: reference.to_owned(),
                    count: matches.len(),
                });
            }
        }
    }
    match normalized {
        Err(e) => Err(e),
        Ok(_) => Err(ImageError::NotFound {
            reference: reference.to_owned(),
        }),
    }
}

/// Names in `dir` that are sha256 hex digests.
fn hex_names(dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = fs::read_dir(dir).map_err(|e| ImageError::io("reading directory", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("reading directory", dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && is_sha256_hex(name)
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A name unique within this host: kind, pid, time and a counter.
pub(crate) fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{kind}-{}-{nanos}-{n}", std::process::id())
}
