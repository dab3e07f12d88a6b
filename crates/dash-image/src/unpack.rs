//! Safe unpacking of one layer into its own directory, ready to be an overlayfs lowerdir.
//!
//! Security-critical: the tar stream is hostile input. The rules, checked for every entry:
//! - the path is normalised by hand: `..` anywhere is refused, a leading `/` is dropped (the
//!   path is taken as relative to the layer directory, as docker does);
//! - no path is created through a symlink: each parent component is checked with
//!   `symlink_metadata` and must be a real directory (missing ones are created), and the last
//!   component is removed first and then created with `O_EXCL`/`O_NOFOLLOW`, `symlink()` or
//!   `link()`, none of which follow a symlink. This is sound because the layer directory lives
//!   in the store's private `tmp/`, written by this code alone (under the store lock);
//! - a hardlink target is normalised the same way, must already exist in this layer, must not
//!   be reached through a symlink and must be a regular file or a symlink;
//! - character and block devices are refused; a fifo is made with `mkfifo` (as Docker and
//!   containerd import `mkfifo` in a Dockerfile) and never opened;
//! - the uncompressed stream is capped ([`Limits::max_layer_bytes`]) while it is read, and so
//!   is the number of entries ([`Limits::max_layer_entries`]).
//!
//! OCI whiteouts are converted for overlayfs, since each layer becomes its own lowerdir:
//! `.wh.<name>` becomes a 0/0 character device `<name>` and `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on its directory. Modes (setuid included), owners, mtimes,
//! symlinks and hardlinks are kept; directory metadata is applied last, children first.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::stream::{self, EntryMeta, LimitedReader, StreamState, WalkError};
use super::{ImageError, Limits, os};

/// What unpacking (or hashing) a layer found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerSummary {
    /// Lowercase hex sha256 of the uncompressed tar stream: the layer's diff_id.
    pub(crate) diff_id_hex: String,
    /// Length of the uncompressed tar stream.
    pub(crate) unpacked_bytes: u64,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// Extended attributes restored from `SCHILY.xattr.*` records. `trusted.*` (overlayfs's own
/// attributes among them: opaque, redirect, metacopy) and `security.selinux` are never taken
/// from an image.
const XATTR_ALLOWED_PREFIXES: [&str; 2] = ["user.", "security.capability"];

/// Unpacks the layer blob at `blob` (plain tar, gzip or zstd) into `dest`, which must not
/// exist. `layer` names the layer in errors (its blob digest). On error, `dest` may hold a
/// partial tree: the caller's staging directory is removed as a whole.
pub(crate) fn unpack_layer(
    blob: &Path,
    layer: &str,
    dest: &Path,
    limits: &Limits,
) -> Result<LayerSummary, ImageError> {
    let (_, decoder) = stream::open_decompressed(blob)
        .map_err(|e| ImageError::io("opening layer blob", blob, e))?;
    let state = Rc::new(StreamState::default());
    let reader = LimitedReader::new(decoder, limits.max_layer_bytes, true, state.clone());
    let mut archive = tar::Archive::new(reader);
    create_dir_0755(dest).map_err(|e| ImageError::io("creating layer directory", dest, e))?;
    let mut unpacker = Unpacker {
        root: dest,
        layer,
        limits,
        state: state.clone(),
        whiteouts: HashSet::new(),
        dirs: HashMap::new(),
    };
    let walked = stream::walk(
        &mut archive,
        limits.max_layer_entries,
        limits.max_metadata_bytes,
        |entry, meta| unpacker.entry(entry, meta),
    );
    match walked {
        Ok(_) => {}
        Err(WalkError::Handler(e)) => return Err(e),
        Err(WalkError::Problem(problem)) => return Err(layer_problem(layer, problem)),
        Err(WalkError::Read(e)) => return Err(read_error(layer, &state, limits, e)),
    }
    if state.eof.get() {
        return Err(truncated(layer, &state));
    }
    unpacker.finish()?;
    // The diff_id covers the whole stream, padding after the end-of-archive marker included.
    let mut reader = archive.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(|e| read_error(layer, &state, limits, e))?;
    Ok(LayerSummary {
        diff_id_hex: reader.finish_hex(),
        unpacked_bytes: state.bytes.get(),
    })
}

