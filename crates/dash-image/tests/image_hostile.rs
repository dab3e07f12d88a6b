//! Image store against hostile and broken input. Every rejected import must name the problem,
//! write nothing outside the store (a sentinel dir sits next to it), and leave the store as it
//! was: the same images, no new blob or layer, an empty tmp/.

#[path = "image_support.rs"]
mod support;

use std::fs;

use dash_image::{ImageStore, Limits};
use support::*;
use tar::EntryType;

/// A store that already holds one small image, so "nothing changed" is checked against a
/// non-empty store.
fn env_with_base() -> (Env, ImageStore) {
    let env = Env::new();
    let store = env.store();
    let base = Layer::new(
        RawTar::new().file("base", b"base\n").finish(),
        Compression::Gzip,
    );
    store
        .import_archive(&env.oci_archive("base.tar", "base", vec![base]))
        .expect("import the base image");
    (env, store)
}

/// Imports `archive` expecting failure; checks the error mentions every `want` and that the
/// store and its surroundings are unchanged. Returns the error text.
fn rejected(env: &Env, store: &ImageStore, archive: &[u8], wants: &[&str]) -> String {
    let list = store.list().expect("list");
    let refs = fs::read(env.root.join("refs.json")).ok();
    let (blobs, layers) = (env.blob_count(), env.layer_count());
    let path = env.input("hostile.tar", archive);
    let err = store
        .import_archive(&path)
        .expect_err("the import must fail");
    let text = chain(&err);
    for want in wants {
        assert!(
            text.contains(want),
            "error {text:?} does not mention {want:?}"
        );
    }
    env.assert_nothing_outside();
    assert_eq!(store.list().expect("list"), list, "the image list changed");
    assert_eq!(
        fs::read(env.root.join("refs.json")).ok(),
        refs,
        "refs.json changed"
    );
    assert_eq!(env.tmp_count(), 0, "tmp/ is not empty");
    assert_eq!(env.blob_count(), blobs, "a blob was added");
    assert_eq!(env.layer_count(), layers, "a layer was added");
    text
}

/// An OCI layout whose image has a harmless first layer (unpacked before the hostile one, so
/// its cleanup is checked too) and then `hostile` as a gzip layer.
fn layout_with_layer(hostile: Vec<u8>) -> (Files, Vec<(String, String, Vec<String>)>) {
    let first = RawTar::new()
        .file("first", &sha256_hex(&hostile).into_bytes())
        .finish();
    oci_layout(&[OciImage {
        ref_name: Some("hostile".into()),
        layers: vec![
            Layer::new(first, Compression::Zstd),
            Layer::new(hostile, Compression::Gzip),
        ],
    }])
}

/// Changes the first `from` byte of `data` to `to`.
fn alter(data: &mut [u8], from: u8, to: u8) {
    let at = data
        .iter()
        .position(|&b| b == from)
        .expect("a byte to alter");
    data[at] = to;
}

fn rejected_layer(env: &Env, store: &ImageStore, hostile: Vec<u8>, wants: &[&str]) -> String {
    let (files, ids) = layout_with_layer(hostile);
    let layer = format!("layer sha256:{}", ids[0].2[1]);
    let mut wants = wants.to_vec();
    wants.push(&layer);
    rejected(env, store, &files.to_tar(), &wants)
}

#[test]
fn dot_dot_traversal_is_rejected() {
    let (env, store) = env_with_base();
    for name in ["../../../evil", "a/../../../../evil", "./../evil"] {
        let tar = RawTar::new().file(name, b"x").finish();
        let want = format!("entry {name:?} escapes the layer directory");
        rejected_layer(&env, &store, tar, &[&want]);
    }
}

