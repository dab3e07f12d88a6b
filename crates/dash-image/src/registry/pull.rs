//! One pull, from reference to image record. Runs as a shared job (see `flight.rs`): every
//! caller pulling the same reference awaits this one run.
//!
//! ```text
//!  lock the pull cache (shared) → credentials → session (auth) → resolve the manifest
//!    → Resolved → config + layer blobs, 3 at a time, each a shared download (download.rs)
//!    → Unpacking → ImageStore::import_pulled (blocking thread) → drop the cache copies → Done
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::download::{self, BlobJob};
use super::manifest;
use super::progress::PullEvents;
use super::session::Session;
use super::{Inner, PullError, PullProgress, RegistryRef, credentials};
use crate::{ImageError, ImageRecord, ImageStore, PullCache};

/// Blobs of one image downloaded at the same time.
const PARALLEL_BLOBS: usize = 3;

/// A blob of the image: its hex digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blob {
    hex: String,
    size: u64,
}

pub(crate) async fn run(
    inner: Arc<Inner>,
    rref: RegistryRef,
    tag: String,
    events: Arc<PullEvents>,
) -> Result<ImageRecord, PullError> {
    let reference = rref.to_string();
    let cache = inner.store.pull_cache();
    let _cache_lock = {
        let cache = cache.clone();
        blocking(&reference, move || cache.lock_shared())
            .await?
            .map_err(|e| PullError::store(&reference, e))?
    };
    let kept =
        match inner.credential_store.get() {
            Some(store) => store.lookup(&rref.registry).await.map_err(|problem| {
                PullError::CredentialStore {
                    registry: rref.registry.clone(),
                    problem,
                }
            })?,
            None => None,
        };
    let credentials = match kept {
        Some((username, password)) => Some(credentials::Credentials { username, password }),
        None => credentials::lookup(&inner.cfg, &rref.registry)?,
    };
    let session = Session::new(&inner.cfg, &rref.registry, credentials)?;
    let image = Session::reference(&rref);
    session.authenticate(&image, &reference).await?;
    let limits = inner.store.limits().clone();
    let resolved = manifest::resolve(
        &session,
        &image,
        &reference,
        &inner.cfg.platform,
        limits.max_metadata_bytes,
    )
    .await?;
    let config = resolved.manifest.config();
    let config_blob = blob_of(config, &reference, "config")?;
    if config_blob.size > limits.max_metadata_bytes {
        return Err(PullError::Unsupported {
            reference,
            what: format!("config {}", config.digest()),
            problem: format!(
                "is {} bytes, more than the {} allowed",
                config_blob.size, limits.max_metadata_bytes
            ),
        });
    }
    let layers = resolved
        .manifest
        .layers()
        .iter()
        .map(|l| blob_of(l, &reference, "layer"))
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(reference, manifest = %resolved.digest, layers = layers.len(), "image resolved");
    events.emit(PullProgress::Resolved {
        reference: reference.clone(),
        manifest_digest: resolved.digest.clone(),
        layers: layers
            .iter()
            .map(|b| (format!("sha256:{}", b.hex), b.size))
            .collect(),
    });

    let mut seen = HashSet::new();
    let blobs: Vec<Blob> = std::iter::once(config_blob.clone())
        .chain(layers)
        .filter(|b| seen.insert(b.hex.clone()))
        .collect();
    // A second round only when a blob found in place vanished before the import (a prune or
    // a removal in between): it is fetched again.
    let mut retried = false;
    loop {
        let fetched = futures_util::stream::iter(blobs.clone())
            .map(|blob| fetch(&inner, &session, &image, &reference, &cache, blob, &events))
            .buffer_unordered(PARALLEL_BLOBS)
            .try_collect::<Vec<()>>()
            .await;
        if let Err(e) = fetched {
            if e.is_verification_failure() && inner.pulls.running() <= 1 {
                // The registry served bad content for this image: keep nothing it sent.
                discard(&cache, &blobs);
            }
            return Err(e);
        }
        events.emit(PullProgress::Unpacking);
        let store = inner.store.clone();
        let manifest_bytes = resolved.bytes.clone();
        let import_cache = cache.clone();
        let import_tag = tag.clone();
        let config_hex = config_blob.hex.clone();
        let imported = blocking(&reference, move || {
            let config = read_config(&store, &import_cache, &config_hex)?;
            store.import_pulled(&import_tag, &manifest_bytes, &config, &|digest: &str| {
                import_cache.blob_path(digest.strip_prefix("sha256:").unwrap_or(digest))
            })
        })
        .await?;
        match imported {
            Ok(record) => {
                // The blobs live in the store now.
                discard(&cache, &blobs);
                tracing::info!(reference, tag, image = %record.id, "image pulled");
                events.emit(PullProgress::Done {
                    image_id: record.id.clone(),
                });
                return Ok(record);
            }
            Err(e) if !retried && is_missing(&e) => {
                tracing::warn!(reference, error = %e, "a blob vanished before the import; fetching again");
                retried = true;
            }
            Err(e) => return Err(PullError::store(&reference, e)),
        }
    }
}

