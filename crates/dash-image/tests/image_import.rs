//! Image store: importing OCI layouts, `docker save` archives and rootfs tarballs built from
//! the host's busybox, then resolving, listing and removing them.

#[path = "image_support.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use dash_image::{ImageConfig, ImageStore};
use support::*;

fn busybox_layers() -> Vec<Layer> {
    vec![
        Layer::new(busybox_rootfs(), Compression::Gzip),
        Layer::new(top_layer(), Compression::Zstd),
    ]
}

/// The busybox image, tagged "busybox", as an OCI layout archive in `env`'s temp dir.
fn busybox_oci_archive(env: &Env) -> PathBuf {
    env.oci_archive("bb.tar", "busybox", busybox_layers())
}

fn assert_busybox_image(store: &ImageStore, reference: &str) {
    let resolved = store.resolve(reference).expect("resolve");
    assert_eq!(resolved.layer_dirs.len(), 2);
    let [bottom, top] = [&resolved.layer_dirs[0], &resolved.layer_dirs[1]];
    assert!(bottom.is_absolute());
    assert_eq!(
        fs::read(bottom.join("bin/busybox")).expect("bin/busybox in the bottom layer"),
        fs::read(BUSYBOX).expect("host busybox")
    );
    assert_eq!(
        fs::metadata(bottom.join("bin/busybox"))
            .expect("bin/busybox")
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_link(bottom.join("bin/sh")).expect("bin/sh symlink"),
        Path::new("busybox")
    );
    // The top layer deletes etc/motd: an overlay whiteout, a 0/0 character device.
    let motd = fs::symlink_metadata(top.join("etc/motd")).expect("etc/motd whiteout");
    assert!(
        motd.file_type().is_char_device(),
        "etc/motd is not a whiteout"
    );
    assert_eq!(motd.rdev(), 0);
    assert!(!top.join("etc/.wh.motd").exists());
    assert!(!top.join("opt/.wh..wh..opq").exists());
    assert_eq!(
        resolved.config,
        ImageConfig {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hello".into()],
            env: vec!["PATH=/bin".into(), "GREETING=hi".into()],
            working_dir: Some("/root".into()),
            user: Some("0:0".into()),
        }
    );
    assert_eq!(
        resolved.record.created.as_deref(),
        Some("2024-05-01T12:00:00Z")
    );
}

#[test]
fn oci_layout_with_gzip_and_zstd_layers_imports_and_resolves() {
    let env = Env::new();
    let store = env.store();
    let layers = busybox_layers();
    let (files, ids) = oci_layout(&[OciImage {
        ref_name: Some("busybox".into()),
        layers: layers.clone(),
    }]);
    let (config_hex, _, _) = &ids[0];
    let archive = env.input("busybox-oci.tar", &files.to_tar());

    let records = store.import_archive(&archive).unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.id, format!("sha256:{config_hex}"));
    assert_eq!(record.tags, vec!["busybox:latest"]);
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(&l.tar)))
        .collect();
    assert_eq!(record.layers, diff_ids);
    assert_eq!(
        record.size_bytes,
        layers.iter().map(|l| l.tar.len() as u64).sum::<u64>()
    );

    for reference in [
        "busybox",
        "busybox:latest",
        &config_hex[..12],
        &format!("sha256:{}", &config_hex[..20]),
    ] {
        assert_busybox_image(&store, reference);
        assert_eq!(
            store.resolve(reference).unwrap().record,
            *record,
            "{reference}"
        );
    }
    // 2 layers + config + manifest; layer dirs are named by diff_id.
    assert_eq!(env.blob_count(), 4);
    assert_eq!(env.layer_count(), 2);
    assert!(
        env.root
            .join("layers")
            .join(sha256_hex(&layers[0].tar))
            .is_dir()
    );
    assert_eq!(env.tmp_count(), 0);
    assert_eq!(store.list().unwrap(), records);
}