#[test]
fn symlink_escapes_are_rejected() {
    let (env, store) = env_with_base();
    let sentinel = env.sentinel.display().to_string();
    // Layer dir: <tmp dir>/store/tmp/import-*/layers/<hex>; five levels up is the tmp dir.
    let cases = [
        RawTar::new()
            .symlink("a", &sentinel)
            .file("a/evil", b"x")
            .finish(),
        RawTar::new()
            .symlink("a", "../../../../../sentinel")
            .file("a/evil", b"x")
            .finish(),
        RawTar::new()
            .symlink("a", "../..")
            .file("a/evil", b"x")
            .finish(),
        // `a -> /`, then a path that, followed, would land in the sentinel dir.
        RawTar::new()
            .symlink("a", "/")
            .file(&format!("a{sentinel}/evil"), b"x")
            .finish(),
        // A directory replaced by a symlink later in the same archive.
        RawTar::new()
            .dir("a/")
            .symlink("a", &sentinel)
            .file("a/evil", b"x")
            .finish(),
        RawTar::new()
            .symlink("a", &sentinel)
            .dir("a/evil/")
            .finish(),
    ];
    for tar in cases {
        rejected_layer(&env, &store, tar, &["passes through the symlink \"a\""]);
    }
}

#[test]
fn hardlink_escapes_are_rejected() {
    let (env, store) = env_with_base();
    let cases = [
        (
            RawTar::new().hardlink("evil", "../../etc/passwd").finish(),
            "hardlink whose target \"../../etc/passwd\" escapes the layer directory",
        ),
        (
            RawTar::new()
                .symlink("s", "/etc")
                .hardlink("evil", "s/passwd")
                .finish(),
            "hardlink to \"s/passwd\", which passes through a symlink",
        ),
        (
            RawTar::new().hardlink("evil", "/etc/passwd").finish(),
            "hardlink to \"/etc/passwd\", which does not exist in the layer",
        ),
    ];
    for (tar, want) in cases {
        rejected_layer(&env, &store, tar, &[want]);
    }
}

#[test]
fn device_nodes_are_rejected() {
    let (env, store) = env_with_base();
    for (name, kind, mode, want) in [
        (
            "dev/null",
            EntryType::Char,
            0o666,
            "entry \"dev/null\" is a character device",
        ),
        (
            "dev/sda",
            EntryType::Block,
            0o660,
            "entry \"dev/sda\" is a block device",
        ),
    ] {
        let device = RawTar::new().entry(name, kind, mode, b"", None).finish();
        rejected_layer(&env, &store, device, &[want]);
    }
}

/// Absolute entry names are taken as relative to the layer directory (as docker does): the
/// import succeeds and the file lands inside the layer, never at the absolute path.
#[test]
fn absolute_entry_paths_stay_inside_the_layer() {
    let (env, store) = env_with_base();
    let evil = env.sentinel.join("evil");
    let tar = RawTar::new()
        .file(&evil.display().to_string(), b"x")
        .file("/etc/x", b"y")
        .finish();
    let layers = vec![Layer::new(tar, Compression::None)];
    store
        .import_archive(&env.oci_archive("abs.tar", "abs", layers))
        .unwrap();
    env.assert_nothing_outside();
    let layer = &store.resolve("abs").unwrap().layer_dirs[0];
    assert_eq!(
        fs::read(layer.join(evil.strip_prefix("/").unwrap())).unwrap(),
        b"x"
    );
    assert_eq!(fs::read(layer.join("etc/x")).unwrap(), b"y");
}

