//! The one error type of the image store.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
///
/// Messages are lowercase, name the file, entry or digest concerned and say what is wrong;
/// the underlying cause, where there is one, is kept as the `source`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file system operation on the store or on an input file failed.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An image reference does not follow the `[host[:port]/]name[:tag]` grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// No image has this tag, id or id prefix.
    #[error("image {reference:?} not found")]
    NotFound { reference: String },

    /// An id prefix matches more than one image.
    #[error("image id prefix {prefix:?} is ambiguous: it matches {count} images")]
    AmbiguousId { prefix: String, count: usize },

    /// The input archive is not something the store can import.
    #[error("archive {path}: {problem}")]
    Archive { path: PathBuf, problem: String },

    /// The input archive could not be read as a tar stream (corrupt, truncated, not a tar).
    #[error("archive {path}: {problem}")]
    ArchiveRead {
        path: PathBuf,
        problem: String,
        #[source]
        source: std::io::Error,
    },

    /// A JSON document (index, manifest, config, refs) could not be parsed.
    #[error("{what}: invalid json")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// A blob's content does not hash to the digest its descriptor (or file name) promises.
    #[error("{what}: content does not match digest {expected} (it hashes to {actual})")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A blob's length differs from the size its descriptor promises.
    #[error(
        "{what}: size mismatch: the descriptor says {expected} bytes, the content has {actual}"
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// A manifest, config or index is well-formed JSON but says something unusable.
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },

    /// A layer entry that would be unsafe to create (escape, device node, ...).
    #[error("layer {layer}: entry {entry:?} {problem}")]
    UnsafeEntry {
        layer: String,
        entry: String,
        problem: String,
    },

    /// A layer as a whole is unusable: too large, too many entries, truncated.
    #[error("layer {layer}: {problem}")]
    Layer { layer: String, problem: String },

    /// A layer's tar stream could not be read (corrupt compression or tar headers).
    #[error("layer {layer}: {problem}")]
    LayerRead {
        layer: String,
        problem: String,
        #[source]
        source: std::io::Error,
    },

    /// Creating a layer entry on disk failed.
    #[error("layer {layer}: cannot create entry {entry:?}")]
    LayerWrite {
        layer: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },

    /// The store is damaged: refs.json names a blob or layer that is not on disk.
    #[error("image store {root}: {problem}")]
    Damaged { root: PathBuf, problem: String },
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
