//! Fixtures for the registry tests: a real `docker-registry` (Debian's build of the
//! distribution project) on a free loopback port with its storage and access log in a temp
//! dir, OCI layouts built from the host's busybox and random data, and `skopeo` to push them.
//! Included by the `registry_*` tests with `#[path]`; on its own it has no tests.
#![allow(dead_code)]

#[path = "image_support.rs"]
pub mod img;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dash_image::registry::{PullProgress, Puller, RegistryConfig};
use dash_image::{ImageRecord, ImageStore};
use img::{Compression, Files, Layer, OCI_MANIFEST, RawTar, sha256_hex};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const SKOPEO_BIN: &str = "/usr/bin/skopeo";
/// The user of registries started with [`Registry::start_with_auth`].
pub const USER: &str = "dash";
pub const PASSWORD: &str = "s3cret-pass";
/// bcrypt (cost 5) of [`PASSWORD`], made once with libxcrypt (`crypt(3)`), so the tests need
/// no htpasswd binary.
const PASSWORD_BCRYPT: &str = "$2b$05$mXIuAZS/dWm4QIc/gMMfNuV0GdPN7VSOfQgKq9UT1c3Xz2uJ1bqH.";
const STARTUP_DEADLINE: Duration = Duration::from_secs(15);

fn require(bin: &str, package: &str) {
    assert!(
        Path::new(bin).exists(),
        "missing prerequisite: {bin} (apt-get install {package})"
    );
}

/// A `docker-registry serve` process, killed (by pid) and reaped when dropped.
pub struct Registry {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub host: String,
    log: PathBuf,
    auth: bool,
}

impl Registry {
    /// An open registry (no authentication).
    pub fn start() -> Self {
        Self::spawn(false)
    }

    /// A registry with htpasswd (basic) authentication for [`USER`] / [`PASSWORD`].
    pub fn start_with_auth() -> Self {
        Self::spawn(true)
    }

