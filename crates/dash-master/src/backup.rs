//! Backups of a cluster: `dash backup -o cluster.snap` (`GET /v1/backup` at any master) and
//! `dash restore --data-dir DIR cluster.snap` (local, no server), as `etcdctl snapshot save` /
//! `restore` and `nomad operator snapshot save` / `restore` do.
//!
//! A backup is a plain tar:
//!
//! ```text
//!  state.db            the master's state (SQLite VACUUM INTO, applies held back meanwhile):
//!                      services, nodes, tokens (their hashes), certificate serials, routes …
//!  admin.token         the cluster's admin credential
//!  pki/ca.crt, ca.key  the cluster CA (with a cluster)
//!  blobs/<hex>         every image's manifest, config and layer blobs, by digest
//!  dash-backup.json    last: format, when, by which master, what the state had applied,
//!                      every file above with its size and sha256, every image's tag and blobs
//! ```
//!
//! A restore reads the tar into a staging dir beside the target (only the names above, only
//! regular files, sizes as declared), checks every file against `dash-backup.json`, makes the
//! data dir there (the state detached from its old Raft log, the CA, the token, the images
//! imported through the image store's own checks) and renames it into place last: a truncated,
//! corrupt or foreign file fails with the reason and leaves nothing behind. The restored data
//! dir starts as a one-master cluster (`dash server --data-dir DIR --advertise-addr …`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use dash_image::ImageStore;
use dash_store::MasterStore;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The `format` of the backups this version writes and reads.
pub const FORMAT: &str = "dash-backup/1";
/// The name of the manifest inside a backup.
pub const MANIFEST: &str = "dash-backup.json";

/// What a backup holds (`dash-backup.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_ms: u64,
    /// The master that made it.
    pub made_by: String,
    /// The index of the last log entry the state had applied.
    pub applied_index: u64,
    pub files: Vec<FileEntry>,
    pub images: Vec<ImageEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageEntry {
    pub tag: String,
    /// `sha256:<hex>` of the manifest, the config and each layer blob (bottom to top).
    pub manifest: String,
    pub config: String,
    pub layers: Vec<String>,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error("reading the state: {0}")]
    State(#[from] dash_store::StoreError),
    #[error("an image: {0}")]
    Image(#[from] dash_image::ImageError),
    /// The file is not a backup this version can restore; nothing was changed.
    #[error("{file}: {problem}; nothing was changed")]
    Invalid { file: String, problem: String },
    /// The target data dir holds something already.
    #[error(
        "{0} is not empty; restore into a new data dir (a restore never writes over a data dir)"
    )]
    Occupied(PathBuf),
}

fn io(what: &str, path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 and size of a file.
fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = fs::File::open(path).map_err(|e| io("opening", path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io("reading", path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), size))
}

/// What goes into a backup besides the state: the cluster's secrets and its images.
pub struct Sources<'a> {
    pub log: &'a crate::state_log::StateLog,
    pub images: &'a ImageStore,
    pub admin_token: &'a str,
    /// The CA (certificate, key) PEM, with a cluster.
    pub ca: Option<(&'a str, &'a str)>,
    pub made_by: &'a str,
    /// A scratch dir of this master's (removed again).
    pub scratch: &'a Path,
}

