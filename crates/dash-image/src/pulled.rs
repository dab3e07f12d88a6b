//! Importing an image pulled from a registry: the manifest and config arrive as bytes, the
//! layer blobs as files the puller downloaded (and verified) into the pull cache. From there on
//! it is the archive import's path: stage, check, unpack new layers, commit, refs.json last.
//!
//! ```text
//!  manifest, config (bytes)  ──► staging: written and hashed; config checked against the manifest
//!  pull cache blobs/<hex>    ──► staging: hard link (or copy), hashed again, checked against
//!                                the manifest's size and digest
//!  store blobs/sha256/<hex>  ──► used as they are (verified when they were imported)
//!                                 │
//!                                 ▼
//!               prepare_layers (unpack each new layer once, diff_id checked) → commit
//! ```

use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, DigestAlgorithm, ImageManifest};

use super::archive::StagedFile;
use super::import::{Staging, write_staged};
use super::layout::{self, PlannedImage, PlannedLayer};
use super::refs::Refs;
use super::stream;
use super::{ImageError, ImageRecord, ImageStore, normalize_reference};

impl ImageStore {
    /// Imports an image pulled from a registry and tags it `tag` (normalised first).
    ///
    /// `manifest` is the image manifest (OCI or Docker schema 2) exactly as the registry served
    /// it: its sha256 is the manifest digest kept for the image. `config` is the config blob
    /// the manifest names. `blob` maps a layer digest (`sha256:<hex>`) to the file the puller
    /// downloaded it to; it is only asked for layers the store does not hold yet. Each such
    /// file is hard-linked (or copied) into staging and hashed again; one that does not match
    /// the manifest's size and digest is an error, and is removed so that the next pull
    /// fetches it again. The caller removes the files once this returns `Ok`: by then the
    /// blobs live in the store.
    ///
    /// All or nothing, like [`ImageStore::import_archive`]: each new layer is unpacked once,
    /// safely, and checked against its diff_id, and refs.json is written last.
    pub fn import_pulled(
        &self,
        tag: &str,
        manifest: &[u8],
        config: &[u8],
        blob: &dyn Fn(&str) -> PathBuf,
    ) -> Result<ImageRecord, ImageError> {
        let tag = normalize_reference(tag)?;
        let what = format!("manifest sha256:{} of {tag}", stream::sha256_hex(manifest));
        let max = self.limits.max_metadata_bytes;
        for (kind, bytes) in [("manifest", manifest), ("config", config)] {
            if bytes.len() as u64 > max {
                return Err(ImageError::Invalid {
                    what: format!("{kind} of {tag}"),
                    problem: format!(
                        "is {} bytes, more than the limit for metadata of {max} bytes \
                         (max_metadata_bytes)",
                        bytes.len()
                    ),
                });
            }
        }
        let parsed: ImageManifest =
            serde_json::from_slice(manifest).map_err(|source| ImageError::Json {
                what: what.clone(),
                source,
            })?;

        let _lock = self.lock()?;
        let staging = Staging::create(&self.tmp_dir())?;
        let manifest_file = write_staged(&staging.dir.join("manifest"), manifest)?;
        let config_file = write_staged(&staging.dir.join("config"), config)?;
        check_staged(&config_file, parsed.config(), "config")?;
        let (created, diff_ids) =
            layout::read_config_for(&config_file, &what, parsed.layers().len(), &self.limits)?;
        let blobs_dir = staging.subdir("blobs")?;
        let mut layers: Vec<PlannedLayer> = Vec::with_capacity(diff_ids.len());
        for (descriptor, diff_id_hex) in parsed.layers().iter().zip(diff_ids) {
            let hex = sha256_of(descriptor, "layer")?;
            let earlier = layers.iter().find(|l| l.blob.hex == hex);
            let file = if let Some(earlier) = earlier {
                // The same blob twice in one image (older images repeat the empty layer).
                check_staged(&earlier.blob, descriptor, "layer")?;
                earlier.blob.clone()
            } else if self.has_blob(&hex) {
                let path = self.blob_path(&hex);
                let size = fs::metadata(&path)
                    .map_err(|e| ImageError::io("reading", &path, e))?
                    .len();
                let file = StagedFile { path, hex, size };
                check_staged(&file, descriptor, "layer")?;
                file
            } else {
                let source = blob(&format!("sha256:{hex}"));
                stage_pulled(&source, &blobs_dir.join(&hex), descriptor)?
            };
            layers.push(PlannedLayer {
                blob: file,
                media_type: descriptor.media_type().to_string(),
                diff_id_hex,
            });
        }
        let plan = PlannedImage {
            tags: vec![tag],
            manifest: manifest_file,
            config: config_file,
            created,
            layers,
        };
        let refs = Refs::load(&self.root)?;
        let prepared = self.prepare_layers(
            std::slice::from_ref(&plan),
            &staging.subdir("layers")?,
            &refs,
        )?;
        let record = self
            .commit(std::slice::from_ref(&plan), &prepared, refs)?
            .into_iter()
            .next()
            .expect("commit returns one record per image");
        tracing::info!(
            image = %record.id,
            tags = ?record.tags,
            manifest = %format!("sha256:{}", plan.manifest.hex),
            "pulled image imported"
        );
        Ok(record)
    }
}

