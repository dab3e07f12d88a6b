//! Byte streams of the image store: compression detected by magic bytes, a reader that counts,
//! hashes and caps what it passes on, and a tar walker that reads GNU and PAX extension headers
//! itself so their size is bounded (the tar crate reads them whole into memory).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// How a blob or archive is compressed, detected from its first bytes (never trusted from a
/// media type alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Self {
        if head.starts_with(&GZIP_MAGIC) {
            Self::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// The OCI media type of a layer blob compressed this way.
    pub(crate) fn layer_media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Reads the first bytes of `path` to detect its compression.
pub(crate) fn detect_file(path: &Path) -> io::Result<Compression> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut file, &mut head)?;
    Ok(Compression::detect(&head[..n]))
}

/// Opens `path` and returns a reader of its decompressed content.
pub(crate) fn open_decompressed(path: &Path) -> io::Result<(Compression, Box<dyn Read>)> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut file, &mut head)?;
    file.seek(SeekFrom::Start(0))?;
    let compression = Compression::detect(&head[..n]);
    let file = BufReader::with_capacity(128 * 1024, file);
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    };
    Ok((compression, reader))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What a [`LimitedReader`] saw, shared with whoever owns the tar archive wrapped around it.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Bytes passed on so far.
    pub(crate) bytes: Cell<u64>,
    /// The limit was hit: the error the reader returned means "too large", not "corrupt".
    pub(crate) exceeded: Cell<bool>,
    /// The inner reader reported its end at least once.
    pub(crate) eof: Cell<bool>,
}

/// Passes on at most `limit` bytes of `inner` (then fails), hashing them if asked to.
///
/// The limit is what stops a decompression bomb: a few KiB of gzip can inflate to terabytes, so
/// the uncompressed stream is capped while it is read, before anything is written for it.
pub(crate) struct LimitedReader<R> {
    inner: R,
    limit: u64,
    hasher: Option<Sha256>,
    state: Rc<StreamState>,
}

impl<R: Read> LimitedReader<R> {
    pub(crate) fn new(inner: R, limit: u64, hash: bool, state: Rc<StreamState>) -> Self {
        Self {
            inner,
            limit,
            hasher: hash.then(Sha256::new),
            state,
        }
    }

    /// The lowercase hex sha256 of everything read (empty when not hashing).
    pub(crate) fn finish_hex(self) -> String {
        self.hasher
            .map(|h| format!("{:x}", h.finalize()))
            .unwrap_or_default()
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.state.exceeded.get() {
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.state.eof.set(true);
            return Ok(0);
        }
        let total = self.state.bytes.get().saturating_add(n as u64);
        if total > self.limit {
            self.state.exceeded.set(true);
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.state.bytes.set(total);
        Ok(n)
    }
}

/// Copies `src` into `dst` while hashing; returns (lowercase hex sha256, bytes).
pub(crate) fn copy_hashing(
    src: &mut impl Read,
    dst: &mut impl io::Write,
) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), total))
}

/// The lowercase hex sha256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// True for exactly 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One tar entry's metadata after GNU long name/link and PAX headers are applied.
#[derive(Debug, Default)]
pub(crate) struct EntryMeta {
    /// The entry's path as stored (not yet normalised).
    pub(crate) path: Vec<u8>,
    /// Symlink or hardlink target as stored.
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    /// Modification time: seconds since the epoch and nanoseconds.
    pub(crate) mtime: (i64, u32),
    /// `SCHILY.xattr.*` PAX records: extended attributes to restore.
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    pub(crate) fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Why a tar walk stopped.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// The stream could not be read (corrupt, truncated, over the byte limit).
    Read(io::Error),
    /// The stream is readable but breaks a rule; the text says which.
    Problem(String),
    /// The per-entry handler failed.
    Handler(ImageError),
}