/// Writes a backup to `out` (a new file). Returns its manifest.
pub async fn create(src: Sources<'_>, out: &Path) -> Result<Manifest, BackupError> {
    let work = src
        .scratch
        .join(format!("backup-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(&work).map_err(|e| io("creating", &work, e))?;
    let made = make(&src, &work, out).await;
    let _ = fs::remove_dir_all(&work);
    if made.is_err() {
        let _ = fs::remove_file(out);
    }
    made
}

async fn make(src: &Sources<'_>, work: &Path, out: &Path) -> Result<Manifest, BackupError> {
    let state = work.join("state.db");
    let applied_index = src.log.snapshot_to(&state).await?;
    let mut files: Vec<(String, PathBuf)> = vec![("state.db".into(), state)];
    let mut write_secret = |name: &str, text: &str| -> Result<(), BackupError> {
        let p = work.join(name.replace('/', "_"));
        fs::write(&p, text).map_err(|e| io("writing", &p, e))?;
        files.push((name.to_string(), p));
        Ok(())
    };
    write_secret("admin.token", src.admin_token)?;
    if let Some((cert, key)) = src.ca {
        write_secret("pki/ca.crt", cert)?;
        write_secret("pki/ca.key", key)?;
    }
    let mut images = Vec::new();
    let mut blobs = BTreeSet::new();
    for record in src.images.list()? {
        for tag in &record.tags {
            let export = src.images.export(tag)?;
            let layers: Vec<String> = export.layers.iter().map(|(d, _)| d.clone()).collect();
            blobs.insert(export.manifest_digest.clone());
            blobs.insert(record.id.clone());
            blobs.extend(layers.iter().cloned());
            images.push(ImageEntry {
                tag: tag.clone(),
                manifest: export.manifest_digest,
                config: record.id.clone(),
                layers,
            });
        }
    }
    for digest in &blobs {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        files.push((format!("blobs/{hex}"), src.images.blob_file(digest)?));
    }
    let created_ms = dash_core::clock::now_ms();
    let made_by = src.made_by.to_string();
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || {
        write_tar(
            &out,
            files,
            Manifest {
                format: FORMAT.into(),
                created_ms,
                made_by,
                applied_index,
                files: Vec::new(),
                images,
            },
        )
    })
    .await
    .map_err(|e| BackupError::Io(e.to_string()))?
}

fn write_tar(
    out: &Path,
    files: Vec<(String, PathBuf)>,
    mut manifest: Manifest,
) -> Result<Manifest, BackupError> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| io("creating", out, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(f));
    for (name, path) in files {
        let (sha256, size) = hash_file(&path)?;
        let mut file = fs::File::open(&path).map_err(|e| io("opening", &path, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &name, &mut file)
            .map_err(|e| io("writing", out, e))?;
        manifest.files.push(FileEntry {
            path: name,
            size,
            sha256,
        });
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io(e.to_string()))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, MANIFEST, json.as_slice())
        .map_err(|e| io("writing", out, e))?;
    let mut w = tar.into_inner().map_err(|e| io("writing", out, e))?;
    w.flush().map_err(|e| io("writing", out, e))?;
    let f = w
        .into_inner()
        .map_err(|e| io("writing", out, e.into_error()))?;
    f.sync_all().map_err(|e| io("syncing", out, e))?;
    Ok(manifest)
}

/// What a restore brought back.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub made_by: String,
    pub created_ms: u64,
    pub services: usize,
    pub nodes: usize,
    pub tokens: usize,
    pub images: usize,
}

/// Whether `name` may be in a backup: the fixed names, or `blobs/<64 hex digits>`.
fn allowed(name: &str) -> bool {
    matches!(
        name,
        "state.db" | "admin.token" | "pki/ca.crt" | "pki/ca.key" | MANIFEST
    ) || name.strip_prefix("blobs/").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Restores the backup `file` into the data dir `data` (missing or empty).
pub async fn restore(file: &Path, data: &Path) -> Result<Restored, BackupError> {
    if data.exists() {
        let mut entries = fs::read_dir(data).map_err(|e| io("reading", data, e))?;
        if entries.next().is_some() {
            return Err(BackupError::Occupied(data.to_path_buf()));
        }
    }
    let parent = match data.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| io("creating", &parent, e))?;
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = parent.join(format!(".{name}.restore-{}", uuid::Uuid::new_v4().simple()));
    let done = restore_into(file, data, &staging).await;
    let _ = fs::remove_dir_all(&staging);
    done
}

async fn restore_into(file: &Path, data: &Path, staging: &Path) -> Result<Restored, BackupError> {
    let unpacked = staging.join("backup");
    let manifest = {
        let (file, unpacked) = (file.to_path_buf(), unpacked.clone());
        tokio::task::spawn_blocking(move || unpack(&file, &unpacked))
            .await
            .map_err(|e| BackupError::Io(e.to_string()))??
    };
    let target = staging.join("data");
    fs::create_dir_all(target.join("pki")).map_err(|e| io("creating", &target, e))?;
    set_private(&target, 0o700)?;
    set_private(&target.join("pki"), 0o700)?;
    // The state first: a foreign SQLite file is refused here.
    let state = target.join("dash.db");
    fs::rename(unpacked.join("state.db"), &state).map_err(|e| io("moving", &state, e))?;
    let db = dash_store::adopt_master_state(&state)
        .await
        .map_err(|e| BackupError::Invalid {
            file: file.display().to_string(),
            problem: format!("its state.db: {e}"),
        })?;
    let store = MasterStore::new(db.clone());
    let (services, nodes, tokens) = (
        store.services().await?.len(),
        store.nodes().await?.len(),
        store.tokens().await?.len(),
    );
    db.close().await;
    for (from, to) in [
        ("admin.token", "admin.token"),
        ("pki/ca.crt", "pki/ca.crt"),
        ("pki/ca.key", "pki/ca.key"),
    ] {
        let src = unpacked.join(from);
        if src.exists() {
            let dst = target.join(to);
            fs::rename(&src, &dst).map_err(|e| io("moving", &dst, e))?;
            set_private(&dst, 0o600)?;
        }
    }
    let images = {
        let (unpacked, target, entries) =
            (unpacked.clone(), target.clone(), manifest.images.clone());
        tokio::task::spawn_blocking(move || -> Result<usize, BackupError> {
            let store = ImageStore::open(&target.join("images"))?;
            let blob = |digest: &str| -> PathBuf {
                unpacked
                    .join("blobs")
                    .join(digest.strip_prefix("sha256:").unwrap_or(digest))
            };
            let read = |digest: &str| -> Result<Vec<u8>, BackupError> {
                let p = blob(digest);
                fs::read(&p).map_err(|e| io("reading", &p, e))
            };
            for image in &entries {
                store.import_pulled(
                    &image.tag,
                    &read(&image.manifest)?,
                    &read(&image.config)?,
                    &blob,
                )?;
            }
            Ok(entries.len())
        })
        .await
        .map_err(|e| BackupError::Io(e.to_string()))??
    };
    fs::remove_dir_all(&unpacked).map_err(|e| io("removing", &unpacked, e))?;
    // Last: the finished data dir takes the target's place (an empty target dir is replaced).
    fs::rename(&target, data).map_err(|e| io("moving the restored data dir to", data, e))?;
    Ok(Restored {
        data_dir: data.to_path_buf(),
        made_by: manifest.made_by,
        created_ms: manifest.created_ms,
        services,
        nodes,
        tokens,
        images,
    })
}

