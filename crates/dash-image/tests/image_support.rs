//! Builders for the image store's integration tests: busybox rootfs layers, OCI image layouts
//! and `docker save` archives, and raw tar headers for hostile entries the tar crate's builder
//! refuses to write. Included by the `image_*` tests with `#[path]`; on its own it has no tests.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dash_image::{ImageStore, Limits};
use sha2::{Digest, Sha256};
use tar::EntryType;

pub const BUSYBOX: &str = "/bin/busybox";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn apply(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::None => data.to_vec(),
            Self::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data).expect("gzip into memory");
                enc.finish().expect("gzip into memory")
            }
            Self::Zstd => zstd::encode_all(data, 3).expect("zstd into memory"),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Writes tar streams header by header, so any name or link target goes in as given.
#[derive(Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entry(
        mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&str>,
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        assert!(name.len() <= 100, "raw names are at most 100 bytes");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).expect("gnu header has device fields");
            h.set_device_minor(3).expect("gnu header has device fields");
        }
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().div_ceil(512) * 512, 0);
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, EntryType::Regular, 0o644, data, None)
    }

    pub fn dir(self, name: &str) -> Self {
        self.entry(name, EntryType::Directory, 0o755, b"", None)
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Symlink, 0o777, b"", Some(target))
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, 0o644, b"", Some(target))
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }

    /// The stream without its end-of-archive marker.
    pub fn unterminated(self) -> Vec<u8> {
        self.buf
    }
}

/// A busybox root file system: bin/busybox with applet symlinks, and a few files in etc/.
pub fn busybox_rootfs() -> Vec<u8> {
    let busybox = fs::read(BUSYBOX).expect("busybox-static is installed at /bin/busybox");
    let mut tar =
        RawTar::new()
            .dir("bin/")
            .entry("bin/busybox", EntryType::Regular, 0o755, &busybox, None);
    for applet in ["sh", "ls", "cat", "echo"] {
        tar = tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.dir("etc/")
        .file("etc/motd", b"welcome\n")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .dir("opt/")
        .file("opt/old", b"from the bottom layer\n")
        .finish()
}

/// A layer on top of [`busybox_rootfs`]: deletes etc/motd, makes opt/ opaque, adds files.
pub fn top_layer() -> Vec<u8> {
    RawTar::new()
        .dir("etc/")
        .file("etc/.wh.motd", b"")
        .file("etc/hostname", b"dash\n")
        .dir("opt/")
        .file("opt/.wh..wh..opq", b"")
        .file("opt/new", b"from the top layer\n")
        .finish()
}

/// One layer of an image under construction: the uncompressed tar (its sha256 is the
/// diff_id the config lists) and how it is stored.
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub compression: Compression,
    /// Stored instead of the compressed `tar`, to make the blob disagree with the diff_id.
    pub blob_override: Option<Vec<u8>>,
}

impl Layer {
    pub fn new(tar: Vec<u8>, compression: Compression) -> Self {
        Self {
            tar,
            compression,
            blob_override: None,
        }
    }

    pub fn blob(&self) -> Vec<u8> {
        match &self.blob_override {
            Some(blob) => blob.clone(),
            None => self.compression.apply(&self.tar),
        }
    }
}

pub fn image_config(layers: &[Layer]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(&l.tar)))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": oci_spec::image::Arch::default().to_string(),
        "os": "linux",
        "created": "2024-05-01T12:00:00Z",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hello"],
            "Env": ["PATH=/bin", "GREETING=hi"],
            "WorkingDir": "/root",
            "User": "0:0"
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("json")
}

/// The files of an archive, in order; tests edit them before [`Files::to_tar`].
#[derive(Clone, Default)]
pub struct Files {
    pub files: Vec<(String, Vec<u8>)>,
}

impl Files {
    /// A tar of `files`, (name, content) each.
    pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut all = Files::default();
        for (name, data) in files {
            all.add(name, data.to_vec());
        }
        all.to_tar()
    }

    pub fn add(&mut self, name: &str, data: Vec<u8>) {
        self.files.push((name.to_owned(), data));
    }

    pub fn get_mut(&mut self, name: &str) -> &mut Vec<u8> {
        &mut self
            .files
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no file {name}"))
            .1
    }

    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in &self.files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_600_000_000);
            builder
                .append_data(&mut h, name, &data[..])
                .expect("tar into memory");
        }
        builder.into_inner().expect("tar into memory")
    }
}

/// An image for an OCI layout: layers, config, and the ref name annotation.
pub struct OciImage {
    pub ref_name: Option<String>,
    pub layers: Vec<Layer>,
}

