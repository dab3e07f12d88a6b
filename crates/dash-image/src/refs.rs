//! `refs.json`: which tag names which image, and what each image is made of. The only mutable
//! file of the store; replaced atomically (temp file, fsync, rename, fsync of the directory),
//! always after the blobs and layers it names are in place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ImageError, ImageRecord};

const REFS_FILE: &str = "refs.json";
const REFS_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Refs {
    #[serde(default)]
    pub(crate) version: u32,
    /// Normalised tag → image id (`sha256:<config hex>`).
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, String>,
    /// Image id → what the image is made of.
    #[serde(default)]
    pub(crate) images: BTreeMap<String, ImageEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageEntry {
    /// `sha256:<hex>` of the manifest blob.
    pub(crate) manifest: String,
    #[serde(default)]
    pub(crate) created: Option<String>,
    /// Bottom to top.
    pub(crate) layers: Vec<LayerEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerEntry {
    /// `sha256:<diff_id hex>`; the unpacked directory is `layers/<hex>`.
    pub(crate) id: String,
    /// `sha256:<hex>` of the (maybe compressed) layer blob.
    pub(crate) blob: String,
    pub(crate) media_type: String,
    /// Length of the uncompressed tar stream.
    pub(crate) unpacked_bytes: u64,
}

/// The hex part of a `sha256:<hex>` digest (the whole string if it has no prefix).
pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Refs {
    /// Loads `root/refs.json`; a store without one is empty.
    pub(crate) fn load(root: &Path) -> Result<Self, ImageError> {
        let path = root.join(REFS_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ImageError::io("reading", path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            what: format!("image store refs {}", path.display()),
            source,
        })
    }

    /// Writes `root/refs.json` atomically, staging the new content in `tmp_dir`.
    pub(crate) fn save(&self, root: &Path, tmp_dir: &Path) -> Result<(), ImageError> {
        let mut refs = self.clone();
        refs.version = REFS_VERSION;
        let bytes = serde_json::to_vec_pretty(&refs).expect("refs always serialise");
        let tmp = tmp_dir.join(format!("refs.json.{}", std::process::id()));
        let path = root.join(REFS_FILE);
        let write = || -> io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(root)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ImageError::io("writing", &path, e)
        })
    }

    /// The record of image `id`, if the store has it.
    pub(crate) fn record(&self, id: &str) -> Option<ImageRecord> {
        let entry = self.images.get(id)?;
        Some(ImageRecord {
            id: id.to_owned(),
            tags: self.tags_of(id),
            size_bytes: entry.layers.iter().map(|l| l.unpacked_bytes).sum(),
            created: entry.created.clone(),
            layers: entry.layers.iter().map(|l| l.id.clone()).collect(),
        })
    }

    /// Tags naming image `id`, sorted.
    pub(crate) fn tags_of(&self, id: &str) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, image)| *image == id)
            .map(|(tag, _)| tag.clone())
            .collect()
    }

    /// Hex digests of every blob some image uses: manifests, configs, layer blobs.
    pub(crate) fn blobs_in_use(&self) -> BTreeSet<String> {
        let mut blobs = BTreeSet::new();
        for (id, entry) in &self.images {
            blobs.insert(hex_of(id).to_owned());
            blobs.insert(hex_of(&entry.manifest).to_owned());
            for layer in &entry.layers {
                blobs.insert(hex_of(&layer.blob).to_owned());
            }
        }
        blobs
    }

    /// Hex diff_ids of every unpacked layer some image uses.
    pub(crate) fn layers_in_use(&self) -> BTreeSet<String> {
        self.images
            .values()
            .flat_map(|e| e.layers.iter().map(|l| hex_of(&l.id).to_owned()))
            .collect()
    }

    /// The unpacked size of layer `diff_hex` as recorded for blob `blob_hex`, if any image
    /// has that pair (then the blob was checked against the diff_id when it was imported).
    pub(crate) fn known_layer(&self, diff_hex: &str, blob_hex: &str) -> Option<u64> {
        self.images
            .values()
            .flat_map(|e| &e.layers)
            .find(|l| hex_of(&l.id) == diff_hex && hex_of(&l.blob) == blob_hex)
            .map(|l| l.unpacked_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id: &str, blob: &str) -> LayerEntry {
        LayerEntry {
            id: format!("sha256:{id}"),
            blob: format!("sha256:{blob}"),
            media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
            unpacked_bytes: 10,
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        assert_eq!(Refs::load(dir.path()).unwrap(), Refs::default());
        let mut refs = Refs::default();
        refs.tags
            .insert("a:latest".to_owned(), "sha256:c1".to_owned());
        refs.images.insert(
            "sha256:c1".to_owned(),
            ImageEntry {
                manifest: "sha256:m1".to_owned(),
                created: None,
                layers: vec![layer("d1", "b1"), layer("d2", "b2")],
            },
        );
        refs.save(dir.path(), &tmp).unwrap();
        let loaded = Refs::load(dir.path()).unwrap();
        assert_eq!(loaded.tags, refs.tags);
        assert_eq!(loaded.images, refs.images);
        assert_eq!(loaded.version, REFS_VERSION);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);

        let record = loaded.record("sha256:c1").unwrap();
        assert_eq!(record.tags, vec!["a:latest"]);
        assert_eq!(record.size_bytes, 20);
        assert_eq!(record.layers, vec!["sha256:d1", "sha256:d2"]);
        let blobs: Vec<_> = loaded.blobs_in_use().into_iter().collect();
        assert_eq!(blobs, vec!["b1", "b2", "c1", "m1"]);
        assert_eq!(loaded.known_layer("d2", "b2"), Some(10));
        assert_eq!(loaded.known_layer("d2", "b1"), None);
    }

    #[test]
    fn corrupt_refs_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(REFS_FILE), b"{not json").unwrap();
        let err = Refs::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("refs.json") && err.contains("invalid json"),
            "{err}"
        );
    }
}
