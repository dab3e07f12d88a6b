//! Inspecting an image: its record, what a container needs from its config, and what it is
//! made of (manifest digest, layer blobs with their sizes).

use std::fs;

use super::refs::{Refs, hex_of};
use super::store::find;
use super::{ImageConfig, ImageError, ImageRecord, ImageStore, layout};

/// Everything the store knows about one image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInspect {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// `sha256:<hex>` of the manifest: the digest a registry knows the image by (synthesised
    /// for `docker save` archives and rootfs imports).
    pub manifest_digest: String,
    /// Bottom to top.
    pub layers: Vec<LayerInspect>,
}

/// One layer of an inspected image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInspect {
    /// `sha256:<hex>` of the layer blob as stored (maybe compressed).
    pub digest: String,
    /// The layer blob's size.
    pub size_bytes: u64,
    /// `sha256:<hex>` of the uncompressed tar stream (the diff_id); also the layer's id.
    pub diff_id: String,
    pub media_type: String,
    /// Length of the uncompressed tar stream.
    pub unpacked_bytes: u64,
}

impl ImageStore {
    /// Describes the image `reference` names (a tag, digest reference, id or id prefix, as for
    /// [`ImageStore::resolve`]).
    pub fn inspect(&self, reference: &str) -> Result<ImageInspect, ImageError> {
        let refs = Refs::load(&self.root)?;
        let (id, _) = find(&refs, reference)?;
        let entry = &refs.images[&id];
        let record = refs.record(&id).expect("find returns ids of refs.images");
        let config = layout::image_config(&self.load_config(&id)?);
        let layers = entry
            .layers
            .iter()
            .map(|layer| {
                let path = self.blob_path(hex_of(&layer.blob));
                let size_bytes = fs::metadata(&path)
                    .map_err(|_| {
                        self.damaged(format!(
                            "blob {} of layer {} of image {id} is missing",
                            layer.blob, layer.id
                        ))
                    })?
                    .len();
                Ok(LayerInspect {
                    digest: layer.blob.clone(),
                    size_bytes,
                    diff_id: layer.id.clone(),
                    media_type: layer.media_type.clone(),
                    unpacked_bytes: layer.unpacked_bytes,
                })
            })
            .collect::<Result<_, ImageError>>()?;
        Ok(ImageInspect {
            record,
            config,
            manifest_digest: entry.manifest.clone(),
            layers,
        })
    }
}