#[test]
fn blob_digest_and_size_mismatches_are_rejected() {
    let (env, store) = env_with_base();
    let tar = RawTar::new().file("f", &[1u8; 4096]).finish();

    // Layer bytes changed after the manifest was written (same length).
    let (mut files, ids) = layout_with_layer(tar.clone());
    let hex = &ids[0].2[1];
    let blob = files.get_mut(&format!("blobs/sha256/{hex}"));
    let mid = blob.len() / 2;
    blob[mid] ^= 0xff;
    let want = format!("layer sha256:{hex}: content does not match digest sha256:{hex}");
    rejected(&env, &store, &files.to_tar(), &[&want]);

    // One byte more than the descriptor says.
    let (mut files, ids) = layout_with_layer(tar.clone());
    let hex = &ids[0].2[1];
    let blob = files.get_mut(&format!("blobs/sha256/{hex}"));
    let size = blob.len();
    blob.push(0);
    let want = format!(
        "layer sha256:{hex}: size mismatch: the descriptor says {size} bytes, the content has {}",
        size + 1
    );
    rejected(&env, &store, &files.to_tar(), &[&want]);

    // The config's diff_id does not match the layer's uncompressed content.
    let mut layer = Layer::new(tar.clone(), Compression::Gzip);
    layer.blob_override = Some(Compression::Gzip.apply(&RawTar::new().file("other", b"").finish()));
    let (files, _) = oci_layout(&[OciImage {
        ref_name: Some("x".into()),
        layers: vec![layer],
    }]);
    let want = format!("content does not match digest sha256:{}", sha256_hex(&tar));
    rejected(
        &env,
        &store,
        &files.to_tar(),
        &["uncompressed tar stream", &want, "diff_id"],
    );

    // The manifest itself altered: its digest in index.json no longer matches.
    let (mut files, ids) = layout_with_layer(tar.clone());
    alter(
        files.get_mut(&format!("blobs/sha256/{}", ids[0].1)),
        b'2',
        b'3',
    );
    rejected(
        &env,
        &store,
        &files.to_tar(),
        &[
            &format!("manifest sha256:{}", ids[0].1),
            "does not match digest",
        ],
    );

    // A blob named in the manifest is not in the archive.
    let (mut files, ids) = layout_with_layer(tar);
    let name = format!("blobs/sha256/{}", ids[0].2[0]);
    files.files.retain(|(n, _)| *n != name);
    rejected(
        &env,
        &store,
        &files.to_tar(),
        &[&format!("layer sha256:{} is missing", ids[0].2[0])],
    );
}

#[test]
fn docker_save_digest_in_file_name_is_checked() {
    let (env, store) = env_with_base();
    let layers = vec![Layer::new(
        RawTar::new().file("a", b"a").finish(),
        Compression::None,
    )];
    let (mut files, config_hex) = docker_save(&["x:1"], &layers);
    alter(files.get_mut(&format!("{config_hex}.json")), b'/', b'_');
    rejected(
        &env,
        &store,
        &files.to_tar(),
        &[&format!(
            "config {config_hex}.json: content does not match digest sha256:{config_hex}"
        )],
    );

    // A layer.tar whose content is not the config's diff_id.
    let mut layer = Layer::new(RawTar::new().file("a", b"a").finish(), Compression::None);
    layer.blob_override = Some(RawTar::new().file("b", b"b").finish());
    let (files, _) = docker_save(&["x:2"], &[layer]);
    rejected(
        &env,
        &store,
        &files.to_tar(),
        &["uncompressed tar stream: content does not match digest"],
    );
}

#[test]
fn truncated_tars_are_rejected() {
    let (env, store) = env_with_base();
    let full = RawTar::new()
        .file("a", &[7u8; 3000])
        .file("b", b"b")
        .finish();
    // Digests are computed over the truncated bytes, so only the tar parser can notice.
    rejected_layer(
        &env,
        &store,
        full[..1536].to_vec(),
        &["truncated inside entry \"a\""],
    );
    rejected_layer(
        &env,
        &store,
        full[..3584 + 100].to_vec(),
        &["cannot read the layer as a tar stream"],
    );
    let unterminated = RawTar::new().file("a", b"a").unterminated();
    rejected_layer(
        &env,
        &store,
        unterminated,
        &["truncated", "end-of-archive marker"],
    );

    // The archive itself cut short.
    let (files, _) = layout_with_layer(RawTar::new().file("a", &[1u8; 8192]).finish());
    let archive = files.to_tar();
    let cut = &archive[..archive.len() / 2 + 100];
    rejected(&env, &store, cut, &["archive", "truncated"]);
}

#[test]
fn decompression_bombs_hit_the_limits() {
    let env = Env::new();
    let limits = Limits {
        max_layer_bytes: 4 << 20,
        max_layer_entries: 100,
        max_archive_bytes: 8 << 20,
        ..Limits::default()
    };
    let store = env.store_with(limits);
    // 64 MiB of zeros: about 64 KiB of gzip.
    let bomb = RawTar::new().file("zeros", &vec![0u8; 64 << 20]).finish();
    let (files, _) = layout_with_layer(bomb);
    let archive = files.to_tar();
    assert!(archive.len() < 1 << 20, "the bomb archive is small");
    rejected(
        &env,
        &store,
        &archive,
        &["uncompressed size exceeds the limit of 4194304 bytes"],
    );

    let mut many = RawTar::new();
    for i in 0..150 {
        many = many.file(&format!("f{i}"), b"");
    }
    rejected_layer(&env, &store, many.finish(), &["has more than 100 entries"]);

    // The whole archive gzip-compressed, inflating past max_archive_bytes.
    let mut files = Files::default();
    files.add("zeros", vec![0u8; 16 << 20]);
    let archive = Compression::Gzip.apply(&files.to_tar());
    rejected(
        &env,
        &store,
        &archive,
        &["exceeds the limit of 8388608 bytes (max_archive_bytes)"],
    );
}