/// The config blob, from the store or the pull cache. Looks in the store again when the
/// cache copy is gone: a concurrent pull of the same image may have imported it meanwhile.
fn read_config(store: &ImageStore, cache: &PullCache, hex: &str) -> Result<Vec<u8>, ImageError> {
    let mut candidates = [
        store.blob_path(hex),
        cache.blob_path(hex),
        store.blob_path(hex),
    ]
    .into_iter()
    .peekable();
    loop {
        let path = candidates.next().expect("the last candidate returns");
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && candidates.peek().is_some() => {}
            Err(source) => {
                return Err(ImageError::Io {
                    action: "reading pulled config",
                    path,
                    source,
                });
            }
        }
    }
}

fn is_missing(e: &ImageError) -> bool {
    matches!(e, ImageError::Io { action, source, .. }
        if source.kind() == std::io::ErrorKind::NotFound
            && (*action == "reading pulled blob" || *action == "reading pulled config"))
}

/// Makes one blob available in the pull cache (or finds it in the store), sharing the
/// download with any other pull that needs the same blob.
async fn fetch(
    inner: &Arc<Inner>,
    session: &Session,
    image: &oci_client::Reference,
    reference: &str,
    cache: &PullCache,
    blob: Blob,
    events: &PullEvents,
) -> Result<(), PullError> {
    let digest = format!("sha256:{}", blob.hex);
    if inner.store.has_blob(&blob.hex) || cache.blob_path(&blob.hex).is_file() {
        events.emit(PullProgress::BlobDone {
            digest,
            cached: true,
        });
        return Ok(());
    }
    let job = BlobJob {
        session: session.clone(),
        image: image.clone(),
        reference: reference.to_owned(),
        hex: blob.hex.clone(),
        size: blob.size,
        store: inner.store.clone(),
        cache: cache.clone(),
    };
    let digest_for_span = digest.clone();
    let (mut flight, progress, joined) = inner.blobs.join(
        &blob.hex,
        || watch::channel(0).0,
        move |progress| {
            download::download(job, progress)
                .instrument(tracing::debug_span!("download", blob = %digest_for_span))
        },
    );
    if joined {
        tracing::debug!(blob = %digest, "joining a download already running");
    }
    let mut bytes = progress.subscribe();
    let cached = loop {
        tokio::select! {
            result = &mut flight => break result?,
            changed = bytes.changed() => {
                if changed.is_err() {
                    break flight.await?;
                }
                let done = *bytes.borrow_and_update();
                events.emit(PullProgress::Blob { digest: digest.clone(), done, total: blob.size });
            }
        }
    };
    events.emit(PullProgress::BlobDone { digest, cached });
    Ok(())
}

fn blob_of(
    descriptor: &oci_spec::image::Descriptor,
    reference: &str,
    kind: &str,
) -> Result<Blob, PullError> {
    let digest = descriptor.digest();
    let hex = digest.digest();
    let ok = digest.algorithm() == &oci_spec::image::DigestAlgorithm::Sha256
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(PullError::Unsupported {
            reference: reference.to_owned(),
            what: format!("{kind} {digest}"),
            problem: "only sha256 digests are supported".to_owned(),
        });
    }
    Ok(Blob {
        hex: hex.to_owned(),
        size: descriptor.size(),
    })
}

/// Removes the pull cache's copies of `blobs` (gone already is fine).
fn discard(cache: &PullCache, blobs: &[Blob]) {
    for blob in blobs {
        let path = cache.blob_path(&blob.hex);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove pulled blob")
            }
        }
    }
}

/// Runs blocking work (file locks, the import) off the async runtime.
async fn blocking<T: Send + 'static>(
    reference: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PullError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PullError::Interrupted {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}
