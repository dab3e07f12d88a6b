//! Imports: stage, plan, verify, unpack, then commit (blobs, layers, syncfs, refs.json last).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::archive::{StagedArchive, StagedFile};
use super::layout::{self, PlannedImage, PlannedLayer};
use super::refs::{ImageEntry, LayerEntry, Refs};
use super::store::unique_name;
use super::stream;
use super::unpack::{self, LayerSummary};
use super::{ImageError, ImageRecord, ImageStore, normalize_reference, os};

/// An import's private directory under `tmp/`, removed when dropped (on success everything
/// worth keeping has been moved out of it by then).
pub(super) struct Staging {
    pub(super) dir: PathBuf,
}

impl Staging {
    pub(super) fn create(tmp: &Path) -> Result<Self, ImageError> {
        let dir = tmp.join(unique_name("import"));
        fs::create_dir(&dir).map_err(|e| ImageError::io("creating directory", &dir, e))?;
        Ok(Self { dir })
    }

    pub(super) fn subdir(&self, name: &str) -> Result<PathBuf, ImageError> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating directory", &dir, e))?;
        Ok(dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove staging directory");
        }
    }
}

/// A layer ready for the commit: unpacked into staging (`staged_dir`) or already in the store.
#[derive(Debug)]
pub(super) struct PreparedLayer {
    staged_dir: Option<PathBuf>,
    unpacked_bytes: u64,
}

