//! Images across the cluster: a master exports what a worker needs to rebuild an image it
//! holds (manifest, config, blob files by digest); the worker fetches the blobs it lacks into
//! `fetch/` (resumable: a partial file is continued from its length), checks each digest, and
//! imports them as if they had been pulled from a registry.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use super::stream::is_sha256_hex;
use super::{ImageError, ImageRecord, ImageStore};

/// What a master sends for an image.
#[derive(Debug, Clone)]
pub struct ImageExport {
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// `sha256:<hex>` of each layer blob with its size, bottom to top.
    pub layers: Vec<(String, u64)>,
}

impl ImageExport {
    /// What a master sent (`ImageManifest`): its manifest's digest and JSON, the config JSON;
    /// the layer list (digest and size of each, bottom to top) is read from the manifest.
    pub fn from_manifest(
        manifest_digest: String,
        manifest: String,
        config: String,
    ) -> Result<ImageExport, serde_json::Error> {
        let parsed: serde_json::Value = serde_json::from_str(&manifest)?;
        let layers = parsed["layers"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|d| Some((d["digest"].as_str()?.to_string(), d["size"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ImageExport {
            manifest_digest,
            manifest: manifest.into_bytes(),
            config: config.into_bytes(),
            layers,
        })
    }
}

impl ImageStore {
    /// The manifest, config and layer list of the image `reference` names.
    pub fn export(&self, reference: &str) -> Result<ImageExport, ImageError> {
        let inspect = self.inspect(reference)?;
        let read = |digest: &str| -> Result<Vec<u8>, ImageError> {
            let path = self.blob_file(digest)?;
            fs::read(&path).map_err(|e| ImageError::io("reading", &path, e))
        };
        Ok(ImageExport {
            manifest: read(&inspect.manifest_digest)?,
            config: read(&inspect.record.id)?,
            manifest_digest: inspect.manifest_digest,
            layers: inspect
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size_bytes))
                .collect(),
        })
    }

    /// The file of blob `digest` (`sha256:<hex>`), if the store has it.
    pub fn blob_file(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if !is_sha256_hex(hex) {
            return Err(ImageError::Invalid {
                what: format!("digest {digest:?}"),
                problem: "is not sha256:<64 hex digits>".into(),
            });
        }
        let path = self.blob_path(hex);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ImageError::NotFound {
                reference: digest.to_string(),
            })
        }
    }

    /// Whether the store holds blob `digest` already.
    pub fn has_blob_digest(&self, digest: &str) -> bool {
        digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| self.has_blob(hex))
    }

    /// Where fetched blobs wait for their import: `<root>/fetch/<hex>` (complete, verified)
    /// and `<hex>.partial` (being fetched).
    pub fn fetch_path(&self, digest: &str, partial: bool) -> Result<PathBuf, ImageError> {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if !is_sha256_hex(hex) {
            return Err(ImageError::Invalid {
                what: format!("digest {digest:?}"),
                problem: "is not sha256:<64 hex digits>".into(),
            });
        }
        let dir = self.root().join("fetch");
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("creating", &dir, e))?;
        Ok(dir.join(if partial {
            format!("{hex}.partial")
        } else {
            hex.to_string()
        }))
    }

    /// Checks a finished `.partial` against its digest and moves it into place.
    pub fn finish_fetch(&self, digest: &str) -> Result<(), ImageError> {
        let partial = self.fetch_path(digest, true)?;
        let mut f = fs::File::open(&partial).map_err(|e| ImageError::io("opening", &partial, e))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| ImageError::io("reading", &partial, e))?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
        }
        let got: String = sha2::Digest::finalize(hasher)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if format!("sha256:{got}") != digest {
            let _ = fs::remove_file(&partial);
            return Err(ImageError::Invalid {
                what: format!("blob {digest} fetched from a master"),
                problem: format!("has digest sha256:{got}; it was discarded"),
            });
        }
        let done = self.fetch_path(digest, false)?;
        fs::rename(&partial, &done).map_err(|e| ImageError::io("renaming", &partial, e))
    }

    /// Imports a fetched image under `tag`, then drops the fetched files it used.
    pub fn import_fetched(
        &self,
        tag: &str,
        export: &ImageExport,
    ) -> Result<ImageRecord, ImageError> {
        let dir = self.root().join("fetch");
        let record =
            self.import_pulled(tag, &export.manifest, &export.config, &|digest: &str| {
                dir.join(digest.strip_prefix("sha256:").unwrap_or(digest))
            })?;
        for (digest, _) in &export.layers {
            if let Ok(p) = self.fetch_path(digest, false) {
                let _ = fs::remove_file(p);
            }
        }
        Ok(record)
    }
}