#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// Walks the entries of `archive`, resolving GNU long names/links and PAX records, and calls
/// `handle` for every real entry. Returns the number of tar headers seen.
///
/// At most `max_entries` headers are accepted, and no extension header may be larger than
/// `max_meta_bytes`. The caller checks [`StreamState::eof`] afterwards: the tar crate ends the
/// walk quietly at end of input, so a stream cut at a header boundary is only detected that way.
pub(crate) fn walk<R: Read>(
    archive: &mut tar::Archive<R>,
    max_entries: u64,
    max_meta_bytes: u64,
    mut handle: impl FnMut(&mut tar::Entry<'_, R>, EntryMeta) -> Result<(), ImageError>,
) -> Result<u64, WalkError> {
    let mut count = 0u64;
    let mut pending = Pending::default();
    let entries = archive.entries().map_err(WalkError::Read)?.raw(true);
    for entry in entries {
        let mut entry = entry.map_err(WalkError::Read)?;
        count += 1;
        if count > max_entries {
            return Err(WalkError::Problem(format!(
                "has more than {max_entries} entries (the limit)"
            )));
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::GNULongName => {
                let mut name = read_meta(&mut entry, max_meta_bytes)?;
                trim_nuls(&mut name);
                set_once(&mut pending.long_name, name, "GNU long name")?;
                continue;
            }
            tar::EntryType::GNULongLink => {
                let mut name = read_meta(&mut entry, max_meta_bytes)?;
                trim_nuls(&mut name);
                set_once(&mut pending.long_link, name, "GNU long link")?;
                continue;
            }
            tar::EntryType::XHeader => {
                let records = read_meta(&mut entry, max_meta_bytes)?;
                set_once(&mut pending.pax, records, "PAX")?;
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                // Global PAX records (e.g. git's commit id) carry nothing the store uses.
                read_meta(&mut entry, max_meta_bytes)?;
                continue;
            }
            _ => {}
        }
        let meta = entry_meta(&entry, std::mem::take(&mut pending))?;
        handle(&mut entry, meta).map_err(WalkError::Handler)?;
    }
    if pending.long_name.is_some() || pending.long_link.is_some() || pending.pax.is_some() {
        return Err(WalkError::Problem(
            "the tar stream ends with an extension header that describes no entry".to_owned(),
        ));
    }
    Ok(count)
}

fn set_once(slot: &mut Option<Vec<u8>>, value: Vec<u8>, what: &str) -> Result<(), WalkError> {
    if slot.is_some() {
        return Err(WalkError::Problem(format!(
            "two {what} headers describe the same entry"
        )));
    }
    *slot = Some(value);
    Ok(())
}

fn trim_nuls(v: &mut Vec<u8>) {
    while v.last() == Some(&0) {
        v.pop();
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, max: u64) -> Result<Vec<u8>, WalkError> {
    let size = entry.size();
    if size > max {
        return Err(WalkError::Problem(format!(
            "an extension header of {size} bytes is larger than the limit of {max} bytes"
        )));
    }
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.read_to_end(&mut data).map_err(WalkError::Read)?;
    if data.len() as u64 != size {
        return Err(WalkError::Read(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the tar stream ends inside an extension header",
        )));
    }
    Ok(data)
}

fn entry_meta<R: Read>(
    entry: &tar::Entry<'_, R>,
    pending: Pending,
) -> Result<EntryMeta, WalkError> {
    let header = entry.header();
    let bad_header = |field: &str, e: io::Error| {
        WalkError::Read(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tar header field {field}: {e}"),
        ))
    };
    let mut meta = EntryMeta {
        path: pending
            .long_name
            .unwrap_or_else(|| header.path_bytes().into_owned()),
        link: pending
            .long_link
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned())),
        uid: header_number(&header.as_old().uid, header.uid()).map_err(|e| bad_header("uid", e))?,
        gid: header_number(&header.as_old().gid, header.gid()).map_err(|e| bad_header("gid", e))?,
        mtime: (
            i64::try_from(
                header_number(&header.as_old().mtime, header.mtime())
                    .map_err(|e| bad_header("mtime", e))?,
            )
            .unwrap_or(0),
            0,
        ),
        xattrs: Vec::new(),
    };
    let Some(records) = pending.pax else {
        return Ok(meta);
    };
    let records = parse_pax(&records)
        .map_err(|problem| WalkError::Read(io::Error::new(io::ErrorKind::InvalidData, problem)))?;
    for (key, value) in records {
        let text = || std::str::from_utf8(value).unwrap_or("").trim();
        match key {
            "path" => meta.path = value.to_vec(),
            "linkpath" => meta.link = Some(value.to_vec()),
            "uid" => meta.uid = parse_pax_number(text()).ok_or_else(|| bad_pax("uid", value))?,
            "gid" => meta.gid = parse_pax_number(text()).ok_or_else(|| bad_pax("gid", value))?,
            "mtime" => {
                meta.mtime = parse_pax_time(text()).ok_or_else(|| bad_pax("mtime", value))?
            }
            "size" => {
                // Raw mode reads the data length from the header; an override would make this
                // parser see a different archive than others do, so it must agree.
                let size = parse_pax_number(text()).ok_or_else(|| bad_pax("size", value))?;
                if size != entry.size() {
                    return Err(WalkError::Problem(format!(
                        "entry {:?}: a PAX size record ({size}) that differs from the tar header \
                         ({}) is not supported",
                        String::from_utf8_lossy(&meta.path),
                        entry.size()
                    )));
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    meta.xattrs.push((name.to_owned(), value.to_vec()));
                }
            }
        }
    }
    Ok(meta)
}

