//! Staging of an input archive: every regular file is copied into the import's private
//! staging directory under a numbered name while its sha256 and size are computed, so each
//! blob is hashed exactly once, as it is written. Nothing in the archive decides a path on
//! disk; names only become keys of a map (symlinks and hardlinks become aliases).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use serde::de::DeserializeOwned;

use super::stream::{self, LimitedReader, StreamState, WalkError};
use super::{ImageError, Limits};

/// A file of the archive, staged on disk.
#[derive(Debug, Clone)]
pub(crate) struct StagedFile {
    pub(crate) path: PathBuf,
    /// Lowercase hex sha256 of the content.
    pub(crate) hex: String,
    pub(crate) size: u64,
}

/// The regular files of an archive, staged, by normalised name.
#[derive(Debug)]
pub(crate) struct StagedArchive {
    source: PathBuf,
    files: HashMap<String, StagedFile>,
    /// Symlinks and hardlinks: name → normalised target name.
    links: HashMap<String, String>,
}

/// Longest chain of archive symlinks followed by [`StagedArchive::get`].
const MAX_LINK_HOPS: usize = 16;

impl StagedArchive {
    /// Reads the archive at `src` (tar, maybe gzip or zstd compressed as a whole) and stages
    /// its regular files into `dir`, which is created.
    pub(crate) fn stage(src: &Path, dir: &Path, limits: &Limits) -> Result<Self, ImageError> {
        let problem = |problem: String| ImageError::Archive {
            path: src.to_path_buf(),
            problem,
        };
        let meta = fs::metadata(src).map_err(|e| ImageError::io("reading archive", src, e))?;
        if !meta.is_file() {
            return Err(problem("not a regular file".to_owned()));
        }
        if meta.len() == 0 {
            return Err(problem("the file is empty".to_owned()));
        }
        let (_, decoder) = stream::open_decompressed(src)
            .map_err(|e| ImageError::io("reading archive", src, e))?;
        let state = Rc::new(StreamState::default());
        let reader = LimitedReader::new(decoder, limits.max_archive_bytes, false, state.clone());
        let mut tar = tar::Archive::new(reader);
        fs::create_dir_all(dir).map_err(|e| ImageError::io("creating directory", dir, e))?;

        let mut staged = Self {
            source: src.to_path_buf(),
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut next = 0u64;
        let read_error = |e: io::Error| {
            if state.exceeded.get() {
                problem(format!(
                    "uncompressed content exceeds the limit of {} bytes (max_archive_bytes)",
                    limits.max_archive_bytes
                ))
            } else {
                ImageError::ArchiveRead {
                    path: src.to_path_buf(),
                    problem: "not a tar archive, or a corrupt or truncated one".to_owned(),
                    source: e,
                }
            }
        };
        let walked = stream::walk(
            &mut tar,
            limits.max_archive_entries,
            limits.max_metadata_bytes,
            |entry, meta| {
                let shown = meta.display_path();
                let Some(name) = normalize_name(&shown) else {
                    return Err(problem(format!(
                        "entry {shown:?} has a \"..\" component or is not valid UTF-8"
                    )));
                };
                match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        next += 1;
                        let path = dir.join(format!("f{next}"));
                        let file = stage_entry(entry, &path).map_err(|e| match e {
                            StageError::Read(e) => read_error(e),
                            StageError::Write(e) => ImageError::io("writing staged file", &path, e),
                        })?;
                        if file.size != entry.size() {
                            return Err(problem(format!(
                                "the tar stream is truncated inside entry {shown:?}"
                            )));
                        }
                        staged.links.remove(&name);
                        staged.files.insert(name, file);
                    }
                    tar::EntryType::Symlink => {
                        let target = meta.link.as_deref().unwrap_or_default();
                        let target = String::from_utf8_lossy(target);
                        let base = match name.rsplit_once('/') {
                            Some((parent, _)) => format!("{parent}/{target}"),
                            None => target.into_owned(),
                        };
                        if let Some(target) = resolve_name(&base) {
                            staged.files.remove(&name);
                            staged.links.insert(name, target);
                        }
                    }
                    tar::EntryType::Link => {
                        let target = meta.link.as_deref().unwrap_or_default();
                        if let Some(target) = normalize_name(&String::from_utf8_lossy(target)) {
                            staged.files.remove(&name);
                            staged.links.insert(name, target);
                        }
                    }
                    // Directories and anything else carry nothing an import reads.
                    _ => {}
                }
                Ok(())
            },
        );
        match walked {
            Ok(_) => {}
            Err(WalkError::Handler(e)) => return Err(e),
            Err(WalkError::Problem(p)) => return Err(problem(p)),
            Err(WalkError::Read(e)) => return Err(read_error(e)),
        }
        if state.eof.get() {
            return Err(if state.bytes.get() == 0 {
                problem("it decompresses to nothing".to_owned())
            } else {
                problem(
                    "the tar stream is truncated: it ends without the end-of-archive marker"
                        .to_owned(),
                )
            });
        }
        tracing::debug!(archive = %src.display(), files = staged.files.len(), "archive staged");
        Ok(staged)
    }

    pub(crate) fn source(&self) -> &Path {
        &self.source
    }

    /// The staged file named `name` in the archive, following archive symlinks/hardlinks.
    pub(crate) fn get(&self, name: &str) -> Option<&StagedFile> {
        let mut name = normalize_name(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(file) = self.files.get(&name) {
                return Some(file);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// Like [`Self::get`], but a missing file is an error that says what was looked for.
    pub(crate) fn require(&self, name: &str, what: &str) -> Result<&StagedFile, ImageError> {
        self.get(name).ok_or_else(|| ImageError::Archive {
            path: self.source.clone(),
            problem: format!("{what} is missing: the archive has no file {name:?}"),
        })
    }

    /// Parses the staged file `name` as JSON.
    pub(crate) fn read_json<T: DeserializeOwned>(
        &self,
        name: &str,
        limits: &Limits,
    ) -> Result<T, ImageError> {
        let file = self.require(name, name)?;
        let what = format!("archive {}: {name}", self.source.display());
        read_json_file(file, &what, limits)
    }
}

/// Reads a staged file (at most `limits.max_metadata_bytes`) and parses it as JSON.
pub(crate) fn read_json_file<T: DeserializeOwned>(
    file: &StagedFile,
    what: &str,
    limits: &Limits,
) -> Result<T, ImageError> {
    let bytes = read_small(file, what, limits)?;
    serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        what: what.to_owned(),
        source,
    })
}

