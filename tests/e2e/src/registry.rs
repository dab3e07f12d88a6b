//! A throwaway Debian `docker-registry` on 127.0.0.1 for pull tests, and OCI layouts to push
//! into it with skopeo.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::require;

/// bcrypt (cost 5) of "s3cret-pass" for user `dash` (made with crypt(3)), so no htpasswd
/// binary is needed.
pub const HTPASSWD: &str = "dash:$2b$05$mXIuAZS/dWm4QIc/gMMfNuV0GdPN7VSOfQgKq9UT1c3Xz2uJ1bqH.";

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub addr: String,
    child: Child,
}

impl Registry {
    /// Starts a registry on loopback; `htpasswd` is a bcrypt htpasswd line for basic auth,
    /// if wanted.
    pub fn start(htpasswd: Option<&str>) -> Registry {
        Self::start_at("127.0.0.1", htpasswd)
    }

    /// [`Registry::start`] listening on `ip` (e.g. a test bridge's address, for nodes in
    /// network namespaces).
    pub fn start_at(ip: &str, htpasswd: Option<&str>) -> Registry {
        require(
            "/usr/bin/docker-registry (Debian docker-registry)",
            Path::new("/usr/bin/docker-registry").exists(),
        );
        let dir = tempfile::tempdir().unwrap();
        // Port 0: the registry picks a free port itself and logs it (no probe-then-bind race
        // with tests running in parallel).
        let addr = format!("{ip}:0");
        let auth = match htpasswd {
            Some(line) => {
                std::fs::write(dir.path().join("htpasswd"), format!("{line}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: dash-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut r = Registry { dir, addr, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(addr) = listening_on(&r.log()) {
                r.addr = addr;
                if std::net::TcpStream::connect(&r.addr).is_ok() {
                    return r;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry did not start: {}", r.log());
    }

    /// `dash registry login` of user `dash` (of [`HTPASSWD`]) to this registry, the password
    /// read from standard input.
    pub fn login_args(&self) -> [&str; 6] {
        [
            "registry",
            "login",
            &self.addr,
            "-u",
            "dash",
            "--password-stdin",
        ]
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many successful GETs of this blob the access log shows.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("GET /v2/")
                    && l.contains(&format!("/blobs/{digest}"))
                    && l.contains("\" 200 ")
            })
            .count()
    }

    /// Pushes an OCI layout directory with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, creds: Option<&str>) {
        require(
            "/usr/bin/skopeo (Debian skopeo)",
            Path::new("/usr/bin/skopeo").exists(),
        );
        let mut cmd = Command::new("/usr/bin/skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An OCI image layout at `out` with the given layers (plain tars, gzipped here) and `tag`.
/// Returns the layer blob digests, bottom first.
pub fn oci_layout(out: &Path, tag: &str, layers: &[Vec<u8>]) -> Vec<String> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let mut diff_ids = Vec::new();
    let mut layer_descs = Vec::new();
    let mut digests = Vec::new();
    for tar in layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(tar)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let (digest, size) = put(&gz.finish().unwrap());
        layer_descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
        digests.push(digest);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
                        "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digests
}

/// A tar of one file of `size` pseudo-random bytes (incompressible), named `name`.
pub fn random_layer(name: &str, size: usize, seed: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data.as_slice()).unwrap();
    b.into_inner().unwrap()
}

/// The harness's busybox rootfs tarball, read back.
pub fn busybox_layer(dir: &Path) -> Vec<u8> {
    std::fs::read(crate::busybox_rootfs_tar(dir)).unwrap()
}

pub fn layout_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
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