/// Hashes the uncompressed stream of a layer blob without unpacking it: used when the layer
/// is already unpacked in the store but arrives in a blob the store has not seen.
pub(crate) fn hash_layer(
    blob: &Path,
    layer: &str,
    limits: &Limits,
) -> Result<LayerSummary, ImageError> {
    let (_, decoder) = stream::open_decompressed(blob)
        .map_err(|e| ImageError::io("opening layer blob", blob, e))?;
    let state = Rc::new(StreamState::default());
    let mut reader = LimitedReader::new(decoder, limits.max_layer_bytes, true, state.clone());
    io::copy(&mut reader, &mut io::sink()).map_err(|e| read_error(layer, &state, limits, e))?;
    Ok(LayerSummary {
        diff_id_hex: reader.finish_hex(),
        unpacked_bytes: state.bytes.get(),
    })
}

fn layer_problem(layer: &str, problem: String) -> ImageError {
    ImageError::Layer {
        layer: layer.to_owned(),
        problem,
    }
}

fn read_error(layer: &str, state: &StreamState, limits: &Limits, source: io::Error) -> ImageError {
    if state.exceeded.get() {
        layer_problem(
            layer,
            format!(
                "uncompressed size exceeds the limit of {} bytes (max_layer_bytes); \
                 refusing a possible decompression bomb",
                limits.max_layer_bytes
            ),
        )
    } else {
        ImageError::LayerRead {
            layer: layer.to_owned(),
            problem: "cannot read the layer as a tar stream (corrupt, truncated or not a tar)"
                .to_owned(),
            source,
        }
    }
}

fn truncated(layer: &str, state: &StreamState) -> ImageError {
    if state.bytes.get() == 0 {
        layer_problem(
            layer,
            "the layer is empty: it holds no tar stream".to_owned(),
        )
    } else {
        layer_problem(
            layer,
            "the tar stream is truncated: it ends without the end-of-archive marker".to_owned(),
        )
    }
}

/// Normalises a path from a tar header: relative, no `..`, no `.`; empty means the root.
pub(crate) fn normalize_entry_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            // An absolute path is taken as relative to the layer directory.
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir => return Err("escapes the layer directory through \"..\""),
            Component::Prefix(_) => return Err("has a path prefix"),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    limits: &'a Limits,
    state: Rc<StreamState>,
    /// Whiteouts this layer created, by relative path: an entry later created at the same
    /// path replaces the whiteout (and a directory then becomes opaque).
    whiteouts: HashSet<PathBuf>,
    /// Directory metadata, applied by `finish` once nothing more is written into them.
    dirs: HashMap<PathBuf, DirMeta>,
}