#[test]
fn files_that_are_not_image_archives_are_rejected() {
    let (env, store) = env_with_base();
    rejected(&env, &store, b"", &["hostile.tar: the file is empty"]);
    rejected(
        &env,
        &store,
        &b"this is not a tar archive, just some text\n".repeat(30),
        &["hostile.tar: not a tar archive"],
    );
    rejected(
        &env,
        &store,
        &Compression::Gzip.apply(b"plain text"),
        &["not a tar archive"],
    );
    rejected(
        &env,
        &store,
        &Files::tar_of(&[("README", b"hello")]),
        &["is not an image archive", "index.json", "manifest.json"],
    );
    rejected(
        &env,
        &store,
        &Files::tar_of(&[("manifest.json", b"{not json")]),
        &["manifest.json: invalid json"],
    );
    let no_manifest = Files::tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
    ]);
    rejected(
        &env,
        &store,
        &no_manifest,
        &["index.json lists no image manifest"],
    );
    // A bad tag in docker save's RepoTags.
    let layers = vec![Layer::new(
        RawTar::new().file("a", b"a").finish(),
        Compression::None,
    )];
    let (files, _) = docker_save(&["Not/Valid"], &layers);
    rejected(
        &env,
        &store,
        &files.to_tar(),
        &["invalid image reference \"Not/Valid\""],
    );

    let err = store
        .import_rootfs(&env.input("empty.tar", b""), "x")
        .unwrap_err();
    assert!(chain(&err).contains("empty.tar: the file is empty"));
    let err = store
        .import_rootfs(&env.input("text.tar", b"hello world"), "x")
        .unwrap_err();
    assert!(
        chain(&err).contains("cannot read the layer as a tar stream"),
        "{}",
        chain(&err)
    );
    let err = store
        .import_archive(&env.dir.path().join("missing.tar"))
        .unwrap_err();
    assert!(chain(&err).contains("reading archive") && chain(&err).contains("missing.tar"));
    assert_eq!(env.tmp_count(), 0);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn hostile_rootfs_is_rejected_and_leaves_nothing() {
    let (env, store) = env_with_base();
    let (blobs, layers) = (env.blob_count(), env.layer_count());
    let tar = RawTar::new().file("ok", b"").file("../evil", b"x").finish();
    let err = store
        .import_rootfs(&env.input("rootfs.tar", &tar), "evil")
        .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("rootfs.tar: entry \"../evil\" escapes the layer directory"),
        "{text}"
    );
    env.assert_nothing_outside();
    assert_eq!(
        (env.blob_count(), env.layer_count(), env.tmp_count()),
        (blobs, layers, 0)
    );
    assert!(store.resolve("evil").is_err());
}

/// A named pipe is legitimate (`RUN mkfifo` in a Dockerfile; Docker and containerd import it):
/// it is created in the layer and never opened (opening one would hang the import).
#[test]
fn a_fifo_in_a_layer_is_imported_as_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let (env, store) = env_with_base();
    let layer = RawTar::new()
        .entry("run/ctl", EntryType::Fifo, 0o620, b"", None)
        .finish();
    let (files, _) = layout_with_layer(layer);
    store
        .import_archive(&env.input("fifo.tar", &files.to_tar()))
        .expect("a fifo imports");
    let image = store
        .resolve("hostile")
        .expect("resolve the imported image");
    let fifo = image
        .layer_dirs
        .iter()
        .map(|d| d.join("run/ctl"))
        .find(|p| p.symlink_metadata().is_ok())
        .expect("the fifo is in a layer");
    assert!(fifo.symlink_metadata().unwrap().file_type().is_fifo());
    env.assert_nothing_outside();
}