    fn spawn(auth: bool) -> Self {
        require(REGISTRY_BIN, "docker-registry");
        require(SKOPEO_BIN, "skopeo");
        let dir = tempfile::tempdir().expect("tempdir");
        // Port 0: the registry picks a free port itself and says which (no probe-then-bind
        // race with tests running in parallel).
        let host = "127.0.0.1:0".to_owned();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            storage.display()
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{USER}:{PASSWORD_BCRYPT}\n")).expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: dash-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("registry config");
        let log = dir.path().join("registry.log");
        let out = fs::File::create(&log).expect("registry log");
        let err = out.try_clone().expect("registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Self {
            child,
            dir,
            host,
            log,
            auth,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for docker-registry") {
                panic!(
                    "docker-registry exited with {status} before answering:\n{}",
                    self.log()
                );
            }
            if self.host.ends_with(":0")
                && let Some(addr) = listening_on(&self.log())
            {
                self.host = addr;
            }
            if !self.host.ends_with(":0")
                && let Some(status) = http_status(&self.host, "/v2/")
                && (status == 200 || status == 401)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry on {} did not answer /v2/ within {STARTUP_DEADLINE:?}:\n{}",
                self.host,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The registry's output: its access log and its own log lines.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many `GET`s of blob `hex` (in any repository) the access log shows.
    pub fn blob_gets(&self, hex: &str) -> usize {
        let needle = format!("/blobs/sha256:{hex} HTTP/1.1\"");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle))
            .count()
    }

    /// How many `GET`s of manifests of `repo` the access log shows.
    pub fn manifest_gets(&self, repo: &str) -> usize {
        let needle = format!("\"GET /v2/{repo}/manifests/");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// The manifest (or index) `<repo>:<reference>` as the registry serves it (no auth).
    pub fn manifest(&self, repo: &str, reference: &str) -> serde_json::Value {
        let mut stream = TcpStream::connect(&self.host).expect("connect to the registry");
        let accept = "application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";
        write!(
            stream,
            "GET /v2/{repo}/manifests/{reference} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
            self.host
        )
        .expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read");
        let text = String::from_utf8_lossy(&response);
        let (_, body) = text.split_once("\r\n\r\n").expect("an http response");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("manifest json: {e}: {text}"))
    }

    /// Where the registry keeps blob `hex`.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes the image tagged `tag` in the OCI layout `layout` to `<host>/<dest>` with
    /// skopeo (all platforms of an index, digests preserved).
    pub fn push(&self, layout: &Path, tag: &str, dest: &str) {
        self.skopeo_copy(layout, tag, dest, &["--preserve-digests"]);
    }

    /// Writes `image` as an OCI layout named `name` in `env` and pushes it as `dest`.
    pub fn push_image(&self, env: &Env, name: &str, image: &TestImage, dest: &str) -> Written {
        let layout = env.layout(name);
        let written = write_layout(&layout, "v1", image);
        self.push(&layout, "v1", dest);
        written
    }

    /// `<host>/<dest>`: the reference a pull of what was pushed as `dest` names.
    pub fn reference(&self, dest: &str) -> String {
        format!("{}/{dest}", self.host)
    }

    /// Like [`Registry::push`], converting manifests (and an index) to Docker schema 2 (and
    /// a Docker manifest list) on the way: new manifest digests, same configs and layers.
    pub fn push_as_docker(&self, layout: &Path, tag: &str, dest: &str) {
        self.skopeo_copy(layout, tag, dest, &["--format", "v2s2"]);
    }

    fn skopeo_copy(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        let mut cmd = Command::new(SKOPEO_BIN);
        cmd.args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--multi-arch",
            "all",
        ])
        .args(extra)
        .arg("--dest-tls-verify=false");
        if self.auth {
            cmd.arg("--dest-creds").arg(format!("{USER}:{PASSWORD}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host));
        let out = cmd.output().expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {}/{dest} failed ({}): {}\nregistry log:\n{}",
            self.host,
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill signals the child's own pid (SIGKILL); nothing else is touched.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address docker-registry logged that it listens on (`listening on 127.0.0.1:40595`).
fn listening_on(log: &str) -> Option<String> {
    let rest = &log[log.find("listening on ")? + "listening on ".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse::<std::net::SocketAddr>().ok().map(|_| addr)
}

/// The status code of `GET path` on `host`, or `None` if nothing answers.
fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// An image to put in a layout: its layers and the architecture its config names.
pub struct TestImage {
    pub layers: Vec<Layer>,
    pub arch: &'static str,
}

/// Digests of an image written to a layout.
#[derive(Debug, Clone)]
pub struct Written {
    /// Config hex: the image id is `sha256:<config>`.
    pub config: String,
    pub manifest: String,
    pub manifest_size: usize,
    pub layers: Vec<String>,
}

impl Written {
    pub fn id(&self) -> String {
        format!("sha256:{}", self.config)
    }

    /// The layers' digests, `sha256:<hex>`.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|h| format!("sha256:{h}")).collect()
    }

    /// Every blob a pull fetches: config and layers.
    pub fn blobs(&self) -> Vec<String> {
        let mut blobs = vec![self.config.clone()];
        blobs.extend(self.layers.iter().cloned());
        blobs
    }
}

pub fn config_for(layers: &[Layer], arch: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(&l.tar)))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-05-01T12:00:00Z",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hello"],
            "Env": ["PATH=/bin", format!("ARCH={arch}")],
            "WorkingDir": "/root",
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("json")
}

/// Adds an image's blobs to `files` and returns its manifest bytes and digests.
fn add_image(files: &mut Files, seen: &mut Vec<String>, image: &TestImage) -> (Vec<u8>, Written) {
    let mut add = |hex: &str, data: Vec<u8>| {
        if !seen.iter().any(|s| s == hex) {
            seen.push(hex.to_owned());
            files.add(&format!("blobs/sha256/{hex}"), data);
        }
    };
    let config = config_for(&image.layers, image.arch);
    let config_hex = sha256_hex(&config);
    let (manifest, layer_blobs) = img::oci_manifest(&config, &image.layers);
    let mut layers = Vec::new();
    for (hex, blob) in layer_blobs {
        add(&hex, blob);
        layers.push(hex);
    }
    add(&config_hex, config);
    let manifest_hex = sha256_hex(&manifest);
    add(&manifest_hex, manifest.clone());
    let written = Written {
        config: config_hex,
        manifest: manifest_hex,
        manifest_size: manifest.len(),
        layers,
    };
    (manifest, written)
}

/// Writes an OCI layout directory holding `image` under the ref name `tag`.
pub fn write_layout(dir: &Path, tag: &str, image: &TestImage) -> Written {
    let mut files = Files::default();
    files.add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    let mut seen = Vec::new();
    let (_, written) = add_image(&mut files, &mut seen, image);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", written.manifest),
            "size": written.manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    files.add("index.json", serde_json::to_vec(&index).expect("json"));
    write_files(dir, &files);
    written
}

