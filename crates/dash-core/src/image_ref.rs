//! Image references: `[host[:port]/]path[:tag]` or `[host[:port]/]path[:tag]@sha256:<hex>`, the
//! grammar of the distribution project (`docker/distribution/reference`).
//!
//! One grammar for every door: `dash apply` (so `--dry-run` refuses a malformed reference
//! before anything else), the image store (tags are kept normalised) and the registry client
//! ([`ImageRef`], with docker's defaults).

use std::fmt;

/// A reference that does not follow the grammar, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct InvalidImageRef {
    pub reference: String,
    pub reason: String,
}

/// The registry Docker uses when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Longest repository name the grammar allows (without the tag).
const MAX_NAME_LEN: usize = 255;
/// Longest tag the grammar allows.
const MAX_TAG_LEN: usize = 128;

/// Normalises an image reference: `busybox` becomes `busybox:latest`.
///
/// Registry and host prefixes are kept as written (`localhost/bb:1` stays `localhost/bb:1`;
/// `busybox` does not become `docker.io/library/busybox`).
///
/// A digest reference (`name@sha256:<64 hex digits>`, the manifest digest an image was pulled
/// by) stays one, without a tag: `bb:1@sha256:…` becomes `bb@sha256:…`, since the digest alone
/// names the image. The store keeps it like a tag, so the image is found by the reference it
/// was pulled with. Only sha256 digests are accepted.
pub fn normalize(r: &str) -> Result<String, InvalidImageRef> {
    let invalid = |reason: &str| InvalidImageRef {
        reference: r.to_owned(),
        reason: reason.to_owned(),
    };
    if r.is_empty() {
        return Err(invalid("it is empty"));
    }
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    if let Some((named, digest)) = r.split_once('@') {
        let valid_digest = digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && id_prefix(hex).is_some());
        if !valid_digest {
            return Err(invalid(
                "digest references must be name@sha256:<64 lowercase hex digits>",
            ));
        }
        let tagged = normalize(named).map_err(|e| invalid(&e.reason))?;
        let name = tagged
            .rsplit_once(':')
            .map_or(tagged.as_str(), |(name, _)| name);
        return Ok(format!("{name}@{digest}"));
    }
    // The tag is after the last ':' unless a '/' follows it (then the ':' is a port).
    let (name, tag) = match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (&r[..i], Some(&r[i + 1..])),
        _ => (r, None),
    };
    if let Some(tag) = tag {
        check_tag(tag).map_err(|reason| invalid(&reason))?;
    }
    check_name(name).map_err(|reason| invalid(&reason))?;
    Ok(format!("{name}:{}", tag.unwrap_or("latest")))
}

/// If `r` looks like an image id or id prefix (`sha256:<hex>` or at least 12 lowercase hex
/// digits), returns the hex part.
pub fn id_prefix(r: &str) -> Option<&str> {
    let hex = r.strip_prefix("sha256:").unwrap_or(r);
    let ok = (12..=64).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(hex)
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        None => Err("the tag after ':' is empty".to_owned()),
        Some(_) if bytes.len() > MAX_TAG_LEN => {
            Err(format!("the tag is longer than {MAX_TAG_LEN} characters"))
        }
        Some(&first) if !word(first) => Err(format!(
            "the tag {tag:?} must start with a letter, digit or '_'"
        )),
        Some(_) if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => Err(format!(
            "the tag {tag:?} may only contain letters, digits, '_', '.' and '-'"
        )),
        Some(_) => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the repository name is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the repository name is longer than {MAX_NAME_LEN} characters"
        ));
    }
    let mut parts = name.split('/').peekable();
    let first = parts.next().unwrap_or_default();
    let has_more = parts.peek().is_some();
    // Like docker: the first part is a registry host only if more parts follow and it looks
    // like a host (has a '.' or a ':' or is "localhost") or has upper case letters.
    let is_domain = has_more
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()));
    if is_domain {
        check_domain(first)?;
    } else {
        check_path_component(first)?;
    }
    for part in parts {
        check_path_component(part)?;
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!(
            "the registry host {host:?} is not a valid host name"
        ));
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5)
    {
        return Err(format!("the registry port {port:?} is not a number"));
    }
    Ok(())
}

/// `[a-z0-9]+ (([._]|__|-+) [a-z0-9]+)*`
fn check_path_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(
            "the repository name has an empty path component ('//' or a '/' at an end)".to_owned(),
        );
    }
    if part.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("the repository name {part:?} must be lowercase"));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bad = || {
        Err(format!(
            "the repository name {part:?} may only contain lowercase letters and digits, \
             separated by '.', '_', '__' or dashes"
        ))
    };
    let b = part.as_bytes();
    if !alnum(b[0]) {
        return bad();
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' if b.get(i + 1) == Some(&b'_') => i += 2,
            b'_' => i += 1,
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return bad(),
        }
        if !b.get(i).is_some_and(|&c| alnum(c)) {
            return bad();
        }
    }
    Ok(())
}

/// A reference taken apart with docker's defaults: where the image lives and which one it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]`; `docker.io` when the reference names no registry.
    pub registry: String,
    /// The repository path in the registry; `library/<name>` for single-name docker.io ones.
    pub repository: String,
    /// The tag; `latest` when the reference has neither tag nor digest.
    pub tag: Option<String>,
    /// `sha256:<hex>` of the manifest (or index), when the reference pins one.
    pub digest: Option<String>,
}

impl fmt::Display for ImageRef {
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

impl std::str::FromStr for ImageRef {
    type Err = InvalidImageRef;

    /// Parses `[registry/]repository[:tag][@sha256:<64 hex>]` with docker's defaults: registry
    /// `docker.io` (`index.docker.io` is the same), `library/` before single-name docker.io
    /// repositories, tag `latest` when there is neither tag nor digest.
    ///
    /// The first path component names a registry when more follow and it has a `.` or a `:` or
    /// is `localhost`: `localhost/bb` is on `localhost`, `team/bb` on docker.io.
    fn from_str(r: &str) -> Result<Self, Self::Err> {
        normalize(r)?;
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
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// The name credentials and the insecure list use for a registry: `index.docker.io` and
/// `registry-1.docker.io` are `docker.io`; a scheme and a path (`https://host/v1/`, as in
/// docker's config.json) are dropped.
pub fn canonical_registry(registry: &str) -> String {
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

#[cfg(test)]
#[path = "image_ref_test.rs"]
mod tests;
