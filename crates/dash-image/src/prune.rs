//! Garbage collection: untagged images nobody keeps, the blobs and unpacked layers no image
//! uses, and the pull cache.

use std::collections::{BTreeSet, HashSet};

use super::refs::Refs;
use super::{ImageError, ImageStore};

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PruneReport {
    /// Ids of the images removed, sorted.
    pub images_removed: Vec<String>,
    /// Blobs removed from the store and from the pull cache.
    pub blobs_removed: usize,
    /// Unpacked layer directories removed.
    pub layers_removed: usize,
    /// Bytes of the files removed.
    pub bytes_freed: u64,
}

impl ImageStore {
    /// Removes every image that has no tag and is not in `keep` (image ids, `sha256:<hex>`;
    /// the daemon passes those its containers use), then every blob and unpacked layer no
    /// image left uses, and the pull cache's blobs and partial downloads. Nothing an image in
    /// `keep`, or any tagged image, uses is touched. The pull cache is left alone while a pull
    /// is running.
    ///
    /// The caller makes sure no container uses the layer dirs of an image not in `keep`.
    pub fn prune(&self, keep: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let _lock = self.lock()?;
        let mut refs = Refs::load(&self.root)?;
        let keep: HashSet<String> = keep
            .iter()
            .map(|id| {
                if id.starts_with("sha256:") {
                    id.clone()
                } else {
                    format!("sha256:{id}")
                }
            })
            .collect();
        let tagged: BTreeSet<&String> = refs.tags.values().collect();
        let doomed: Vec<String> = refs
            .images
            .keys()
            .filter(|id| !tagged.contains(id) && !keep.contains(*id))
            .cloned()
            .collect();
        if !doomed.is_empty() {
            for id in &doomed {
                refs.images.remove(id);
            }
            refs.save(&self.root, &self.tmp_dir())?;
            for id in &doomed {
                tracing::info!(image = %id, "untagged image pruned");
            }
        }
        let garbage = self.collect_garbage(&refs)?;
        let mut report = PruneReport {
            images_removed: doomed,
            blobs_removed: garbage.blobs,
            layers_removed: garbage.layers,
            bytes_freed: garbage.bytes,
        };
        let cache = self.pull_cache();
        match cache.try_lock_exclusive()? {
            Some(_pulls) => {
                for removed in [cache.clear_blobs()?, cache.clean_partial()?] {
                    report.blobs_removed += removed.files;
                    report.bytes_freed += removed.bytes;
                }
            }
            None => tracing::info!("a pull is running: the pull cache is left as it is"),
        }
        tracing::info!(
            images = report.images_removed.len(),
            blobs = report.blobs_removed,
            layers = report.layers_removed,
            bytes = report.bytes_freed,
            "image store pruned"
        );
        Ok(report)
    }
}
