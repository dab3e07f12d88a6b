//! The one error type of registry pulls.

use std::path::PathBuf;
use std::sync::Arc;

use crate::ImageError;

/// Everything that can go wrong pulling an image or logging in to a registry.
///
/// `Clone`, because one pull's result reaches every caller that joined it: causes are kept
/// behind an `Arc`. Messages are lowercase and name the reference, registry or digest.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// The reference does not follow the `[registry/]repository[:tag][@sha256:<hex>]` grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A registry name (for login or in the config) is not `host[:port]`.
    #[error("invalid registry name {registry:?}: {reason}")]
    InvalidRegistry { registry: String, reason: String },

    /// The registry configuration is unusable.
    #[error("invalid registry config: {problem}")]
    Config { problem: String },

    /// The registry (or its token service) refused the credentials.
    #[error("authentication failed for {registry}: {reason}")]
    AuthenticationFailed { registry: String, reason: String },

    /// The registry wants credentials and none are stored for it.
    #[error(
        "{registry} requires authentication to pull {reference}: no credentials are stored for \
         {registry} (log in first)"
    )]
    AuthenticationRequired { registry: String, reference: String },

    /// The registry does not have the repository, tag or digest.
    #[error("image {reference} not found in {registry}")]
    NotFound { registry: String, reference: String },

    /// A request to the registry failed (unreachable, TLS, an unexpected answer).
    #[error("registry {registry}: {action}")]
    Registry {
        registry: String,
        action: String,
        #[source]
        source: Arc<oci_client::errors::OciDistributionError>,
    },

    /// A multi-platform index has no image for the configured platform.
    #[error(
        "{reference}: the image index {digest} has no image for {platform} (it has: {available})"
    )]
    NoMatchingPlatform {
        reference: String,
        digest: String,
        platform: String,
        available: String,
    },

    /// A manifest, index or config is something Dash cannot use.
    #[error("{reference}: {what}: {problem}")]
    Unsupported {
        reference: String,
        what: String,
        problem: String,
    },

    /// Content does not hash to the digest that names it.
    #[error(
        "{reference}: {what} content does not match its digest: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },

    /// Content is longer or shorter than its descriptor says.
    #[error("{reference}: {what} {digest}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        reference: String,
        what: String,
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// A blob download broke off.
    #[error("{reference}: downloading blob {digest} failed")]
    Download {
        reference: String,
        digest: String,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// A file operation on the pull cache or the credentials file failed.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The image store refused or failed the import.
    #[error("storing {reference} in the image store")]
    Store {
        reference: String,
        #[source]
        source: Arc<ImageError>,
    },

    /// The credentials file or docker config cannot be read.
    #[error("credentials file {path}: {problem}")]
    Credentials { path: PathBuf, problem: String },

    /// The credentials kept for a registry (a master's state) cannot be read.
    #[error("the credentials kept for {registry}: {problem}")]
    CredentialStore { registry: String, problem: String },

    /// A blocking step of the pull panicked or was cancelled.
    #[error("the pull of {reference} was interrupted: {reason}")]
    Interrupted { reference: String, reason: String },
}

impl PullError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source: Arc::new(e),
        }
    }

    pub(crate) fn store(reference: &str, e: ImageError) -> Self {
        Self::Store {
            reference: reference.to_owned(),
            source: Arc::new(e),
        }
    }

    /// True when content a registry served failed verification: whatever the pull fetched
    /// from there is not kept.
    pub(crate) fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::DigestMismatch { .. } | Self::SizeMismatch { .. }
        )
    }
}