/// An OCI image manifest of `config` and `layers`: its bytes, and each layer's blob with the
/// blob's digest hex.
pub fn oci_manifest(config: &[u8], layers: &[Layer]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut descriptors = Vec::new();
    let mut blobs = Vec::new();
    for layer in layers {
        let blob = layer.blob();
        let hex = sha256_hex(&blob);
        descriptors.push(serde_json::json!({
            "mediaType": layer.compression.media_type(),
            "digest": format!("sha256:{hex}"),
            "size": blob.len(),
        }));
        blobs.push((hex, blob));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len() },
        "layers": descriptors,
    }))
    .expect("json");
    (manifest, blobs)
}

/// An OCI image layout with `images`. Returns the files and, per image, (config hex,
/// manifest hex, layer blob hexes).
pub fn oci_layout(images: &[OciImage]) -> (Files, Vec<(String, String, Vec<String>)>) {
    let mut files = Files::default();
    files.add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut index = Vec::new();
    let mut ids = Vec::new();
    for image in images {
        let config = image_config(&image.layers);
        let config_hex = sha256_hex(&config);
        let (manifest, layer_blobs) = oci_manifest(&config, &image.layers);
        let layer_hexes = layer_blobs.iter().map(|(hex, _)| hex.clone()).collect();
        blobs.extend(layer_blobs);
        let manifest_hex = sha256_hex(&manifest);
        let mut descriptor = serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest.len(),
        });
        if let Some(name) = &image.ref_name {
            descriptor["annotations"] =
                serde_json::json!({ "org.opencontainers.image.ref.name": name });
        }
        index.push(descriptor);
        blobs.push((config_hex.clone(), config));
        blobs.push((manifest_hex.clone(), manifest));
        ids.push((config_hex, manifest_hex, layer_hexes));
    }
    files.add(
        "index.json",
        serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "manifests": index }))
            .expect("json"),
    );
    let mut seen = std::collections::HashSet::new();
    for (hex, blob) in blobs {
        if seen.insert(hex.clone()) {
            files.add(&format!("blobs/sha256/{hex}"), blob);
        }
    }
    (files, ids)
}

/// A legacy `docker save` archive: manifest.json, `<config hex>.json`, `<n>/layer.tar`.
/// Returns the files and the config hex (the image id).
pub fn docker_save(repo_tags: &[&str], layers: &[Layer]) -> (Files, String) {
    let mut files = Files::default();
    let config = image_config(layers);
    let config_hex = sha256_hex(&config);
    let mut layer_names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("{i:064x}/layer.tar");
        files.add(&format!("{i:064x}/VERSION"), b"1.0".to_vec());
        files.add(&name, layer.blob());
        layer_names.push(name);
    }
    files.add(&format!("{config_hex}.json"), config);
    files.add(
        "manifest.json",
        serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": repo_tags,
            "Layers": layer_names,
        }]))
        .expect("json"),
    );
    (files, config_hex)
}

/// A temp dir holding a store, a sentinel dir next to it that nothing may touch, and a
/// place for input archives.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub sentinel: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("store");
        let sentinel = dir.path().join("sentinel");
        fs::create_dir(&sentinel).expect("sentinel dir");
        Self {
            dir,
            root,
            sentinel,
        }
    }

    pub fn store(&self) -> ImageStore {
        ImageStore::open(&self.root).expect("open store")
    }

    pub fn store_with(&self, limits: Limits) -> ImageStore {
        self.store().with_limits(limits)
    }

    /// Writes `data` to a file named `name` in the temp dir and returns its path.
    pub fn input(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, data).expect("write input");
        path
    }

    /// Writes an OCI layout archive of one image of `layers`, tagged `ref_name`, to a file
    /// named `name` in the temp dir and returns its path.
    pub fn oci_archive(&self, name: &str, ref_name: &str, layers: Vec<Layer>) -> PathBuf {
        let (files, _) = oci_layout(&[OciImage {
            ref_name: Some(ref_name.into()),
            layers,
        }]);
        self.input(name, &files.to_tar())
    }

    pub fn blob_count(&self) -> usize {
        count(&self.root.join("blobs/sha256"))
    }

    pub fn layer_count(&self) -> usize {
        count(&self.root.join("layers"))
    }

    pub fn tmp_count(&self) -> usize {
        count(&self.root.join("tmp"))
    }

    /// Nothing outside the store root changed: the sentinel dir is empty and no `evil` file
    /// appeared next to the store or in the temp dir.
    pub fn assert_nothing_outside(&self) {
        assert_eq!(
            count(&self.sentinel),
            0,
            "the sentinel dir next to the store was written to"
        );
        for dir in [self.dir.path(), self.root.as_path()] {
            assert!(
                !dir.join("evil").exists(),
                "{} has an evil file",
                dir.display()
            );
        }
    }
}

pub fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// An error's message with all its sources.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    dash_core::link::with_causes(err)
}