impl ImageStore {
    /// Imports every image of an OCI image layout tar (`index.json`, `oci-layout`, `blobs/`)
    /// or a `docker save` tar (`manifest.json`), either maybe gzip- or zstd-compressed as a
    /// whole. Layers may be plain tar, gzip or zstd (detected from their bytes).
    ///
    /// All or nothing: on any error nothing of the archive stays in the store. Importing the
    /// same archive again changes nothing and returns the same records.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        let _lock = self.lock()?;
        let staging = Staging::create(&self.tmp_dir())?;
        let archive = StagedArchive::stage(path, &staging.subdir("files")?, &self.limits)?;
        let plans = if archive.get("manifest.json").is_some() {
            let dir = staging.subdir("synthesised")?;
            let mut n = 0;
            layout::plan_docker(&archive, &self.limits, |bytes| {
                n += 1;
                write_staged(&dir.join(format!("manifest-{n}")), bytes)
            })?
        } else if archive.get("index.json").is_some() {
            layout::plan_oci(&archive, &self.limits)?
        } else {
            return Err(ImageError::Archive {
                path: path.to_path_buf(),
                problem: "is not an image archive: it has neither index.json (OCI image layout) \
                          nor manifest.json (docker save)"
                    .to_owned(),
            });
        };
        let refs = Refs::load(&self.root)?;
        let layers = self.prepare_layers(&plans, &staging.subdir("layers")?, &refs)?;
        let records = self.commit(&plans, &layers, refs)?;
        tracing::info!(
            archive = %path.display(),
            images = ?records.iter().map(|r| (&r.id, &r.tags)).collect::<Vec<_>>(),
            "archive imported"
        );
        Ok(records)
    }

    /// Imports a plain root file system tarball (maybe gzip or zstd) as a one-layer image
    /// tagged `reference`, like `docker import`. Its config has no entrypoint, command or
    /// environment; an OCI config and manifest are synthesised so it is stored like any other.
    pub fn import_rootfs(&self, path: &Path, reference: &str) -> Result<ImageRecord, ImageError> {
        let tag = normalize_reference(reference)?;
        let _lock = self.lock()?;
        let staging = Staging::create(&self.tmp_dir())?;
        let meta = fs::metadata(path).map_err(|e| ImageError::io("reading rootfs", path, e))?;
        if !meta.is_file() {
            return Err(ImageError::Archive {
                path: path.to_path_buf(),
                problem: "not a regular file".to_owned(),
            });
        }
        if meta.len() == 0 {
            return Err(ImageError::Archive {
                path: path.to_path_buf(),
                problem: "the file is empty".to_owned(),
            });
        }
        let blob = copy_staged(path, &staging.dir.join("rootfs"))?;
        let compression = stream::detect_file(&blob.path)
            .map_err(|e| ImageError::io("reading staged file", &blob.path, e))?;
        let layers_dir = staging.subdir("layers")?;
        let unpacked = layers_dir.join("rootfs");
        let name = path.display().to_string();
        let summary = unpack::unpack_layer(&blob.path, &name, &unpacked, &self.limits)?;
        let staged_dir = layers_dir.join(&summary.diff_id_hex);
        fs::rename(&unpacked, &staged_dir).map_err(|e| ImageError::io("renaming", &unpacked, e))?;

        let config = write_staged(
            &staging.dir.join("config"),
            &layout::synthesise_rootfs_config(&summary.diff_id_hex),
        )?;
        let layer = PlannedLayer {
            blob,
            media_type: compression.layer_media_type().to_owned(),
            diff_id_hex: summary.diff_id_hex.clone(),
        };
        let manifest = write_staged(
            &staging.dir.join("manifest"),
            &layout::synthesise_manifest(&config, std::slice::from_ref(&layer)),
        )?;
        let plan = PlannedImage {
            tags: vec![tag],
            manifest,
            config,
            created: None,
            layers: vec![layer],
        };
        let prepared = HashMap::from([(
            summary.diff_id_hex,
            PreparedLayer {
                staged_dir: Some(staged_dir),
                unpacked_bytes: summary.unpacked_bytes,
            },
        )]);
        let refs = Refs::load(&self.root)?;
        let record = self
            .commit(std::slice::from_ref(&plan), &prepared, refs)?
            .into_iter()
            .next()
            .expect("commit returns one record per image");
        tracing::info!(rootfs = %path.display(), image = %record.id, tags = ?record.tags, "rootfs imported");
        Ok(record)
    }

    /// Makes every layer of `plans` available: unpacks layers the store lacks into `dir`, and
    /// checks blobs the store has not seen against their diff_id.
    pub(super) fn prepare_layers(
        &self,
        plans: &[PlannedImage],
        dir: &Path,
        refs: &Refs,
    ) -> Result<HashMap<String, PreparedLayer>, ImageError> {
        let mut prepared: HashMap<String, PreparedLayer> = HashMap::new();
        let mut checked: HashSet<(&str, &str)> = HashSet::new();
        for layer in plans.iter().flat_map(|p| &p.layers) {
            let diff = layer.diff_id_hex.as_str();
            if !checked.insert((diff, layer.blob.hex.as_str())) {
                continue;
            }
            let in_store = self.layer_dir(diff).is_dir();
            if in_store && let Some(unpacked_bytes) = refs.known_layer(diff, &layer.blob.hex) {
                prepared.entry(diff.to_owned()).or_insert(PreparedLayer {
                    staged_dir: None,
                    unpacked_bytes,
                });
                continue;
            }
            if in_store || prepared.contains_key(diff) {
                // Already unpacked, from another blob: this blob must still hold that layer.
                let summary = unpack::hash_layer(&layer.blob.path, &layer.name(), &self.limits)?;
                check_diff_id(layer, &summary)?;
                prepared.entry(diff.to_owned()).or_insert(PreparedLayer {
                    staged_dir: None,
                    unpacked_bytes: summary.unpacked_bytes,
                });
                continue;
            }
            let dest = dir.join(diff);
            tracing::debug!(layer = %layer.name(), dest = %dest.display(), "unpacking layer");
            let summary =
                unpack::unpack_layer(&layer.blob.path, &layer.name(), &dest, &self.limits)?;
            check_diff_id(layer, &summary)?;
            prepared.insert(
                diff.to_owned(),
                PreparedLayer {
                    staged_dir: Some(dest),
                    unpacked_bytes: summary.unpacked_bytes,
                },
            );
        }
        Ok(prepared)
    }

    /// Moves blobs and layers into place, flushes them to disk, then records the images in
    /// refs.json. Returns one record per distinct image, in plan order.
    pub(super) fn commit(
        &self,
        plans: &[PlannedImage],
        prepared: &HashMap<String, PreparedLayer>,
        mut refs: Refs,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        for plan in plans {
            self.store_blob(&plan.manifest)?;
            self.store_blob(&plan.config)?;
            for layer in &plan.layers {
                self.store_blob(&layer.blob)?;
            }
        }
        for (diff, layer) in prepared {
            if let Some(dir) = &layer.staged_dir {
                self.store_layer(diff, dir)?;
            }
        }
        os::sync_filesystem(&self.root).map_err(|e| ImageError::io("syncing", &self.root, e))?;

        let before = refs.clone();
        let mut ids: Vec<String> = Vec::new();
        let mut replaced = Vec::new();
        for plan in plans {
            let id = format!("sha256:{}", plan.config.hex);
            let layers = plan
                .layers
                .iter()
                .map(|l| LayerEntry {
                    id: format!("sha256:{}", l.diff_id_hex),
                    blob: format!("sha256:{}", l.blob.hex),
                    media_type: l.media_type.clone(),
                    unpacked_bytes: prepared
                        .get(&l.diff_id_hex)
                        .map(|p| p.unpacked_bytes)
                        .expect("prepare_layers covers every layer"),
                })
                .collect();
            let entry = ImageEntry {
                manifest: format!("sha256:{}", plan.manifest.hex),
                created: plan.created.clone(),
                layers,
            };
            if let Some(old) = refs.images.insert(id.clone(), entry)
                && refs.images.get(&id) != Some(&old)
            {
                // The same image arrived with another manifest or other layer blobs (another
                // format or compression): the new ones replace the old.
                replaced.push((id.clone(), old));
            }
            for tag in &plan.tags {
                if let Some(old) = refs.tags.insert(tag.clone(), id.clone())
                    && old != id
                {
                    tracing::info!(tag = %tag, from = %old, to = %id, "tag moved to the imported image");
                }
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if refs != before {
            refs.save(&self.root, &self.tmp_dir())?;
        }
        for (id, old) in &replaced {
            self.delete_unused(&refs, id, old);
        }
        Ok(ids.iter().filter_map(|id| refs.record(id)).collect())
    }

    fn store_blob(&self, file: &StagedFile) -> Result<(), ImageError> {
        let dest = self.blob_path(&file.hex);
        if dest.exists() {
            return Ok(());
        }
        fs::set_permissions(&file.path, Permissions::from_mode(0o444))
            .map_err(|e| ImageError::io("setting permissions of", &file.path, e))?;
        fs::rename(&file.path, &dest).map_err(|e| ImageError::io("storing blob", &dest, e))
    }

    fn store_layer(&self, diff: &str, staged: &Path) -> Result<(), ImageError> {
        let dest = self.layer_dir(diff);
        if dest.exists() {
            return Ok(());
        }
        fs::rename(staged, &dest).map_err(|e| ImageError::io("storing layer", &dest, e))
    }
}

fn check_diff_id(layer: &PlannedLayer, summary: &LayerSummary) -> Result<(), ImageError> {
    if summary.diff_id_hex != layer.diff_id_hex {
        return Err(ImageError::DigestMismatch {
            what: format!("layer {}: uncompressed tar stream", layer.name()),
            expected: format!("sha256:{} (the diff_id in the config)", layer.diff_id_hex),
            actual: format!("sha256:{}", summary.diff_id_hex),
        });
    }
    Ok(())
}

/// Writes `bytes` to the new file `path`, hashing them.
pub(super) fn write_staged(path: &Path, bytes: &[u8]) -> Result<StagedFile, ImageError> {
    fs::write(path, bytes).map_err(|e| ImageError::io("writing staged file", path, e))?;
    Ok(StagedFile {
        path: path.to_path_buf(),
        hex: stream::sha256_hex(bytes),
        size: bytes.len() as u64,
    })
}

/// Copies the file `src` to the new file `dest`, hashing it as it is written.
fn copy_staged(src: &Path, dest: &Path) -> Result<StagedFile, ImageError> {
    let mut input = File::open(src).map_err(|e| ImageError::io("reading", src, e))?;
    let output =
        File::create_new(dest).map_err(|e| ImageError::io("writing staged file", dest, e))?;
    let mut writer = BufWriter::with_capacity(128 * 1024, output);
    let (hex, size) = stream::copy_hashing(&mut input, &mut writer)
        .and_then(|r| writer.flush().map(|()| r))
        .map_err(|e| ImageError::io("copying to staging", dest, e))?;
    Ok(StagedFile {
        path: dest.to_path_buf(),
        hex,
        size,
    })
}