#[test]
fn docker_save_archive_imports_and_shares_layers_with_the_oci_import() {
    let env = Env::new();
    let store = env.store();
    let layers = vec![
        Layer::new(busybox_rootfs(), Compression::None),
        Layer::new(top_layer(), Compression::Gzip),
    ];
    let (files, config_hex) = docker_save(&["busybox:1.36", "localhost:5000/tools/bb"], &layers);
    let archive = env.input(
        "busybox-docker.tar.gz",
        &Compression::Gzip.apply(&files.to_tar()),
    );

    let records = store.import_archive(&archive).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, format!("sha256:{config_hex}"));
    assert_eq!(
        records[0].tags,
        vec!["busybox:1.36", "localhost:5000/tools/bb:latest"]
    );
    assert_busybox_image(&store, "busybox:1.36");
    assert_busybox_image(&store, "localhost:5000/tools/bb");
    // A synthesised manifest is stored with the config and the two layer blobs.
    assert_eq!(env.blob_count(), 4);

    // The same layers, compressed differently, in an OCI layout: new blobs, same layer dirs.
    let (oci, _) = oci_layout(&[OciImage {
        ref_name: Some("busybox:oci".into()),
        layers: vec![
            Layer::new(busybox_rootfs(), Compression::Zstd),
            Layer::new(top_layer(), Compression::Zstd),
        ],
    }]);
    let oci = env.input("oci.tar", &oci.to_tar());
    let oci_records = store.import_archive(&oci).unwrap();
    assert_eq!(oci_records[0].layers, records[0].layers);
    assert_eq!(env.layer_count(), 2);
    assert_eq!(
        store.list().unwrap().len(),
        1,
        "same config, so the same image id"
    );
    // The OCI manifest and zstd blobs replace the docker ones: config + manifest + 2 layers.
    assert_eq!(env.blob_count(), 4);
    for layer in &layers {
        let plain_or_gzip = sha256_hex(&layer.blob());
        assert!(!env.root.join("blobs/sha256").join(plain_or_gzip).exists());
    }
    let tags = &store.resolve("busybox:oci").unwrap().record.tags;
    assert_eq!(
        tags,
        &vec![
            "busybox:1.36",
            "busybox:oci",
            "localhost:5000/tools/bb:latest"
        ]
    );
}

#[test]
fn importing_twice_changes_nothing() {
    let env = Env::new();
    let store = env.store();
    let archive = busybox_oci_archive(&env);
    let first = store.import_archive(&archive).unwrap();
    let refs = fs::read(env.root.join("refs.json")).unwrap();
    let layer_dir = store.resolve("busybox").unwrap().layer_dirs[0].clone();
    let inode = fs::metadata(layer_dir.join("bin/busybox")).unwrap().ino();

    let second = store.import_archive(&archive).unwrap();
    assert_eq!(first, second);
    assert_eq!(fs::read(env.root.join("refs.json")).unwrap(), refs);
    assert_eq!(env.blob_count(), 4);
    assert_eq!(env.layer_count(), 2);
    assert_eq!(env.tmp_count(), 0);
    let again = fs::metadata(layer_dir.join("bin/busybox")).unwrap().ino();
    assert_eq!(inode, again, "the layer was not unpacked again");
}

#[test]
fn remove_untags_then_frees_unshared_blobs_and_layers() {
    let env = Env::new();
    let store = env.store();
    let base = Layer::new(busybox_rootfs(), Compression::Gzip);
    let (files, ids) = oci_layout(&[
        OciImage {
            ref_name: Some("bb:one".into()),
            layers: vec![base.clone(), Layer::new(top_layer(), Compression::Zstd)],
        },
        OciImage {
            ref_name: Some("bb:two".into()),
            layers: vec![base.clone()],
        },
    ]);
    let archive = env.input("two.tar", &files.to_tar());
    assert_eq!(store.import_archive(&archive).unwrap().len(), 2);
    // The base layer blob is shared: 2 layer blobs, 2 configs, 2 manifests.
    assert_eq!(env.blob_count(), 6);
    assert_eq!(env.layer_count(), 2);

    // A second tag for image one (same layers, so the same config and id) keeps it alive when
    // the first tag is removed.
    let layers = vec![base.clone(), Layer::new(top_layer(), Compression::Zstd)];
    store
        .import_archive(&env.oci_archive("alias.tar", "bb:alias", layers))
        .unwrap();
    let after = store.remove("bb:one").unwrap();
    assert_eq!(after.tags, vec!["bb:alias"]);
    assert_eq!(env.blob_count(), 6);

    let gone = store.remove("bb:alias").unwrap();
    assert!(gone.tags.is_empty());
    assert_eq!(gone.id, format!("sha256:{}", ids[0].0));
    // Config, manifest and the top layer blob are gone; the base layer blob is shared.
    assert_eq!(env.blob_count(), 3);
    assert_eq!(env.layer_count(), 1);
    assert!(!env.root.join("blobs/sha256").join(&ids[0].2[1]).exists());
    assert!(env.root.join("blobs/sha256").join(&ids[0].2[0]).exists());
    assert!(store.resolve("bb:one").is_err());
    assert_eq!(store.resolve("bb:two").unwrap().layer_dirs.len(), 1);

    // By id: every tag goes, and with the last image the store is empty.
    let two = store.remove(&ids[1].0[..12]).unwrap();
    assert!(two.tags.is_empty());
    assert_eq!(env.blob_count(), 0);
    assert_eq!(env.layer_count(), 0);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(env.tmp_count(), 0);
    let err = store.remove("bb:two").unwrap_err().to_string();
    assert_eq!(err, "image \"bb:two\" not found");
}

