use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::*;

/// Writes tar streams byte by byte, so hostile names (`..`, absolute paths) that the tar
/// crate's builder refuses go into the headers as they are.
struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    fn new() -> Self {
        Self { buf: Vec::new() }
    }

    fn raw(
        mut self,
        name: &[u8],
        kind: EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&[u8]>,
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(name.as_bytes(), EntryType::Regular, 0o644, data, None)
    }

    fn dir(self, name: &str) -> Self {
        self.raw(name.as_bytes(), EntryType::Directory, 0o755, b"", None)
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(
            name.as_bytes(),
            EntryType::Symlink,
            0o777,
            b"",
            Some(target.as_bytes()),
        )
    }

    fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(
            name.as_bytes(),
            EntryType::Link,
            0o644,
            b"",
            Some(target.as_bytes()),
        )
    }

    /// Appends a PAX header carrying `records` for the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(b"././@PaxHeader", EntryType::XHeader, 0o644, &data, None)
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }

    fn unterminated(self) -> Vec<u8> {
        self.buf
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    layer: PathBuf,
    sentinel: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let sentinel = base.join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        Self {
            layer: base.join("store").join("layer"),
            _dir: dir,
            base,
            sentinel,
        }
    }

    fn unpack_with(&self, blob: &[u8], limits: &Limits) -> Result<LayerSummary, ImageError> {
        fs::create_dir_all(self.base.join("store")).unwrap();
        let path = self.base.join("blob");
        fs::write(&path, blob).unwrap();
        unpack_layer(&path, "sha256:test", &self.layer, limits)
    }

    fn unpack(&self, blob: &[u8]) -> Result<LayerSummary, ImageError> {
        self.unpack_with(blob, &Limits::default())
    }

    /// The error's message, with its sources.
    fn fail(&self, blob: &[u8]) -> String {
        let err = self.unpack(blob).unwrap_err();
        self.assert_nothing_outside();
        chain(&err)
    }

    fn assert_nothing_outside(&self) {
        assert_eq!(
            fs::read_dir(&self.sentinel).unwrap().count(),
            0,
            "sentinel touched"
        );
        assert!(!self.base.join("evil").exists());
        assert!(!self.base.join("store").join("evil").exists());
    }
}

use dash_core::link::with_causes as chain;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    os::get_xattr(path, name).unwrap()
}