impl Unpacker<'_> {
    fn unsafe_entry(&self, entry: &str, problem: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            problem: problem.into(),
        }
    }

    fn write_error(&self, entry: &str, source: io::Error) -> ImageError {
        ImageError::LayerWrite {
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            source,
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        meta: EntryMeta,
    ) -> Result<(), ImageError> {
        let name = meta.display_path();
        let rel = normalize_entry_path(&meta.path).map_err(|p| self.unsafe_entry(&name, p))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = stream::header_number(&header.as_old().mode, header.mode().map(u64::from))
            .map_err(|e| ImageError::LayerRead {
                layer: self.layer.to_owned(),
                problem: format!("entry {name:?} has an invalid mode field"),
                source: e,
            })?;
        let mode = u32::try_from(mode & 0o7777).expect("masked to 12 bits");
        let uid = u32::try_from(meta.uid).map_err(|_| {
            self.unsafe_entry(&name, format!("has uid {} beyond 32 bits", meta.uid))
        })?;
        let gid = u32::try_from(meta.gid).map_err(|_| {
            self.unsafe_entry(&name, format!("has gid {} beyond 32 bits", meta.gid))
        })?;

        if let Some(file_name) = rel.file_name()
            && file_name.as_bytes().starts_with(WHITEOUT_PREFIX)
        {
            return self.whiteout(&rel, &name);
        }
        let dir_meta = || DirMeta {
            mode,
            uid,
            gid,
            mtime: meta.mtime,
            xattrs: meta.xattrs.clone(),
        };
        match kind {
            tar::EntryType::Directory => return self.dir(&rel, &name, dir_meta()),
            // Old tar writers mark directories only by a trailing slash.
            tar::EntryType::Regular if meta.path.ends_with(b"/") => {
                return self.dir(&rel, &name, dir_meta());
            }
            tar::EntryType::Char => {
                return Err(self.unsafe_entry(
                    &name,
                    "is a character device; device nodes are not allowed in image layers",
                ));
            }
            tar::EntryType::Block => {
                return Err(self.unsafe_entry(
                    &name,
                    "is a block device; device nodes are not allowed in image layers",
                ));
            }
            _ => {}
        }
        if rel.as_os_str().is_empty() {
            return Err(self.unsafe_entry(&name, "names the layer root but is not a directory"));
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.file(entry, &rel, &name, mode, uid, gid, &meta)
            }
            tar::EntryType::Symlink => self.symlink(&rel, &name, uid, gid, &meta),
            tar::EntryType::Fifo => self.fifo(&rel, &name, mode, uid, gid, &meta),
            tar::EntryType::Link => self.hardlink(&rel, &name, &meta),
            tar::EntryType::GNUSparse => {
                Err(self.unsafe_entry(&name, "is a sparse file, which is not supported"))
            }
            other => Err(self.unsafe_entry(
                &name,
                format!(
                    "has the unsupported tar entry type {:?}",
                    char::from(other.as_byte())
                ),
            )),
        }
    }

    /// Makes sure every parent directory of `rel` exists as a real directory (creating the
    /// missing ones), never passing through a symlink. Returns the absolute parent path.
    fn parents(&mut self, rel: &Path, name: &str) -> Result<PathBuf, ImageError> {
        let mut abs = self.root.to_path_buf();
        let mut shown = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(abs);
        };
        for component in parent.components() {
            abs.push(component);
            shown.push(component);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(
                        name,
                        format!(
                            "passes through the symlink {:?}, which could point outside the layer \
                             directory",
                            shown.display().to_string()
                        ),
                    ));
                }
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_char_device() && self.whiteouts.remove(&shown) => {
                    // Deleted from lower layers, then recreated here as a directory.
                    fs::remove_file(&abs).map_err(|e| self.write_error(name, e))?;
                    self.mkdir(&abs, name)?;
                    os::set_opaque(&abs).map_err(|e| self.write_error(name, e))?;
                }
                Ok(_) => {
                    return Err(self.unsafe_entry(
                        name,
                        format!(
                            "has a parent {:?} that is not a directory",
                            shown.display().to_string()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.mkdir(&abs, name)?,
                Err(e) => return Err(self.write_error(name, e)),
            }
        }
        Ok(abs)
    }

    /// Creates a directory 0755 whatever the umask (it may have no entry of its own to set
    /// its mode, and 0700 would lock non-root container users out).
    fn mkdir(&self, abs: &Path, name: &str) -> Result<(), ImageError> {
        create_dir_0755(abs).map_err(|e| self.write_error(name, e))
    }

    /// Readies `rel` for a new non-directory entry: its parents exist, whatever was there is
    /// gone, and a whiteout of it in this layer is forgotten. Returns its absolute path.
    fn make_room(&mut self, rel: &Path, name: &str) -> Result<PathBuf, ImageError> {
        self.parents(rel, name)?;
        let abs = self.root.join(rel);
        self.clear(&abs, name)?;
        self.whiteouts.remove(rel);
        Ok(abs)
    }

    /// Removes whatever is at `abs` (never following a symlink) so a new entry can take its
    /// place.
    fn clear(&self, abs: &Path, name: &str) -> Result<(), ImageError> {
        let result = match fs::symlink_metadata(abs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            // remove_dir_all does not follow symlinks inside the tree.
            Ok(m) if m.is_dir() => fs::remove_dir_all(abs),
            Ok(_) => fs::remove_file(abs),
        };
        result.map_err(|e| self.write_error(name, e))
    }

    #[allow(clippy::too_many_arguments)]
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        meta: &EntryMeta,
    ) -> Result<(), ImageError> {
        let abs = self.make_room(rel, name)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&abs)
            .map_err(|e| self.write_error(name, e))?;
        let size = entry.size();
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(self.layer, &self.state, self.limits, e)),
            };
            file.write_all(&buf[..n])
                .map_err(|e| self.write_error(name, e))?;
            copied += n as u64;
        }
        if copied != size {
            return Err(layer_problem(
                self.layer,
                format!(
                    "the tar stream is truncated inside entry {name:?} ({copied} of {size} bytes)"
                ),
            ));
        }
        // Owner first: chown clears setuid/setgid bits, so the mode comes after it.
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| self.write_error(name, e))?;
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| self.write_error(name, e))?;
        self.set_xattrs(&abs, name, &meta.xattrs);
        file.set_times(file_times(meta.mtime))
            .map_err(|e| self.write_error(name, e))?;
        Ok(())
    }

    fn dir(&mut self, rel: &Path, name: &str, meta: DirMeta) -> Result<(), ImageError> {
        if !rel.as_os_str().is_empty() {
            self.parents(rel, name)?;
            let abs = self.root.join(rel);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&abs).map_err(|e| self.write_error(name, e))?;
                    self.mkdir(&abs, name)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.mkdir(&abs, name)?,
                Err(e) => return Err(self.write_error(name, e)),
            }
            if self.whiteouts.remove(rel) {
                // `.wh.<dir>` then `<dir>/` in one layer: the lower directory is replaced.
                os::set_opaque(&abs).map_err(|e| self.write_error(name, e))?;
            }
        }
        self.dirs.insert(rel.to_path_buf(), meta);
        Ok(())
    }

    fn symlink(
        &mut self,
        rel: &Path,
        name: &str,
        uid: u32,
        gid: u32,
        meta: &EntryMeta,
    ) -> Result<(), ImageError> {
        let target = match meta.link.as_deref() {
            Some(t) if !t.is_empty() => t,
            _ => return Err(self.unsafe_entry(name, "is a symlink without a target")),
        };
        let abs = self.make_room(rel, name)?;
        // The target is stored as written (absolute targets are normal in images); it is
        // never followed while unpacking.
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &abs)
            .map_err(|e| self.write_error(name, e))?;
        std::os::unix::fs::lchown(&abs, Some(uid), Some(gid))
            .map_err(|e| self.write_error(name, e))?;
        os::set_symlink_mtime(&abs, meta.mtime.0, meta.mtime.1)
            .map_err(|e| self.write_error(name, e))?;
        Ok(())
    }

    /// A named pipe: created, owned and timestamped by path, never opened (opening a fifo
    /// blocks until a writer comes).
    fn fifo(
        &mut self,
        rel: &Path,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        meta: &EntryMeta,
    ) -> Result<(), ImageError> {
        let abs = self.make_room(rel, name)?;
        // mkfifo fails on anything already there, a symlink included: it never follows one.
        os::make_fifo(&abs).map_err(|e| self.write_error(name, e))?;
        std::os::unix::fs::lchown(&abs, Some(uid), Some(gid))
            .map_err(|e| self.write_error(name, e))?;
        // Owner first (chown clears setuid/setgid bits); the path is a fifo this code just made.
        fs::set_permissions(&abs, Permissions::from_mode(mode))
            .map_err(|e| self.write_error(name, e))?;
        self.set_xattrs(&abs, name, &meta.xattrs);
        os::set_symlink_mtime(&abs, meta.mtime.0, meta.mtime.1)
            .map_err(|e| self.write_error(name, e))?;
        Ok(())
    }

    fn hardlink(&mut self, rel: &Path, name: &str, meta: &EntryMeta) -> Result<(), ImageError> {
        let raw_target = meta.link.as_deref().unwrap_or_default();
        let shown = String::from_utf8_lossy(raw_target).into_owned();
        let target = normalize_entry_path(raw_target).map_err(|p| {
            self.unsafe_entry(name, format!("is a hardlink whose target {shown:?} {p}"))
        })?;
        if target.as_os_str().is_empty() {
            return Err(self.unsafe_entry(name, "is a hardlink without a target"));
        }
        // Every component of the target must be a real directory of this layer, and the
        // target itself a file or symlink that an earlier entry created.
        let mut abs_target = self.root.to_path_buf();
        let components: Vec<_> = target.components().collect();
        for (i, component) in components.iter().enumerate() {
            abs_target.push(component);
            let last = i + 1 == components.len();
            let m = match fs::symlink_metadata(&abs_target) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(self.unsafe_entry(
                        name,
                        format!(
                            "is a hardlink to {shown:?}, which does not exist in the layer (a \
                             hardlink target must come earlier in the same layer)"
                        ),
                    ));
                }
                Err(e) => return Err(self.write_error(name, e)),
            };
            let ft = m.file_type();
            if !last && ft.is_symlink() {
                return Err(self.unsafe_entry(
                    name,
                    format!("is a hardlink to {shown:?}, which passes through a symlink"),
                ));
            }
            if !last && !ft.is_dir() {
                return Err(self.unsafe_entry(
                    name,
                    format!("is a hardlink to {shown:?}, whose parent is not a directory"),
                ));
            }
            if last && !(ft.is_file() || ft.is_symlink()) {
                return Err(self.unsafe_entry(
                    name,
                    format!("is a hardlink to {shown:?}, which is not a regular file or symlink"),
                ));
            }
        }
        if target == rel {
            return Ok(());
        }
        let abs = self.make_room(rel, name)?;
        // link(2) does not follow a symlink given as the original: the new name links the
        // symlink itself.
        fs::hard_link(&abs_target, &abs).map_err(|e| self.write_error(name, e))
    }

    fn whiteout(&mut self, rel: &Path, name: &str) -> Result<(), ImageError> {
        let file_name = rel.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
        let parent_abs = self.parents(rel, name)?;
        if file_name == OPAQUE_WHITEOUT {
            // `parents` made sure the directory exists (replacing a whiteout of this layer).
            return os::set_opaque(&parent_abs).map_err(|e| self.write_error(name, e));
        }
        let hidden = &file_name[WHITEOUT_PREFIX.len()..];
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.*` names are aufs bookkeeping with no meaning for overlayfs.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.unsafe_entry(name, "is a whiteout that names no file"));
        }
        let target_rel = rel.with_file_name(OsStr::from_bytes(hidden));
        let abs = parent_abs.join(OsStr::from_bytes(hidden));
        match fs::symlink_metadata(&abs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                os::make_whiteout(&abs).map_err(|e| self.write_error(name, e))?;
                self.whiteouts.insert(target_rel);
                Ok(())
            }
            Err(e) => Err(self.write_error(name, e)),
            // The layer deletes the lower `<name>` and has its own directory there: opaque.
            Ok(m) if m.is_dir() => os::set_opaque(&abs).map_err(|e| self.write_error(name, e)),
            // The layer's own file already hides the lower one.
            Ok(_) => Ok(()),
        }
    }

    fn set_xattrs(&self, abs: &Path, name: &str, xattrs: &[(String, Vec<u8>)]) {
        for (key, value) in xattrs {
            if !XATTR_ALLOWED_PREFIXES.iter().any(|p| key.starts_with(p)) {
                tracing::debug!(
                    layer = self.layer,
                    entry = name,
                    xattr = key,
                    "xattr not restored"
                );
                continue;
            }
            if let Err(e) = os::set_xattr(abs, key, value) {
                tracing::warn!(layer = self.layer, entry = name, xattr = key, error = %e, "cannot restore xattr");
            }
        }
    }

    /// Applies directory owners, modes, xattrs and mtimes, deepest first, now that nothing
    /// more is written into them. A directory replaced by a later entry is skipped.
    fn finish(&mut self) -> Result<(), ImageError> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            let name = rel.display().to_string();
            if !self.is_real_dir(&rel) {
                continue;
            }
            let abs = self.root.join(&rel);
            let dir = File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&abs)
                .map_err(|e| self.write_error(&name, e))?;
            std::os::unix::fs::fchown(&dir, Some(meta.uid), Some(meta.gid))
                .map_err(|e| self.write_error(&name, e))?;
            dir.set_permissions(Permissions::from_mode(meta.mode))
                .map_err(|e| self.write_error(&name, e))?;
            self.set_xattrs(&abs, &name, &meta.xattrs);
            dir.set_times(file_times(meta.mtime))
                .map_err(|e| self.write_error(&name, e))?;
        }
        Ok(())
    }

    /// True if `rel` and all its parents are real directories (no symlink on the way).
    fn is_real_dir(&self, rel: &Path) -> bool {
        let mut abs = self.root.to_path_buf();
        for component in rel.components() {
            abs.push(component);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
        true
    }
}

/// Creates `path` (which must not exist) with mode 0755 regardless of the umask.
fn create_dir_0755(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    fs::set_permissions(path, Permissions::from_mode(0o755))
}

/// Access and modification time from a tar mtime; out-of-range values become the epoch.
fn file_times((secs, nanos): (i64, u32)) -> FileTimes {
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    let time: SystemTime = time.unwrap_or(UNIX_EPOCH);
    FileTimes::new().set_accessed(time).set_modified(time)
}

#[cfg(test)]
#[path = "unpack_test.rs"]
mod tests;
