//! Backups on real SQLite files and a real image store: a round trip, and every way a restore
//! must refuse a file while leaving nothing behind.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dash_core::command::Command;
use dash_core::config_parser::parse_service;
use dash_image::ImageStore;
use dash_store::{MasterStore, StateMachine};

use super::*;

/// A tiny rootfs tar (one file).
fn rootfs(dir: &Path) -> PathBuf {
    let path = dir.join("rootfs.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    let data = b"hello\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "hello.txt", &data[..]).unwrap();
    b.finish().unwrap();
    path
}

/// A master's data dir with a service, a token and an image, and a backup of it.
async fn backed_up(dir: &Path) -> (PathBuf, Manifest) {
    let db = dash_store::open(&dir.join("src.db")).await.unwrap();
    let spec = parse_service(
        "web.toml",
        "name = \"web\"\nimage = \"app:1\"\nreplicas = 2\n",
    )
    .unwrap();
    StateMachine::new(db.clone())
        .apply(&Command::PutService {
            spec: Box::new(spec),
            at_ms: 1,
        })
        .await
        .unwrap();
    let mq = std::sync::Arc::new(crate::message_queue::MessageQueue::new());
    let log = crate::state_log::StateLog::new(db, mq);
    let images = ImageStore::open(&dir.join("images")).unwrap();
    images.import_rootfs(&rootfs(dir), "app:1").unwrap();
    let out = dir.join("cluster.snap");
    let scratch = dir.join("tmp");
    let manifest = create(
        Sources {
            log: &log,
            images: &images,
            admin_token: "secret-token",
            ca: Some(("CERT PEM", "KEY PEM")),
            made_by: "m1",
            scratch: &scratch,
        },
        &out,
    )
    .await
    .unwrap();
    assert!(
        fs::read_dir(&scratch).unwrap().next().is_none(),
        "scratch left"
    );
    (out, manifest)
}

#[tokio::test]
async fn a_backup_restores_into_a_new_data_dir_with_state_secrets_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, manifest) = backed_up(dir.path()).await;
    assert_eq!(manifest.format, FORMAT);
    assert_eq!(manifest.images.len(), 1);
    assert!(manifest.applied_index >= 1);

    let data = dir.path().join("restored");
    let r = restore(&snap, &data).await.unwrap();
    assert_eq!((r.services, r.images, r.made_by.as_str()), (1, 1, "m1"));
    assert_eq!(
        fs::read_to_string(data.join("admin.token")).unwrap(),
        "secret-token"
    );
    assert_eq!(
        fs::read_to_string(data.join("pki/ca.key")).unwrap(),
        "KEY PEM"
    );
    let db = dash_store::open(&data.join("dash.db")).await.unwrap();
    let store = MasterStore::new(db.clone());
    assert_eq!(store.services().await.unwrap()[0].spec.name.as_str(), "web");
    // Detached from the old log: the next start makes a one-member cluster of it.
    let (index, log_id) = StateMachine::new(db).applied_log_id().await.unwrap();
    assert!(index >= 1 && log_id.is_none(), "{index} {log_id:?}");
    let images = ImageStore::open(&data.join("images")).unwrap();
    assert!(images.resolve("app:1").is_ok());
    // Nothing but the data dir beside it.
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restored"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The restore fails with `want` in its message and creates nothing.
async fn refused(file: &Path, data: &Path, want: &str) {
    let e = restore(file, data).await.unwrap_err().to_string();
    assert!(e.contains(want), "{e}");
    assert!(!data.exists(), "{} was created", data.display());
    let parent = data.parent().unwrap();
    let staged = fs::read_dir(parent)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".restore-")
        })
        .count();
    assert_eq!(staged, 0, "a staging dir was left");
}

#[tokio::test]
async fn a_truncated_backup_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, _) = backed_up(dir.path()).await;
    let bytes = fs::read(&snap).unwrap();
    for cut in [bytes.len() / 3, bytes.len() - 2048, 0] {
        let short = dir.path().join(format!("short-{cut}.snap"));
        fs::write(&short, &bytes[..cut]).unwrap();
        let e = restore(&short, &dir.path().join("r")).await.unwrap_err();
        assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}");
        refused(&short, &dir.path().join("r"), "nothing was changed").await;
    }
}

#[tokio::test]
async fn a_damaged_byte_is_found_by_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, _) = backed_up(dir.path()).await;
    let mut bytes = fs::read(&snap).unwrap();
    // The first file's data starts after its 512-byte header: flip a byte of state.db.
    bytes[512 + 100] ^= 0xff;
    let bad = dir.path().join("bad.snap");
    fs::write(&bad, &bytes).unwrap();
    refused(&bad, &dir.path().join("r"), "\"state.db\" is damaged").await;
}

fn tar_of(path: &Path, entries: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Written raw so that hostile names get through the builder's own checks.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.finish().unwrap();
}

#[tokio::test]
async fn foreign_and_hostile_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r");
    let empty = dir.path().join("empty.snap");
    fs::write(&empty, b"").unwrap();
    refused(&empty, &data, "no dash-backup.json").await;

    let foreign = dir.path().join("foreign.snap");
    tar_of(&foreign, &[("etc/passwd", b"root:x:0:0")]);
    refused(&foreign, &data, "no Dash backup has").await;

    let escape = dir.path().join("escape.snap");
    tar_of(&escape, &[("../state.db", b"x")]);
    refused(&escape, &data, "no Dash backup has").await;
    assert!(!dir.path().join("state.db").exists());

    let text = dir.path().join("text.snap");
    fs::write(
        &text,
        "this is not a tar file at all, just words\n".repeat(40),
    )
    .unwrap();
    refused(&text, &data, "nothing was changed").await;

    // A well-formed backup whose state is an SQLite file of someone else's.
    let (snap, _) = backed_up(dir.path()).await;
    let unpacked = dir.path().join("u");
    let manifest = unpack(&snap, &unpacked).unwrap();
    let other = dir.path().join("other.db");
    {
        let db = dash_store::open_raft_log(&other).await.unwrap();
        drop(db);
    }
    let other_bytes = fs::read(&other).unwrap();
    let mut m = manifest.clone();
    m.images.clear();
    m.files = vec![
        FileEntry {
            path: "state.db".into(),
            size: other_bytes.len() as u64,
            sha256: hex(&sha2::Sha256::digest(&other_bytes)),
        },
        FileEntry {
            path: "admin.token".into(),
            size: 1,
            sha256: hex(&sha2::Sha256::digest(b"t")),
        },
    ];
    let fake = dir.path().join("fake.snap");
    tar_of(
        &fake,
        &[
            ("state.db", &other_bytes),
            ("admin.token", b"t"),
            (MANIFEST, &serde_json::to_vec(&m).unwrap()),
        ],
    );
    refused(&fake, &data, "not a Dash master's state").await;
}

#[tokio::test]
async fn a_restore_never_writes_over_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, _) = backed_up(dir.path()).await;
    let data = dir.path().join("used");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("dash.db"), b"mine").unwrap();
    let e = restore(&snap, &data).await.unwrap_err();
    assert!(matches!(e, BackupError::Occupied(_)), "{e}");
    assert_eq!(fs::read(data.join("dash.db")).unwrap(), b"mine");
    // An empty dir is fine.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    restore(&snap, &empty).await.unwrap();
    assert!(empty.join("dash.db").exists());
}
