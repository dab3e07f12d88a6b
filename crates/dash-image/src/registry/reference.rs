//! Registry references, normalised the way docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `127.0.0.1:5000/bb@sha256:…` keeps its digest.

pub use dash_core::image_ref::DEFAULT_REGISTRY;
pub(crate) use dash_core::image_ref::canonical_registry;

use super::PullError;
use crate::normalize_reference;

/// A reference taken apart with docker's defaults (one type for the whole code base).
pub type RegistryRef = dash_core::image_ref::ImageRef;

/// Parses an image reference with docker's defaults; see [`dash_core::image_ref::ImageRef`].
pub fn parse_reference(r: &str) -> Result<RegistryRef, PullError> {
    r.parse().map_err(
        |e: dash_core::image_ref::InvalidImageRef| PullError::InvalidReference {
            reference: e.reference,
            reason: e.reason,
        },
    )
}

/// Checks a registry name given on its own (login, the insecure list): `host[:port]`.
pub fn check_registry(registry: &str) -> Result<String, PullError> {
    let canonical = canonical_registry(registry.trim());
    let invalid = |reason: &str| PullError::InvalidRegistry {
        registry: registry.to_owned(),
        reason: reason.to_owned(),
    };
    if canonical.is_empty() {
        return Err(invalid("it is empty"));
    }
    // A registry is valid when a reference to an image on it is.
    normalize_reference(&format!("{canonical}/x"))
        .map_err(|_| invalid("it is not a host name with an optional :port"))?;
    if !(canonical.contains('.') || canonical.contains(':') || canonical == "localhost") {
        return Err(invalid(
            "a registry name has a '.' or a ':port' or is localhost (else it reads as a \
             docker.io repository)",
        ));
    }
    Ok(canonical)
}

/// True for registries on this host: `localhost`, 127.0.0.0/8 and `::1`, with any port. Only
/// these (and the configured insecure ones) are reached over plain HTTP.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => registry,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[path = "reference_test.rs"]
mod tests;
