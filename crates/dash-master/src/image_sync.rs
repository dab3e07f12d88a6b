//! Images on every master: the state's image index (`Command::RecordImage`, written by the
//! master that imported or pulled an image) says which images the cluster has; every master
//! that lacks one fetches it, by digest, from the master that recorded it, or from any other
//! master, over master_api with its own certificate (the RPCs workers use: `ImageManifest`,
//! `FetchBlob`), and imports it through its image store's checks. So an image imported
//! through any master still reaches workers after that master is gone.
//!
//! A tag that leaves the index (`dash image rm` at some master: `Command::ForgetImage`)
//! leaves a tombstone with the digest it had; a master holding the tag as that digest removes
//! it, at once or when it comes back after being down.
//!
//! `dash image prune` at any master is a command too (`Command::PruneImages`): every master
//! prunes its own store when the count of prunes asked for grows ([`prune_here`]).
//!
//! Looked at every few seconds; a fetch that fails is tried again at the next look.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dash_image::{ImageExport, ImageStore, PruneReport};
use dash_rpc::proto::master_api_client::MasterApiClient;
use dash_rpc::proto::{BlobRequest, ImageRequest};
use dash_store::MasterStore;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::raft::node::RaftNode;

/// How often the image index is compared with this master's images.
const EVERY: Duration = Duration::from_secs(2);

/// Keeps this master's images up with the index until `shutdown`.
pub async fn run(
    raft: RaftNode,
    store: MasterStore,
    images: Arc<ImageStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Prunes asked for before this start are not done again.
    let mut prunes = store.image_prunes().await.unwrap_or(0);
    loop {
        sync_once(&raft, &store, &images).await;
        if let Ok(asked) = store.image_prunes().await
            && asked > prunes
        {
            prunes = asked;
            match prune_here(&store, &images).await {
                Ok(r) => tracing::info!(
                    images = r.images_removed.len(),
                    bytes = r.bytes_freed,
                    "images pruned (asked at a master)"
                ),
                Err(e) => tracing::warn!(error = %e, "pruning the images"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Prunes this master's image store: untagged images no service or replica (of any version
/// the state keeps) names, unreferenced blobs and layers, unfinished pulls.
pub async fn prune_here(
    store: &MasterStore,
    images: &Arc<ImageStore>,
) -> Result<PruneReport, String> {
    let mut wanted = BTreeSet::new();
    for svc in store.services().await.map_err(|e| e.to_string())? {
        wanted.insert(svc.spec.image.clone());
    }
    for r in store.replicas(None).await.map_err(|e| e.to_string())? {
        if let Some(spec) = store
            .service_version(&r.service, r.version)
            .await
            .map_err(|e| e.to_string())?
        {
            wanted.insert(spec.image);
        }
    }
    let images = images.clone();
    tokio::task::spawn_blocking(move || {
        let keep: HashSet<String> = wanted
            .iter()
            .filter_map(|r| images.resolve(r).ok())
            .map(|i| i.record.id)
            .collect();
        images.prune(&keep)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Whether this master holds `tag` as the manifest `digest`.
async fn holds(images: &Arc<ImageStore>, tag: &str, digest: &str) -> bool {
    let (images, tag) = (images.clone(), tag.to_string());
    tokio::task::spawn_blocking(move || images.inspect(&tag))
        .await
        .is_ok_and(|i| i.is_ok_and(|i| i.manifest_digest == digest))
}

/// Removes the tags that left the index (as the digest they had there).
async fn remove_forgotten(
    store: &MasterStore,
    images: &Arc<ImageStore>,
    indexed: &HashSet<String>,
) {
    let Ok(gone) = store.forgotten_images().await else {
        return;
    };
    if gone.is_empty() {
        return;
    }
    let listed = images.clone();
    let local: HashSet<String> = match tokio::task::spawn_blocking(move || listed.list()).await {
        Ok(Ok(list)) => list.into_iter().flat_map(|r| r.tags).collect(),
        _ => return,
    };
    for (tag, digest) in gone {
        if !local.contains(&tag) || indexed.contains(&tag) || !holds(images, &tag, &digest).await {
            continue;
        }
        let (images, t) = (images.clone(), tag.clone());
        match tokio::task::spawn_blocking(move || images.remove(&t)).await {
            Ok(Ok(_)) => tracing::info!(image = %tag, "image removed: it left the index"),
            Ok(Err(e)) => {
                tracing::warn!(image = %tag, error = %e, "removing an image that left the index")
            }
            Err(e) => {
                tracing::warn!(image = %tag, error = %e, "removing an image that left the index")
            }
        }
    }
}

async fn sync_once(raft: &RaftNode, store: &MasterStore, images: &Arc<ImageStore>) {
    let Ok(index) = store.recorded_images().await else {
        return;
    };
    let indexed: HashSet<String> = index.iter().map(|(t, _, _)| t.clone()).collect();
    remove_forgotten(store, images, &indexed).await;
    for (tag, digest, origin) in index {
        if holds(images, &tag, &digest).await {
            continue;
        }
        let others = raft
            .masters()
            .into_iter()
            .map(|(_, a)| a)
            .filter(|a| *a != raft.addr && *a != origin);
        let sources: Vec<String> = std::iter::once(origin.clone())
            .filter(|o| *o != raft.addr)
            .chain(others)
            .collect();
        for source in sources {
            match fetch(raft, &source, &tag, &digest, images).await {
                Ok(()) => {
                    tracing::info!(image = %tag, from = %source, "image fetched from a master");
                    break;
                }
                Err(e) => {
                    tracing::debug!(image = %tag, from = %source, error = %e, "image not fetched")
                }
            }
        }
    }
}

/// Fetches `tag` (manifest `digest`) from the master at `addr` and imports it.
async fn fetch(
    raft: &RaftNode,
    addr: &str,
    tag: &str,
    digest: &str,
    images: &Arc<ImageStore>,
) -> Result<(), String> {
    let mut client =
        MasterApiClient::new(raft.peers.channel(addr)?).max_decoding_message_size(64 << 20);
    let resp = client
        .image_manifest(ImageRequest {
            reference: tag.to_string(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if resp.digest != digest {
        return Err(format!("it holds {tag} as {}, not {digest}", resp.digest));
    }
    let export = ImageExport::from_manifest(resp.digest, resp.manifest_json, resp.config_json)
        .map_err(|e| format!("its manifest: {e}"))?;
    for (blob, _) in &export.layers {
        if !images.has_blob_digest(blob) {
            fetch_blob(&mut client, blob, images).await?;
        }
    }
    let (images, tag) = (images.clone(), tag.to_string());
    tokio::task::spawn_blocking(move || images.import_fetched(&tag, &export))
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One blob, whole, into the image store's fetch area; its digest is checked before it is
/// kept.
async fn fetch_blob(
    client: &mut MasterApiClient<tonic::transport::Channel>,
    digest: &str,
    images: &Arc<ImageStore>,
) -> Result<(), String> {
    let partial = images.fetch_path(digest, true).map_err(|e| e.to_string())?;
    let mut stream = client
        .fetch_blob(BlobRequest {
            digest: digest.to_string(),
            offset: 0,
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| s.message().to_string())?;
        file.write_all(&chunk.data)
            .await
            .map_err(|e| format!("{}: {e}", partial.display()))?;
    }
    file.sync_all()
        .await
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    let (images, digest) = (images.clone(), digest.to_string());
    tokio::task::spawn_blocking(move || images.finish_fetch(&digest))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