fn set_private(path: &Path, mode: u32) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io("chmod", path, e))
}

/// Unpacks the backup `file` into `dir` and checks it whole against its manifest.
fn unpack(file: &Path, dir: &Path) -> Result<Manifest, BackupError> {
    let invalid = |problem: String| BackupError::Invalid {
        file: file.display().to_string(),
        problem,
    };
    let f = fs::File::open(file).map_err(|e| io("opening", file, e))?;
    fs::create_dir_all(dir.join("blobs")).map_err(|e| io("creating", dir, e))?;
    fs::create_dir_all(dir.join("pki")).map_err(|e| io("creating", dir, e))?;
    let mut archive = tar::Archive::new(f);
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("is not a tar file ({e})")))?;
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            invalid(format!(
                "is truncated or not a Dash backup (reading the tar: {e})"
            ))
        })?;
        let path = entry
            .path()
            .map_err(|e| invalid(format!("has an entry with a bad name ({e})")))?
            .into_owned();
        let name = path.to_string_lossy().into_owned();
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || !allowed(&name) {
            return Err(invalid(format!(
                "has an entry {name:?} that no Dash backup has; is this a Dash backup?"
            )));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(invalid(format!("its entry {name:?} is not a regular file")));
        }
        if seen.contains_key(&name) {
            return Err(invalid(format!("has the entry {name:?} twice")));
        }
        let out_path = dir.join(&path);
        let mut out = fs::File::create(&out_path).map_err(|e| io("creating", &out_path, e))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| invalid(format!("is truncated (reading {name:?}: {e})")))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| io("writing", &out_path, e))?;
        }
        if size != entry.header().size().unwrap_or(u64::MAX) {
            return Err(invalid(format!("is truncated (in {name:?})")));
        }
        seen.insert(name, (size, hex(&h.finalize())));
    }
    let raw = fs::read(dir.join(MANIFEST)).map_err(|_| {
        invalid(format!(
            "has no {MANIFEST}: it is truncated, or not a Dash backup"
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("its {MANIFEST} is not valid: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!(
            "is a backup of format {:?}; this version reads {FORMAT:?}",
            manifest.format
        )));
    }
    let mut listed = BTreeSet::new();
    for f in &manifest.files {
        match seen.get(&f.path) {
            None => {
                return Err(invalid(format!(
                    "lacks {:?}, which it lists: truncated?",
                    f.path
                )));
            }
            Some((size, sha)) if *size != f.size || *sha != f.sha256 => {
                return Err(invalid(format!(
                    "its {:?} is damaged (size {size}, sha256 {sha}; it should be size {}, \
                     sha256 {})",
                    f.path, f.size, f.sha256
                )));
            }
            Some(_) => {
                listed.insert(f.path.clone());
            }
        }
    }
    if let Some(extra) = seen
        .keys()
        .find(|k| k.as_str() != MANIFEST && !listed.contains(*k))
    {
        return Err(invalid(format!(
            "has {extra:?}, which its {MANIFEST} does not list"
        )));
    }
    if !listed.contains("state.db") || !listed.contains("admin.token") {
        return Err(invalid("lacks the state or the admin token".into()));
    }
    for image in &manifest.images {
        for digest in [&image.manifest, &image.config]
            .into_iter()
            .chain(image.layers.iter())
        {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if !listed.contains(&format!("blobs/{hex}")) {
                return Err(invalid(format!(
                    "image {} needs blob {digest}, which it does not hold",
                    image.tag
                )));
            }
        }
    }
    Ok(manifest)
}

#[cfg(test)]
#[path = "backup_test.rs"]
mod tests;
