//! The two archive formats, read into one plan per image:
//! - OCI image layout: `oci-layout`, `index.json` (maybe nested indexes), `blobs/sha256/<hex>`;
//!   every manifest, config and layer is checked against the size and digest of the
//!   descriptor that names it.
//! - `docker save`: `manifest.json` (`Config`, `RepoTags`, `Layers` as file names). File names
//!   that carry a digest (`<hex>.json`, `blobs/sha256/<hex>`) are checked against the content;
//!   layers are checked against the config's diff_ids when unpacked. An OCI manifest is
//!   synthesised so the image is stored like any other.

use oci_spec::image::{
    Arch, Descriptor, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os,
};
use serde::Deserialize;

use super::archive::{self, StagedArchive, StagedFile};
use super::stream;
use super::{ImageConfig, ImageError, Limits, normalize_reference};

/// One image of an archive, with every blob staged and checked against its descriptor.
#[derive(Debug, Clone)]
pub(crate) struct PlannedImage {
    /// Normalised tags.
    pub(crate) tags: Vec<String>,
    pub(crate) manifest: StagedFile,
    /// The config blob; its digest is the image id.
    pub(crate) config: StagedFile,
    pub(crate) created: Option<String>,
    pub(crate) layers: Vec<PlannedLayer>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedLayer {
    pub(crate) blob: StagedFile,
    pub(crate) media_type: String,
    /// Lowercase hex of the diff_id the config promises for this layer.
    pub(crate) diff_id_hex: String,
}

impl PlannedLayer {
    /// How the layer is named in errors: its blob digest.
    pub(crate) fn name(&self) -> String {
        format!("sha256:{}", self.blob.hex)
    }
}

const INDEX_NESTING_MAX: usize = 4;
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// containerd (and `docker save` since 25) put the full image name here.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Plans the images of an OCI image layout.
pub(crate) fn plan_oci(
    archive: &StagedArchive,
    limits: &Limits,
) -> Result<Vec<PlannedImage>, ImageError> {
    let index: ImageIndex = archive.read_json("index.json", limits)?;
    let mut manifests = Vec::new();
    collect_manifests(archive, &index, &[], 0, limits, &mut manifests)?;
    if manifests.is_empty() {
        return Err(ImageError::Archive {
            path: archive.source().to_path_buf(),
            problem: format!(
                "index.json lists no image manifest for {}/{}",
                Os::default(),
                Arch::default()
            ),
        });
    }
    manifests
        .into_iter()
        .map(|(descriptor, tags)| plan_manifest(archive, &descriptor, tags, limits))
        .collect()
}

fn collect_manifests(
    archive: &StagedArchive,
    index: &ImageIndex,
    inherited_tags: &[String],
    depth: usize,
    limits: &Limits,
    out: &mut Vec<(Descriptor, Vec<String>)>,
) -> Result<(), ImageError> {
    for descriptor in index.manifests() {
        if let Some(platform) = descriptor.platform() {
            // Multi-platform indexes (and buildx attestations, platform unknown/unknown) list
            // manifests this node cannot run.
            if platform.os() != &Os::Linux || platform.architecture() != &Arch::default() {
                continue;
            }
        }
        let mut tags = tags_of(descriptor)?;
        if tags.is_empty() {
            tags = inherited_tags.to_vec();
        }
        match descriptor.media_type() {
            MediaType::ImageIndex => {}
            MediaType::Other(t) if t == DOCKER_MANIFEST_LIST => {}
            MediaType::ImageManifest => {
                out.push((descriptor.clone(), tags));
                continue;
            }
            MediaType::Other(t) if t == DOCKER_MANIFEST => {
                out.push((descriptor.clone(), tags));
                continue;
            }
            // Artifacts and anything else that is not an image.
            _ => continue,
        }
        if depth >= INDEX_NESTING_MAX {
            return Err(ImageError::Archive {
                path: archive.source().to_path_buf(),
                problem: format!("image indexes are nested more than {INDEX_NESTING_MAX} deep"),
            });
        }
        let file = verified_blob(archive, descriptor, "index")?;
        let nested: ImageIndex =
            archive::read_json_file(&file, &format!("index {}", descriptor.digest()), limits)?;
        collect_manifests(archive, &nested, &tags, depth + 1, limits, out)?;
    }
    Ok(())
}

/// Tags named by a descriptor's annotations: containerd's full image name if present, else
/// the OCI ref name (taken as a reference: `busybox:1` or `busybox`).
fn tags_of(descriptor: &Descriptor) -> Result<Vec<String>, ImageError> {
    let Some(annotations) = descriptor.annotations() else {
        return Ok(Vec::new());
    };
    let name = annotations
        .get(ANNOTATION_CONTAINERD_NAME)
        .or_else(|| annotations.get(ANNOTATION_REF_NAME));
    match name {
        Some(name) => Ok(vec![normalize_reference(name)?]),
        None => Ok(Vec::new()),
    }
}

fn plan_manifest(
    archive: &StagedArchive,
    descriptor: &Descriptor,
    tags: Vec<String>,
    limits: &Limits,
) -> Result<PlannedImage, ImageError> {
    let manifest_file = verified_blob(archive, descriptor, "manifest")?;
    let what = format!("manifest {}", descriptor.digest());
    let manifest: ImageManifest = archive::read_json_file(&manifest_file, &what, limits)?;
    let config_file = verified_blob(archive, manifest.config(), "config")?;
    let (created, diff_ids) =
        read_config_for(&config_file, &what, manifest.layers().len(), limits)?;
    let layers = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id_hex)| {
            Ok(PlannedLayer {
                blob: verified_blob(archive, layer, "layer")?,
                media_type: layer.media_type().to_string(),
                diff_id_hex,
            })
        })
        .collect::<Result<_, ImageError>>()?;
    Ok(PlannedImage {
        tags,
        manifest: manifest_file,
        config: config_file,
        created,
        layers,
    })
}