#[test]
fn unpacks_files_dirs_links_with_metadata() {
    let f = Fixture::new();
    let blob = Tar::new()
        .dir("./")
        .dir("bin/")
        .raw(b"bin/busybox", EntryType::Regular, 0o4755, b"\x7fELF", None)
        .symlink("bin/sh", "busybox")
        .symlink("bin/abs", "/bin/busybox")
        .hardlink("bin/ls", "bin/busybox")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .finish();
    let summary = f.unpack(&blob).unwrap();
    assert_eq!(summary.unpacked_bytes, blob.len() as u64);
    assert_eq!(summary.diff_id_hex, stream::sha256_hex(&blob));

    let busybox = f.layer.join("bin/busybox");
    let meta = fs::symlink_metadata(&busybox).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    assert_eq!(meta.mtime(), 1_600_000_000);
    assert_eq!(meta.nlink(), 2, "hardlink shares the inode");
    assert_eq!(fs::read(f.layer.join("bin/ls")).unwrap(), b"\x7fELF");
    assert_eq!(
        fs::read_link(f.layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_link(f.layer.join("bin/abs")).unwrap(),
        Path::new("/bin/busybox")
    );
    let sh = fs::symlink_metadata(f.layer.join("bin/sh")).unwrap();
    assert_eq!((sh.uid(), sh.mtime()), (1000, 1_600_000_000));
    // Directory metadata is applied after its children were written.
    let bin = fs::metadata(f.layer.join("bin")).unwrap();
    assert_eq!(bin.mtime(), 1_600_000_000);
    assert_eq!(bin.uid(), 1000);
    assert_eq!(fs::metadata(&f.layer).unwrap().mtime(), 1_600_000_000);
    // A parent without its own entry is created 0755.
    assert_eq!(
        fs::metadata(f.layer.join("etc"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
}

#[test]
fn long_names_and_pax_records_are_applied() {
    let f = Fixture::new();
    let long = format!("{}/file", "d".repeat(150));
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o600);
    tar.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let gnu = tar.into_inner().unwrap();
    // GNU long name.
    f.unpack(&gnu).unwrap();
    assert_eq!(fs::read(f.layer.join(&long)).unwrap(), b"abc");

    let f = Fixture::new();
    let blob = Tar::new()
        .pax(&[
            ("path", long.as_bytes()),
            ("uid", b"70000"),
            ("mtime", b"1700000000.25"),
            ("SCHILY.xattr.user.note", b"a\nb"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ])
        .file("short", b"xyz")
        .finish();
    f.unpack(&blob).unwrap();
    let path = f.layer.join(&long);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.uid(), 70000);
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_700_000_000, 250_000_000)
    );
    assert_eq!(xattr(&path, "user.note").as_deref(), Some(&b"a\nb"[..]));
    assert_eq!(
        xattr(&path, "trusted.overlay.opaque"),
        None,
        "trusted.* never taken from an image"
    );
    assert!(!f.layer.join("short").exists());
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let f = Fixture::new();
    let blob = Tar::new()
        .dir("etc/")
        .file("etc/.wh.motd", b"")
        .file("opt/.wh..wh..opq", b"")
        .file(".wh..wh.plnk", b"")
        .file(".wh.gone-dir", b"")
        .dir("gone-dir/")
        .dir("kept/")
        .file(".wh.kept", b"")
        .finish();
    f.unpack(&blob).unwrap();
    let motd = fs::symlink_metadata(f.layer.join("etc/motd")).unwrap();
    assert!(motd.file_type().is_char_device());
    assert_eq!(motd.rdev(), 0);
    assert!(!f.layer.join("etc/.wh.motd").exists());
    assert_eq!(
        xattr(&f.layer.join("opt"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!f.layer.join("opt/.wh..wh..opq").exists());
    assert!(!f.layer.join(".wh..wh.plnk").exists());
    // Deleted then recreated in the same layer: a directory hiding the lower one.
    assert!(f.layer.join("gone-dir").is_dir());
    assert_eq!(
        xattr(&f.layer.join("gone-dir"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        xattr(&f.layer.join("kept"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn absolute_paths_are_taken_as_relative() {
    let f = Fixture::new();
    let evil = f.sentinel.join("evil");
    let blob = Tar::new()
        .raw(
            evil.as_os_str().as_bytes(),
            EntryType::Regular,
            0o644,
            b"x",
            None,
        )
        .raw(b"/etc/x", EntryType::Regular, 0o644, b"y", None)
        .finish();
    f.unpack(&blob).unwrap();
    f.assert_nothing_outside();
    let inside = f.layer.join(evil.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside).unwrap(), b"x");
    assert_eq!(fs::read(f.layer.join("etc/x")).unwrap(), b"y");
}

#[test]
fn dot_dot_is_refused() {
    for name in [
        "../evil",
        "../../evil",
        "a/../../evil",
        "./../evil",
        "/../evil",
        "a/..",
    ] {
        let f = Fixture::new();
        let blob = Tar::new()
            .raw(name.as_bytes(), EntryType::Regular, 0o644, b"x", None)
            .finish();
        let err = f.fail(&blob);
        assert!(err.contains("escapes the layer directory"), "{name}: {err}");
        assert!(err.contains(&format!("{name:?}")), "{name}: {err}");
    }
}

#[test]
fn symlink_escapes_are_refused() {
    fn sentinel_target(f: &Fixture) -> String {
        f.sentinel.display().to_string()
    }
    type Case = Box<dyn Fn(&Fixture) -> Vec<u8>>;
    let cases: Vec<Case> = vec![
        Box::new(|f| {
            Tar::new()
                .symlink("a", &sentinel_target(f))
                .file("a/evil", b"x")
                .finish()
        }),
        Box::new(|_| Tar::new().symlink("a", "/").file("a/evil", b"x").finish()),
        Box::new(|_| {
            Tar::new()
                .symlink("a", "../..")
                .file("a/evil", b"x")
                .finish()
        }),
        Box::new(|_| Tar::new().symlink("a", "..").file("a/evil", b"x").finish()),
        Box::new(|f| {
            Tar::new()
                .dir("d/")
                .symlink("d", &sentinel_target(f))
                .file("d/evil", b"x")
                .finish()
        }),
        Box::new(|f| {
            Tar::new()
                .symlink("a", &sentinel_target(f))
                .dir("a/evil/")
                .finish()
        }),
        Box::new(|f| {
            Tar::new()
                .symlink("a", &sentinel_target(f))
                .symlink("a/evil", "/")
                .finish()
        }),
        Box::new(|f| {
            Tar::new()
                .file("t", b"x")
                .symlink("a", &sentinel_target(f))
                .hardlink("a/evil", "t")
                .finish()
        }),
        Box::new(|f| {
            Tar::new()
                .symlink("a", &sentinel_target(f))
                .file("a/.wh.evil", b"")
                .finish()
        }),
    ];
    for (i, case) in cases.iter().enumerate() {
        let f = Fixture::new();
        let err = f.fail(&case(&f));
        assert!(
            err.contains("passes through the symlink \"a\"")
                || err.contains("passes through the symlink \"d\""),
            "case {i}: {err}"
        );
    }
}

#[test]
fn a_symlink_is_replaced_not_followed() {
    // A later regular file at the symlink's own path replaces the symlink.
    let f = Fixture::new();
    let target = f.sentinel.join("victim");
    let blob = Tar::new()
        .symlink("a", &target.display().to_string())
        .file("a", b"x")
        .finish();
    f.unpack(&blob).unwrap();
    f.assert_nothing_outside();
    assert_eq!(fs::read(f.layer.join("a")).unwrap(), b"x");
}

#[test]
fn hardlink_escapes_are_refused() {
    let cases = [
        (
            Tar::new().hardlink("evil", "../../etc/passwd").finish(),
            "escapes the layer directory",
        ),
        (
            Tar::new().hardlink("evil", "/etc/passwd").finish(),
            "does not exist in the layer",
        ),
        (
            Tar::new()
                .symlink("s", "/etc")
                .hardlink("evil", "s/passwd")
                .finish(),
            "passes through a symlink",
        ),
        (
            Tar::new().dir("d/").hardlink("evil", "d").finish(),
            "not a regular file or symlink",
        ),
        (Tar::new().hardlink("evil", "").finish(), "without a target"),
    ];
    for (i, (blob, want)) in cases.iter().enumerate() {
        let f = Fixture::new();
        let err = f.fail(blob);
        assert!(err.contains(want), "case {i}: {err}");
    }
}

#[test]
fn hardlink_to_a_symlink_links_the_symlink_itself() {
    let f = Fixture::new();
    let blob = Tar::new()
        .symlink("s", "/etc/passwd")
        .hardlink("h", "s")
        .finish();
    f.unpack(&blob).unwrap();
    assert_eq!(
        fs::read_link(f.layer.join("h")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[test]
fn fifos_are_made_and_never_opened() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let f = Fixture::new();
    // A fifo in a subdirectory, as `RUN mkfifo /run/app/ctl` leaves it; if unpacking opened
    // it, this test would hang.
    f.unpack(
        &Tar::new()
            .raw(b"run/app/ctl", EntryType::Fifo, 0o640, b"", None)
            .finish(),
    )
    .unwrap();
    let m = fs::symlink_metadata(f.layer.join("run/app/ctl")).unwrap();
    assert!(m.file_type().is_fifo(), "{m:?}");
    assert_eq!(m.mode() & 0o7777, 0o640);
}

#[test]
fn devices_are_refused() {
    for (kind, want) in [
        (EntryType::Char, "is a character device"),
        (EntryType::Block, "is a block device"),
    ] {
        let f = Fixture::new();
        let err = f.fail(&Tar::new().raw(b"dev/null", kind, 0o666, b"", None).finish());
        assert!(err.contains(want) && err.contains("\"dev/null\""), "{err}");
        assert!(!f.layer.join("dev/null").exists());
    }
}

#[test]
fn truncated_streams_are_refused() {
    let full = Tar::new().file("a", &[7u8; 2000]).file("b", b"x").finish();
    // Cut inside a file's data.
    let f = Fixture::new();
    let err = f.fail(&full[..1024]);
    assert!(err.contains("truncated"), "{err}");
    // Cut inside a header.
    let f = Fixture::new();
    let err = f.fail(&full[..2560 + 100]);
    assert!(
        err.contains("cannot read the layer as a tar stream"),
        "{err}"
    );
    // Cut at an entry boundary: no end-of-archive marker.
    let f = Fixture::new();
    let err = f.fail(&Tar::new().file("a", b"x").unterminated());
    assert!(err.contains("end-of-archive marker"), "{err}");
    // Empty and non-tar blobs.
    let f = Fixture::new();
    assert!(f.fail(b"").contains("the layer is empty"));
    let f = Fixture::new();
    let err = f.fail(&[b'x'; 700]);
    assert!(
        err.contains("cannot read the layer as a tar stream"),
        "{err}"
    );
}

#[test]
fn limits_stop_bombs() {
    let small = Limits {
        max_layer_bytes: 1 << 20,
        max_layer_entries: 10,
        ..Limits::default()
    };
    // 16 MiB of zeros gzip to about 16 KiB.
    let bomb = gzip(&Tar::new().file("zeros", &vec![0u8; 16 << 20]).finish());
    assert!(bomb.len() < 64 << 10);
    let f = Fixture::new();
    let err = chain(&f.unpack_with(&bomb, &small).unwrap_err());
    assert!(err.contains("exceeds the limit of 1048576 bytes"), "{err}");

    let mut many = Tar::new();
    for i in 0..11 {
        many = many.file(&format!("f{i}"), b"");
    }
    let f = Fixture::new();
    let err = chain(&f.unpack_with(&many.finish(), &small).unwrap_err());
    assert!(err.contains("more than 10 entries"), "{err}");

    let tiny_meta = Limits {
        max_metadata_bytes: 64,
        ..Limits::default()
    };
    let blob = Tar::new()
        .pax(&[("path", "p".repeat(100).as_bytes())])
        .file("x", b"")
        .finish();
    let f = Fixture::new();
    let err = chain(&f.unpack_with(&blob, &tiny_meta).unwrap_err());
    assert!(err.contains("larger than the limit of 64 bytes"), "{err}");
}

#[test]
fn compressed_layers_unpack_and_hash_the_uncompressed_stream() {
    let plain = Tar::new().file("a", b"hello").finish();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for blob in [gzip(&plain), zst] {
        let f = Fixture::new();
        let summary = f.unpack(&blob).unwrap();
        assert_eq!(summary.diff_id_hex, stream::sha256_hex(&plain));
        assert_eq!(fs::read(f.layer.join("a")).unwrap(), b"hello");
        let path = f.base.join("blob");
        assert_eq!(hash_layer(&path, "x", &Limits::default()).unwrap(), summary);
    }
}

#[test]
fn entries_replace_earlier_ones() {
    let f = Fixture::new();
    let blob = Tar::new()
        .file("x", b"old")
        .file("x", b"new")
        .dir("d/")
        .file("d/inner", b"1")
        .file("d", b"now a file")
        .file("f", b"")
        .dir("f/")
        .finish();
    f.unpack(&blob).unwrap();
    assert_eq!(fs::read(f.layer.join("x")).unwrap(), b"new");
    assert_eq!(fs::read(f.layer.join("d")).unwrap(), b"now a file");
    assert!(f.layer.join("f").is_dir());
}

#[test]
fn a_file_cannot_be_a_parent() {
    let f = Fixture::new();
    let err = f.fail(&Tar::new().file("a", b"").file("a/b", b"").finish());
    assert!(err.contains("is not a directory"), "{err}");
}