#[test]
fn rootfs_tarball_becomes_a_one_layer_image() {
    let env = Env::new();
    let store = env.store();
    let rootfs = busybox_rootfs();
    let path = env.input("rootfs.tar.zst", &Compression::Zstd.apply(&rootfs));
    let record = store.import_rootfs(&path, "localhost/bb:1").unwrap();
    assert_eq!(record.tags, vec!["localhost/bb:1"]);
    assert_eq!(
        record.layers,
        vec![format!("sha256:{}", sha256_hex(&rootfs))]
    );
    assert_eq!(record.size_bytes, rootfs.len() as u64);
    assert_eq!(record.created, None);

    let resolved = store.resolve("localhost/bb:1").unwrap();
    assert_eq!(resolved.config, ImageConfig::default());
    assert!(resolved.layer_dirs[0].join("bin/busybox").is_file());
    assert_eq!(
        env.blob_count(),
        3,
        "rootfs blob, synthesised config and manifest"
    );

    // The same tarball again (now gzip) under another tag: a new blob, the same layer.
    let gz = env.input("rootfs.tar.gz", &Compression::Gzip.apply(&rootfs));
    let again = store.import_rootfs(&gz, "bb2").unwrap();
    assert_eq!(again.layers, record.layers);
    assert_eq!(env.layer_count(), 1);
    assert_eq!(env.tmp_count(), 0);
    let err = store
        .import_rootfs(&gz, "Bad Name")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid image reference \"Bad Name\""),
        "{err}"
    );
}

#[test]
fn open_removes_leftovers_of_a_killed_import() {
    let env = Env::new();
    let store = env.store();
    store.import_archive(&busybox_oci_archive(&env)).unwrap();
    // What a kill -9 between "move into place" and "write refs.json" leaves, and a staging dir.
    let orphan_blob = env.root.join("blobs/sha256").join("ab".repeat(32));
    fs::write(&orphan_blob, b"orphan").unwrap();
    let orphan_layer = env.root.join("layers").join("cd".repeat(32));
    fs::create_dir_all(orphan_layer.join("bin")).unwrap();
    fs::create_dir_all(env.root.join("tmp/import-1-2-3/files")).unwrap();
    fs::write(env.root.join("tmp/refs.json.42"), b"{").unwrap();
    drop(store);

    let store = env.store();
    assert!(!orphan_blob.exists());
    assert!(!orphan_layer.exists());
    assert_eq!(env.tmp_count(), 0);
    assert_eq!(env.blob_count(), 4);
    assert_eq!(env.layer_count(), 2);
    assert_busybox_image(&store, "busybox");
}

#[test]
fn ambiguous_and_unknown_references() {
    let env = Env::new();
    let store = env.store();
    assert_eq!(
        store.resolve("nothing").unwrap_err().to_string(),
        "image \"nothing\" not found"
    );
    assert!(
        store
            .resolve("UPPER")
            .unwrap_err()
            .to_string()
            .contains("must be lowercase")
    );
    assert!(
        store
            .resolve("0123456789ab")
            .unwrap_err()
            .to_string()
            .contains("not found")
    );
}

/// Mounts the layers of the busybox image with overlayfs, as the runtime will, and checks the
/// merged view: whiteouts hide, opaque directories hide lower content, busybox runs.
#[test]
fn layer_dirs_stack_as_overlay_lowerdirs() {
    let env = Env::new();
    let store = env.store();
    store.import_archive(&busybox_oci_archive(&env)).unwrap();
    let resolved = store.resolve("busybox").unwrap();
    let lower = resolved
        .layer_dirs
        .iter()
        .rev()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let merged = env.dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={lower}"))
        .arg(&merged)
        .status()
        .expect("mount(8) is needed for this test");
    assert!(
        status.success(),
        "mount -t overlay failed (needs root and overlayfs)"
    );
    let seen = (
        merged.join("etc/motd").exists(),
        fs::read_to_string(merged.join("etc/hostname")).ok(),
        merged.join("opt/old").exists(),
        merged.join("opt/new").exists(),
        Command::new(merged.join("bin/busybox"))
            .arg("true")
            .status()
            .map(|s| s.success())
            .ok(),
    );
    let umount = Command::new("umount").arg(&merged).status().unwrap();
    assert!(umount.success());
    assert_eq!(
        seen,
        (false, Some("dash\n".to_owned()), false, true, Some(true))
    );
}