/// Parses PAX records, `"<len> <key>=<value>\n"` each, where `<len>` counts the whole record.
/// Values may hold any byte, newlines included (binary xattrs), so records are split by length.
fn parse_pax(data: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let malformed = || "malformed pax extension header".to_owned();
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest.iter().any(|&b| b != 0) {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(malformed)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(malformed());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(malformed)?;
        let key = std::str::from_utf8(&record[..eq]).map_err(|_| malformed())?;
        records.push((key, &record[eq + 1..]));
        rest = &rest[len..];
    }
    Ok(records)
}

/// A numeric header field, where an empty one (all NULs or spaces) reads as 0, as in Go's
/// archive/tar; the tar crate refuses it.
pub(crate) fn header_number(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    if raw.iter().all(|&b| b == 0 || b == b' ') {
        Ok(0)
    } else {
        parsed
    }
}

fn bad_pax(field: &str, value: &[u8]) -> WalkError {
    WalkError::Read(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "pax record {field} has an invalid value {:?}",
            String::from_utf8_lossy(value)
        ),
    ))
}

fn parse_pax_number(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// `1700000000` or `1700000000.123456789` (fractions of negative times are dropped).
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (secs, frac) = match s.split_once('.') {
        Some((secs, frac)) => (secs, frac),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    if secs < 0 || s.starts_with('-') {
        nanos = 0;
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
    }

    #[test]
    fn pax_records_are_split_by_length() {
        let data = b"12 uid=1000\n22 SCHILY.xattr.a=x\ny\n";
        let records = parse_pax(data).unwrap();
        assert_eq!(
            records,
            vec![("uid", &b"1000"[..]), ("SCHILY.xattr.a", &b"x\ny"[..])]
        );
        assert!(parse_pax(b"99 uid=1\n").is_err());
        assert!(parse_pax(b"x uid=1\n").is_err());
        assert!(parse_pax(b"8 uid=1\n").is_ok());
        assert!(parse_pax(b"8 uid=1X").is_err());
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time("-5.5"), Some((-5, 0)));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time("1.x"), None);
    }

    #[test]
    fn limited_reader_stops_at_the_limit_and_hashes() {
        let state = Rc::new(StreamState::default());
        let mut r = LimitedReader::new(&b"hello world"[..], 5, true, state.clone());
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("limit"));
        assert!(state.exceeded.get());

        let state = Rc::new(StreamState::default());
        let mut r = LimitedReader::new(&b"abc"[..], 3, true, state.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert!(state.eof.get());
        assert_eq!(state.bytes.get(), 3);
        assert_eq!(r.finish_hex(), sha256_hex(b"abc"));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
