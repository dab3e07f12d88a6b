//! Downloading one blob into the pull cache, verified as it streams.
//!
//! ```text
//!  GET /v2/<repo>/blobs/<digest> ──► partial/<hex>-<unique>   sha256 and byte count updated per
//!                                      │                      chunk; more bytes than the
//!                                      │                      descriptor's size stop it at once
//!                                      ▼
//!                     size and digest match? ── no ──► error; the partial file is removed
//!                                      │ yes
//!                                      ▼
//!                     fsync, rename to blobs/<hex>, fsync the directory
//! ```
//!
//! The partial file is removed whenever the download does not complete, including when its
//! future is dropped (the pull was cancelled); only a killed process leaves one behind, and
//! `ImageStore::open` removes those. Layer `urls` (foreign layers) are never followed: blobs
//! come from the registry the image was pulled from.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt as _;
use oci_client::Reference;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;

use super::PullError;
use super::session::Session;
use crate::{ImageStore, PullCache};

/// One blob to fetch.
pub(crate) struct BlobJob {
    pub(crate) session: Session,
    pub(crate) image: Reference,
    /// The reference the user asked for, for errors.
    pub(crate) reference: String,
    /// Lowercase hex of the sha256 digest.
    pub(crate) hex: String,
    pub(crate) size: u64,
    pub(crate) store: Arc<ImageStore>,
    pub(crate) cache: PullCache,
}

/// Removes the partial file unless the download completed.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Fetches the blob into the pull cache unless the cache or the store already has it.
/// Reports the bytes received so far through `progress`. Returns whether it was already there.
pub(crate) async fn download(
    job: BlobJob,
    progress: Arc<watch::Sender<u64>>,
) -> Result<bool, PullError> {
    let digest = format!("sha256:{}", job.hex);
    let dest = job.cache.blob_path(&job.hex);
    if job.store.has_blob(&job.hex) || dest.is_file() {
        return Ok(true);
    }
    let reference = job.reference.as_str();
    let mut partial = Partial {
        path: job.cache.new_partial_path(&job.hex),
        done: false,
    };
    tracing::debug!(blob = %digest, size = job.size, file = %partial.path.display(), "downloading blob");
    let mut stream = job
        .session
        .client
        .pull_blob_stream(&job.image, digest.as_str())
        .await
        .map_err(|e| job.session.error(e, reference, "fetching a blob"))?;
    let size_mismatch = |actual: u64| PullError::SizeMismatch {
        reference: reference.to_owned(),
        what: "blob".to_owned(),
        digest: digest.clone(),
        expected: job.size,
        actual,
    };
    if let Some(length) = stream.content_length
        && length != job.size
    {
        return Err(size_mismatch(length));
    }
    let file = tokio::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&partial.path)
        .await
        .map_err(|e| PullError::io("creating", &partial.path, e))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            // The client checks the digest too, at the end of the stream; by then every byte
            // has passed through `hasher`, whose verdict (below) is the one that counts.
            Err(e) if is_digest_error(&e) => break,
            Err(e) => {
                return Err(PullError::Download {
                    reference: reference.to_owned(),
                    digest: digest.clone(),
                    source: Arc::new(e),
                });
            }
        };
        received += chunk.len() as u64;
        if received > job.size {
            return Err(size_mismatch(received));
        }
        hasher.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| PullError::io("writing", &partial.path, e))?;
        progress.send_replace(received);
    }
    if received != job.size {
        return Err(size_mismatch(received));
    }
    let actual = format!("{:x}", hasher.finalize());
    if actual != job.hex {
        return Err(PullError::DigestMismatch {
            reference: reference.to_owned(),
            what: "blob".to_owned(),
            expected: digest.clone(),
            actual: format!("sha256:{actual}"),
        });
    }
    out.flush()
        .await
        .map_err(|e| PullError::io("writing", &partial.path, e))?;
    let file = out.into_inner();
    file.sync_all()
        .await
        .map_err(|e| PullError::io("syncing", &partial.path, e))?;
    drop(file);
    tokio::fs::rename(&partial.path, &dest)
        .await
        .map_err(|e| PullError::io("storing pulled blob", &dest, e))?;
    partial.done = true;
    let dir = job.cache.blobs_dir();
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PullError::io("syncing", &dir, e))
    })
    .await
    .map_err(|e| PullError::Interrupted {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })??;
    tracing::debug!(blob = %digest, bytes = received, "blob downloaded and verified");
    Ok(false)
}

fn is_digest_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>())
}
