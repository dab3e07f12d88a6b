//! Image references for the store: the grammar lives in `dash_core::image_ref` (one grammar
//! for `dash apply`, the store and the registry client); this maps its error into the store's.

pub(crate) use dash_core::image_ref::id_prefix;

use super::ImageError;

/// Normalises an image reference: `busybox` becomes `busybox:latest`; see
/// [`dash_core::image_ref::normalize`].
pub fn normalize_reference(r: &str) -> Result<String, ImageError> {
    dash_core::image_ref::normalize(r).map_err(ImageError::from)
}

impl From<dash_core::image_ref::InvalidImageRef> for ImageError {
    fn from(e: dash_core::image_ref::InvalidImageRef) -> Self {
        ImageError::InvalidReference {
            reference: e.reference,
            reason: e.reason,
        }
    }
}
