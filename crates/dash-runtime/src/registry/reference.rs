//! Registry references, normalised the way docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `127.0.0.1:5000/bb@sha256:…` keeps its digest.

use std::fmt;

use super::PullError;
use crate::image::normalize_reference;

/// The registry Docker uses when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A reference taken apart: where the image lives and which one it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]`; `docker.io` when the reference names no registry.
    pub registry: String,
    /// The repository path in the registry; `library/<name>` for single-name docker.io ones.
    pub repository: String,
    /// The tag; `latest` when the reference has neither tag nor digest.
    pub tag: Option<String>,
    /// `sha256:<hex>` of the manifest (or index), when the reference pins one.
    pub digest: Option<String>,
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses an image reference (`[registry/]repository[:tag][@sha256:<64 hex>]`) with docker's
/// defaults: registry `docker.io` (`index.docker.io` is the same), `library/` before
/// single-name docker.io repositories, tag `latest` when there is neither tag nor digest.
///
/// The first path component names a registry when more follow and it has a `.` or a `:` or
/// is `localhost`: `localhost/bb` is on `localhost`, `team/bb` on docker.io.
pub fn parse_reference(r: &str) -> Result<RegistryRef, PullError> {
    // The store's grammar check, which also validates the digest.
    normalize_reference(r).map_err(|e| match e {
        crate::image::ImageError::InvalidReference { reference, reason } => {
            PullError::InvalidReference { reference, reason }
        }
        other => PullError::InvalidReference {
            reference: r.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let (named, digest) = match r.split_once('@') {
        Some((named, digest)) => (named, Some(digest.to_owned())),
        None => (r, None),
    };
    let (name, tag) = match named.rfind(':') {
        Some(i) if !named[i..].contains('/') => (&named[..i], Some(named[i + 1..].to_owned())),
        _ => (named, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
    };
    let registry = canonical_registry(&registry);
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_owned()),
        (tag, _) => tag,
    };
    Ok(RegistryRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// The name credentials and the insecure list use for a registry: `index.docker.io` and
/// `registry-1.docker.io` are `docker.io`; a scheme and a path (`https://host/v1/`, as in
/// docker's config.json) are dropped.
pub(crate) fn canonical_registry(registry: &str) -> String {
    let without_scheme = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_owned();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_owned(),
        _ => host,
    }
}

/// Checks a registry name given on its own (login, the insecure list): `host[:port]`.
pub(crate) fn check_registry(registry: &str) -> Result<String, PullError> {
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