/// The staged blob a descriptor names, after checking its size and sha256.
fn verified_blob(
    archive: &StagedArchive,
    descriptor: &Descriptor,
    kind: &str,
) -> Result<StagedFile, ImageError> {
    let digest = descriptor.digest();
    let what = format!("{kind} {digest}");
    if digest.algorithm() != &DigestAlgorithm::Sha256 {
        return Err(ImageError::Invalid {
            what,
            problem: "only sha256 digests are supported".to_owned(),
        });
    }
    let hex = digest.digest();
    let file = archive.require(&format!("blobs/sha256/{hex}"), &what)?;
    check_blob(file, &what, hex, Some(descriptor.size()))?;
    Ok(file.clone())
}

fn check_blob(
    file: &StagedFile,
    what: &str,
    hex: &str,
    size: Option<u64>,
) -> Result<(), ImageError> {
    if let Some(size) = size
        && file.size != size
    {
        return Err(ImageError::SizeMismatch {
            what: what.to_owned(),
            expected: size,
            actual: file.size,
        });
    }
    if file.hex != hex {
        return Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: format!("sha256:{hex}"),
            actual: format!("sha256:{}", file.hex),
        });
    }
    Ok(())
}

/// Reads `created` and the diff_ids (as lowercase hex) of a staged image config.
fn read_config(
    file: &StagedFile,
    limits: &Limits,
) -> Result<(Option<String>, Vec<String>), ImageError> {
    let what = format!("config sha256:{}", file.hex);
    let config: ImageConfiguration = archive::read_json_file(file, &what, limits)?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| match d.strip_prefix("sha256:") {
            Some(hex) if stream::is_sha256_hex(hex) => Ok(hex.to_owned()),
            _ => Err(ImageError::Invalid {
                what: what.clone(),
                problem: format!("diff_id {d:?} is not a sha256 digest"),
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok((config.created().clone(), diff_ids))
}

/// [`read_config`] of the image whose manifest (`what`) lists `layers` layers: its config
/// must give a diff_id for each.
pub(crate) fn read_config_for(
    file: &StagedFile,
    what: &str,
    layers: usize,
    limits: &Limits,
) -> Result<(Option<String>, Vec<String>), ImageError> {
    let (created, diff_ids) = read_config(file, limits)?;
    if diff_ids.len() != layers {
        return Err(ImageError::Invalid {
            what: what.to_owned(),
            problem: format!(
                "lists {layers} layers but its config has {} diff_ids",
                diff_ids.len()
            ),
        });
    }
    Ok((created, diff_ids))
}

/// The part of an image config a container needs, from an OCI or docker config.
pub(crate) fn image_config(config: &ImageConfiguration) -> ImageConfig {
    let c = config.config().as_ref();
    ImageConfig {
        entrypoint: c.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
        cmd: c.and_then(|c| c.cmd().clone()).unwrap_or_default(),
        env: c.and_then(|c| c.env().clone()).unwrap_or_default(),
        working_dir: c
            .and_then(|c| c.working_dir().clone())
            .filter(|w| !w.is_empty()),
        user: c.and_then(|c| c.user().clone()).filter(|u| !u.is_empty()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Plans the images of a `docker save` archive; synthesised manifests are written by
/// `write_blob` (which stages and hashes them).
pub(crate) fn plan_docker(
    archive: &StagedArchive,
    limits: &Limits,
    mut write_blob: impl FnMut(&[u8]) -> Result<StagedFile, ImageError>,
) -> Result<Vec<PlannedImage>, ImageError> {
    let entries: Vec<DockerManifestEntry> = archive.read_json("manifest.json", limits)?;
    if entries.is_empty() {
        return Err(ImageError::Archive {
            path: archive.source().to_path_buf(),
            problem: "manifest.json lists no image".to_owned(),
        });
    }
    let mut plans = Vec::with_capacity(entries.len());
    for entry in entries {
        let config = archive
            .require(&entry.config, "the config named in manifest.json")?
            .clone();
        check_named_digest(&entry.config, &config, "config")?;
        let (created, diff_ids) = read_config(&config, limits)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::Invalid {
                what: format!("archive {}: manifest.json", archive.source().display()),
                problem: format!(
                    "image {} lists {} layers but its config has {} diff_ids",
                    entry.config,
                    entry.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::with_capacity(entry.layers.len());
        for (name, diff_id_hex) in entry.layers.iter().zip(diff_ids) {
            let blob = archive
                .require(name, "a layer named in manifest.json")?
                .clone();
            check_named_digest(name, &blob, "layer")?;
            let compression = stream::detect_file(&blob.path)
                .map_err(|e| super::ImageError::io("reading staged file", &blob.path, e))?;
            layers.push(PlannedLayer {
                blob,
                media_type: compression.layer_media_type().to_owned(),
                diff_id_hex,
            });
        }
        let tags = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| normalize_reference(t))
            .collect::<Result<_, _>>()?;
        let manifest = write_blob(&synthesise_manifest(&config, &layers))?;
        plans.push(PlannedImage {
            tags,
            manifest,
            config,
            created,
            layers,
        });
    }
    Ok(plans)
}

/// `docker save` names files after their digest (`<hex>.json`, `blobs/sha256/<hex>`); where a
/// name carries one, the content must match it.
fn check_named_digest(name: &str, file: &StagedFile, kind: &str) -> Result<(), ImageError> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.strip_suffix(".json").unwrap_or(base);
    if stream::is_sha256_hex(stem) {
        check_blob(file, &format!("{kind} {name}"), stem, None)?;
    }
    Ok(())
}

/// An OCI manifest for a config and layers that came without one (`docker save`, rootfs).
/// serde_json's maps are sorted, so the same inputs always give the same bytes and digest.
pub(crate) fn synthesise_manifest(config: &StagedFile, layers: &[PlannedLayer]) -> Vec<u8> {
    let descriptor = |media_type: &str, file: &StagedFile| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{}", file.hex),
            "size": file.size,
        })
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(&l.media_type, &l.blob)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).expect("a json value always serialises")
}

/// The config of an imported rootfs: one layer, no entrypoint or command, no `created` (so
/// importing the same tarball twice gives the same image id).
pub(crate) fn synthesise_rootfs_config(diff_id_hex: &str) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": Arch::default().to_string(),
        "os": Os::default().to_string(),
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id_hex}")] },
    });
    serde_json::to_vec(&config).expect("a json value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_config_fills_image_config() {
        let json = br#"{
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "container_config": {"Hostname": "x"}, "docker_version": "24",
            "config": {"Entrypoint": null, "Cmd": ["sh"], "Env": ["PATH=/bin"],
                       "WorkingDir": "", "User": "1000:1000", "ExposedPorts": {"80/tcp": {}},
                       "Labels": null, "OnBuild": null, "Image": "sha256:00"},
            "rootfs": {"type": "layers", "diff_ids": []}
        }"#;
        let config: ImageConfiguration = serde_json::from_slice(json).unwrap();
        let c = image_config(&config);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.cmd, vec!["sh"]);
        assert_eq!(c.env, vec!["PATH=/bin"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn rootfs_config_parses_and_is_empty() {
        let bytes = synthesise_rootfs_config(&"a".repeat(64));
        let config: ImageConfiguration = serde_json::from_slice(&bytes).unwrap();
        let c = image_config(&config);
        assert!(c.entrypoint.is_empty() && c.cmd.is_empty() && c.env.is_empty());
        assert_eq!(config.rootfs().diff_ids().len(), 1);
    }
}