/// The hex of a descriptor's sha256 digest; other algorithms are refused.
fn sha256_of(descriptor: &Descriptor, kind: &str) -> Result<String, ImageError> {
    let digest = descriptor.digest();
    if digest.algorithm() != &DigestAlgorithm::Sha256 {
        return Err(ImageError::Invalid {
            what: format!("{kind} {digest}"),
            problem: "only sha256 digests are supported".to_owned(),
        });
    }
    Ok(digest.digest().to_owned())
}

fn check_staged(file: &StagedFile, descriptor: &Descriptor, kind: &str) -> Result<(), ImageError> {
    let hex = sha256_of(descriptor, kind)?;
    let what = format!("{kind} {}", descriptor.digest());
    if file.size != descriptor.size() {
        return Err(ImageError::SizeMismatch {
            what,
            expected: descriptor.size(),
            actual: file.size,
        });
    }
    if file.hex != hex {
        return Err(ImageError::DigestMismatch {
            what,
            expected: format!("sha256:{hex}"),
            actual: format!("sha256:{}", file.hex),
        });
    }
    Ok(())
}

/// Links (or copies) the pulled blob `source` to `dest` and checks it against `descriptor`.
/// A source that does not match is removed: it must not be trusted by the next pull.
fn stage_pulled(
    source: &Path,
    dest: &Path,
    descriptor: &Descriptor,
) -> Result<StagedFile, ImageError> {
    match fs::hard_link(source, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::io("reading pulled blob", source, e));
        }
        Err(_) => copy_file(source, dest)?,
    }
    let file = hash_file(dest)?;
    let checked = check_staged(&file, descriptor, "pulled layer");
    if checked.is_err() {
        tracing::warn!(blob = %source.display(), "pulled blob does not match its digest; removed");
        let _ = fs::remove_file(source);
    }
    checked.map(|()| file)
}

fn copy_file(source: &Path, dest: &Path) -> Result<(), ImageError> {
    let mut input = fs::File::open(source).map_err(|e| ImageError::io("reading", source, e))?;
    let output =
        fs::File::create_new(dest).map_err(|e| ImageError::io("writing staged file", dest, e))?;
    let mut writer = BufWriter::with_capacity(128 * 1024, output);
    io::copy(&mut input, &mut writer)
        .and_then(|_| writer.flush())
        .map_err(|e| ImageError::io("copying to staging", dest, e))
}

fn hash_file(path: &Path) -> Result<StagedFile, ImageError> {
    let file = fs::File::open(path).map_err(|e| ImageError::io("reading", path, e))?;
    let mut reader = BufReader::with_capacity(128 * 1024, file);
    let (hex, size) = stream::copy_hashing(&mut reader, &mut io::sink())
        .map_err(|e| ImageError::io("reading", path, e))?;
    Ok(StagedFile {
        path: path.to_path_buf(),
        hex,
        size,
    })
}