/// Writes an OCI layout whose `tag` names an image index with one manifest per image (its
/// platform from the image's arch). Returns the index digest and each image's digests.
pub fn write_multiarch_layout(
    dir: &Path,
    tag: &str,
    images: &[TestImage],
) -> (String, Vec<Written>) {
    let mut files = Files::default();
    files.add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    let mut seen = Vec::new();
    let mut entries = Vec::new();
    let mut all = Vec::new();
    for image in images {
        let (_, written) = add_image(&mut files, &mut seen, image);
        entries.push(serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", written.manifest),
            "size": written.manifest_size,
            "platform": { "os": "linux", "architecture": image.arch },
        }));
        all.push(written);
    }
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .expect("json");
    let nested_hex = sha256_hex(&nested);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{nested_hex}"),
            "size": nested.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    files.add(&format!("blobs/sha256/{nested_hex}"), nested);
    files.add("index.json", serde_json::to_vec(&index).expect("json"));
    write_files(dir, &files);
    (nested_hex, all)
}

fn write_files(dir: &Path, files: &Files) {
    for (name, data) in &files.files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("a parent")).expect("layout dir");
        fs::write(&path, data).expect("layout file");
    }
}

/// The busybox image of the image tests: a gzip busybox rootfs and a zstd layer on top.
pub fn busybox_image() -> TestImage {
    amd64(vec![
        busybox_layer(),
        Layer::new(img::top_layer(), Compression::Zstd),
    ])
}

/// The busybox rootfs as a gzip layer.
pub fn busybox_layer() -> Layer {
    Layer::new(img::busybox_rootfs(), Compression::Gzip)
}

/// An amd64 image of `layers`.
pub fn amd64(layers: Vec<Layer>) -> TestImage {
    TestImage {
        layers,
        arch: "amd64",
    }
}

/// An open registry with `image` pushed as `dest` (from a layout named `name` in a new
/// [`Env`]): the registry, the env, what was written, and the reference to pull.
pub fn registry_with(
    name: &str,
    image: &TestImage,
    dest: &str,
) -> (Registry, Env, Written, String) {
    let registry = Registry::start();
    let env = Env::new();
    let written = registry.push_image(&env, name, image, dest);
    let reference = registry.reference(dest);
    (registry, env, written, reference)
}

/// Pulls `reference` with `puller`, reporting to `progress`; a failed pull fails the test with
/// the error and its causes.
pub async fn pull_ok(
    puller: &Puller,
    reference: &str,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> ImageRecord {
    puller
        .pull(reference, progress)
        .await
        .unwrap_or_else(|e| panic!("pull {reference}: {}", img::chain(&e)))
}

/// A layer holding one file of `bytes` pseudo-random bytes (from `seed`), gzip-compressed
/// (random data does not shrink, so the blob is about as large).
pub fn random_layer(seed: u64, bytes: usize) -> Layer {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(bytes);
    let tar = RawTar::new()
        .dir("data/")
        .file(&format!("data/blob-{seed}"), &data)
        .finish();
    Layer::new(tar, Compression::Gzip)
}

/// A store in a temp dir, and a puller for it that reads no docker config.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<ImageStore>,
    pub puller: Puller,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut RegistryConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(ImageStore::open(&dir.path().join("store")).expect("open store"));
        let mut cfg = RegistryConfig::new(dir.path().join("registries.json"));
        cfg.docker_config = None;
        adjust(&mut cfg);
        let puller = Puller::new(store.clone(), cfg).expect("puller");
        Self { dir, store, puller }
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Names of the files in `<root>/<sub>`.
    pub fn files(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root().join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A layout dir in the temp dir.
    pub fn layout(&self, name: &str) -> PathBuf {
        self.dir.path().join("layouts").join(name)
    }
}

/// Collects a pull's progress events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<PullProgress>>>);

impl Events {
    pub fn callback(&self) -> impl Fn(PullProgress) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e| events.lock().expect("events").push(e)
    }

    pub fn all(&self) -> Vec<PullProgress> {
        self.0.lock().expect("events").clone()
    }

    /// `digest → cached` of every `BlobDone`.
    pub fn blobs_done(&self) -> HashMap<String, bool> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                PullProgress::BlobDone { digest, cached } => Some((digest, cached)),
                _ => None,
            })
            .collect()
    }
}
