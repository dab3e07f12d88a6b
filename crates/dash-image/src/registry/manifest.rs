//! Resolving a reference to one image manifest: fetch what the tag or digest names; if it is
//! an index (OCI image index or Docker manifest list), pick the entry for the configured
//! platform and fetch that, checking its size and digest against the entry.
//!
//! ```text
//!  reference ──GET manifest──► index? ──platform──► GET manifest@digest ──► image manifest
//!                                 └──────────────── no ──────────────────────┘
//! ```

use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::PullError;
use super::session::Session;

/// Index nesting Dash follows (an index that points to an index that points to a manifest).
const MAX_INDEX_DEPTH: usize = 2;
const ACCEPTED: [&str; 4] = [
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// The image manifest a reference resolved to.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The manifest exactly as served (its sha256 is `digest`).
    pub(crate) bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`.
    pub(crate) digest: String,
    pub(crate) manifest: ImageManifest,
}

enum Kind {
    Manifest,
    Index,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

/// Fetches the image manifest for `image`, following an index to the entry for
/// `platform` (`(os, architecture)`, e.g. `("linux", "amd64")`).
pub(crate) async fn resolve(
    session: &Session,
    image: &Reference,
    reference: &str,
    platform: &(String, String),
    max_bytes: u64,
) -> Result<Resolved, PullError> {
    let mut target = image.clone();
    let mut expected: Option<Descriptor> = None;
    for _ in 0..=MAX_INDEX_DEPTH {
        let (bytes, _) = session
            .client
            .pull_manifest_raw(&target, &session.auth, &ACCEPTED)
            .await
            .map_err(|e| session.error(e, reference, "fetching the manifest"))?;
        let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
        let what = format!("manifest {digest}");
        if bytes.len() as u64 > max_bytes {
            return Err(unsupported(
                reference,
                &what,
                format!(
                    "is {} bytes, more than the {max_bytes} allowed",
                    bytes.len()
                ),
            ));
        }
        if let Some(entry) = &expected {
            // The client checked the content against the digest in the request.
            if bytes.len() as u64 != entry.size() {
                return Err(PullError::SizeMismatch {
                    reference: reference.to_owned(),
                    what: "manifest".to_owned(),
                    digest: entry.digest().to_string(),
                    expected: entry.size(),
                    actual: bytes.len() as u64,
                });
            }
        }
        match kind(&bytes, reference, &what)? {
            Kind::Manifest => {
                let manifest: ImageManifest = serde_json::from_slice(&bytes)
                    .map_err(|e| unsupported(reference, &what, format!("invalid json: {e}")))?;
                return Ok(Resolved {
                    bytes: bytes.to_vec(),
                    digest,
                    manifest,
                });
            }
            Kind::Index => {
                let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                    unsupported(
                        reference,
                        &format!("index {digest}"),
                        format!("invalid json: {e}"),
                    )
                })?;
                let entry = select_platform(&index, platform).ok_or_else(|| {
                    PullError::NoMatchingPlatform {
                        reference: reference.to_owned(),
                        digest: digest.clone(),
                        platform: format!("{}/{}", platform.0, platform.1),
                        available: platforms(&index),
                    }
                })?;
                tracing::debug!(reference, index = %digest, manifest = %entry.digest(), "index resolved for the platform");
                target = image.clone_with_digest(entry.digest().to_string());
                expected = Some(entry.clone());
            }
        }
    }
    Err(unsupported(
        reference,
        "index",
        format!("indexes are nested more than {MAX_INDEX_DEPTH} deep"),
    ))
}

fn unsupported(reference: &str, what: &str, problem: String) -> PullError {
    PullError::Unsupported {
        reference: reference.to_owned(),
        what: what.to_owned(),
        problem,
    }
}

fn kind(bytes: &[u8], reference: &str, what: &str) -> Result<Kind, PullError> {
    let v: Versioned = serde_json::from_slice(bytes)
        .map_err(|e| unsupported(reference, what, format!("invalid json: {e}")))?;
    if v.schema_version != Some(2) {
        return Err(unsupported(
            reference,
            what,
            format!(
                "schema version {} is not supported (only 2: OCI and Docker schema 2)",
                v.schema_version
                    .map_or("(none)".to_owned(), |n| n.to_string())
            ),
        ));
    }
    match v.media_type.as_deref() {
        Some(OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE) => Ok(Kind::Manifest),
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE) => Ok(Kind::Index),
        Some(other) => Err(unsupported(
            reference,
            what,
            format!("media type {other:?} is not an image manifest or index"),
        )),
        // OCI allows leaving the media type out; an index is the one with `manifests`.
        None if v.manifests.is_some() => Ok(Kind::Index),
        None => Ok(Kind::Manifest),
    }
}

/// The index entry for `(os, architecture)`: the first one that matches, preferring no
/// variant or the usual one (arm64 `v8`) over others.
pub(crate) fn select_platform<'a>(
    index: &'a ImageIndex,
    (os, arch): &(String, String),
) -> Option<&'a Descriptor> {
    let matching: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| p.os().to_string() == *os && p.architecture().to_string() == *arch)
        })
        .collect();
    let usual = |d: &&&Descriptor| {
        d.platform()
            .as_ref()
            .and_then(|p| p.variant().as_deref())
            .is_none_or(|v| arch == "arm64" && v == "v8")
    };
    matching
        .iter()
        .find(usual)
        .or_else(|| matching.first())
        .copied()
}

/// The platforms an index offers, for error messages.
fn platforms(index: &ImageIndex) -> String {
    let list: Vec<String> = index
        .manifests()
        .iter()
        .map(|d| match d.platform() {
            Some(p) => match p.variant() {
                Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                None => format!("{}/{}", p.os(), p.architecture()),
            },
            None => "unknown".to_owned(),
        })
        .collect();
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({ "os": os, "architecture": arch });
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_IMAGE_MEDIA_TYPE,
                    "digest": format!("sha256:{:064x}", i + 1),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn pick(index: &ImageIndex, os: &str, arch: &str) -> Option<String> {
        select_platform(index, &(os.to_owned(), arch.to_owned())).map(|d| d.digest().to_string())
    }

    #[test]
    fn the_configured_platform_is_chosen() {
        let idx = index(&[
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v9")),
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("unknown", "unknown", None),
        ]);
        assert_eq!(
            pick(&idx, "linux", "amd64"),
            Some(format!("sha256:{:064x}", 4))
        );
        assert_eq!(
            pick(&idx, "linux", "arm64"),
            Some(format!("sha256:{:064x}", 3))
        );
        assert_eq!(
            pick(&idx, "linux", "arm"),
            Some(format!("sha256:{:064x}", 1))
        );
        assert_eq!(pick(&idx, "linux", "s390x"), None);
        assert_eq!(pick(&idx, "windows", "amd64"), None);
        assert_eq!(
            platforms(&idx),
            "linux/arm/v7, linux/arm64/v9, linux/arm64/v8, linux/amd64, unknown/unknown"
        );
    }

    #[test]
    fn manifests_and_indexes_are_told_apart() {
        let k = |json: &str| kind(json.as_bytes(), "r", "manifest");
        assert!(matches!(
            k(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#),
            Ok(Kind::Manifest)
        ));
        assert!(matches!(
            k(r#"{"schemaVersion":2,"manifests":[]}"#),
            Ok(Kind::Index)
        ));
        assert!(matches!(
            k(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#
            ),
            Ok(Kind::Index)
        ));
        let err = k(r#"{"schemaVersion":1,"name":"x"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("schema version 1"), "{err}");
        let err = k(r#"{"schemaVersion":2,"mediaType":"text/plain"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("text/plain"), "{err}");
    }
}
