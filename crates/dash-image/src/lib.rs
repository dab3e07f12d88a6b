//! dash-image: the image side of container_runtime. The image store imports image archives (OCI image layout or `docker save`)
//! and plain rootfs tarballs, keeps their blobs content-addressed, and unpacks every layer once
//! into its own directory, ready to be stacked as an overlayfs lowerdir.
//!
//! ```text
//!  image.tar[.gz|.zst]                         <root>/
//!    │ stage: copy each file to tmp/, hashing     ├── blobs/sha256/<hex>    manifests, configs, layer blobs
//!    │        it as it is written                 ├── layers/<diff_id hex>/ one unpacked layer each
//!    ▼                                            ├── refs.json             tag → image id; image → manifest, layers
//!  plan: index.json | manifest.json               ├── lock                  flock held by every import/remove
//!    │   (or a pulled manifest: import_pulled)    ├── tmp/                  work in progress; wiped by open()
//!    │   size + digest of every blob checked      └── pulls/                the registry pull cache (pull_cache.rs)
//!    ▼
//!  unpack each new layer into tmp/ (safe: no escape, no devices, size/entry limits),
//!    │   its diff_id checked against the config
//!    ▼
//!  commit: rename blobs, rename layers, syncfs, then write refs.json (atomic rename)
//! ```
//!
//! Because refs.json is written last, an import that fails or is killed leaves no image
//! behind: its staging directory is removed on failure, and `open()` removes whatever a killed
//! import left in `tmp/` and any blob or layer that refs.json does not name.
//!
//! Images pulled from a registry (`crate::registry`) are downloaded into `pulls/` first and then
//! imported through [`ImageStore::import_pulled`], the same path from staging on. `prune`
//! collects untagged images, unused blobs and layers, and the pull cache.
//!
//! Imports and removals take the store's lock (an flock on `<root>/lock`) for their whole
//! duration, so they run one at a time, across processes too. `list` and `resolve` only read
//! refs.json, which is always replaced whole, and take no lock.
//!
//! Synchronous, blocking code: async callers use `tokio::task::spawn_blocking`.

mod archive;
mod error;
mod import;
mod inspect;
mod layout;
mod os;
mod prune;
mod pull_cache;
mod pulled;
mod reference;
mod refs;
pub mod registry;
mod share;
mod store;
mod stream;
mod unpack;

use std::path::PathBuf;

pub use error::ImageError;
pub use inspect::{ImageInspect, LayerInspect};
pub use prune::PruneReport;
pub use reference::normalize_reference;
pub use share::ImageExport;

pub(crate) use pull_cache::PullCache;

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Normalised references naming the image, e.g. `busybox:latest`; sorted.
    pub tags: Vec<String>,
    /// Sum of the uncompressed sizes of the layers' tar streams.
    pub size_bytes: u64,
    /// The config's `created` time (RFC 3339), if it has one.
    pub created: Option<String>,
    /// Layer ids (`sha256:<diff_id hex>`), bottom to top.
    pub layers: Vec<String>,
}

/// What a container needs from an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// Unpacked layer directories, bottom to top (overlayfs wants `lowerdir=top:…:bottom`).
    pub layer_dirs: Vec<PathBuf>,
}

/// Limits that keep a hostile archive from filling the disk or memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed size of one layer's tar stream (contents and headers).
    pub max_layer_bytes: u64,
    /// Tar headers in one layer.
    pub max_layer_entries: u64,
    /// Uncompressed size of an imported archive.
    pub max_archive_bytes: u64,
    /// Tar headers in an imported archive.
    pub max_archive_entries: u64,
    /// Size of any one JSON document (index, manifest, config) and tar extension header.
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_layer_bytes: 8 << 30,
            max_layer_entries: 1_000_000,
            max_archive_bytes: 32 << 30,
            max_archive_entries: 100_000,
            max_metadata_bytes: 4 << 20,
        }
    }
}

/// The image store rooted at one directory. See the module documentation for the layout.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    limits: Limits,
}