/// Reads a staged metadata file, refusing one larger than `limits.max_metadata_bytes`.
pub(crate) fn read_small(
    file: &StagedFile,
    what: &str,
    limits: &Limits,
) -> Result<Vec<u8>, ImageError> {
    if file.size > limits.max_metadata_bytes {
        return Err(ImageError::Invalid {
            what: what.to_owned(),
            problem: format!(
                "is {} bytes, more than the limit for metadata of {} bytes (max_metadata_bytes)",
                file.size, limits.max_metadata_bytes
            ),
        });
    }
    fs::read(&file.path).map_err(|e| ImageError::io("reading staged file", &file.path, e))
}

enum StageError {
    Read(io::Error),
    Write(io::Error),
}

fn stage_entry(src: &mut impl Read, path: &Path) -> Result<StagedFile, StageError> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(StageError::Write)?;
    let mut writer = BufWriter::with_capacity(128 * 1024, file);
    // Tell read errors (the archive) from write errors (the disk) apart.
    let mut reader = ReadErrors {
        inner: src,
        error: None,
    };
    let result = stream::copy_hashing(&mut reader, &mut writer);
    if let Some(e) = reader.error {
        return Err(StageError::Read(e));
    }
    let (hex, size) = result.map_err(StageError::Write)?;
    writer.flush().map_err(StageError::Write)?;
    Ok(StagedFile {
        path: path.to_path_buf(),
        hex,
        size,
    })
}

struct ReadErrors<'a, R> {
    inner: &'a mut R,
    error: Option<io::Error>,
}

impl<R: Read> Read for ReadErrors<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.error = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
}

/// Normalises an archive member name: drops `.` and leading `/`; refuses `..`.
fn normalize_name(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Normalises a symlink target joined to its directory: `..` pops, but never above the
/// archive root.
fn resolve_name(joined: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(joined).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(
            normalize_name("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize_name("/index.json").as_deref(), Some("index.json"));
        assert_eq!(normalize_name("a/../b"), None);
        assert_eq!(
            resolve_name("abc/../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_name("../x"), None);
    }
}
