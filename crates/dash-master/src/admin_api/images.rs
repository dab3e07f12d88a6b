//! /v1/images: list, import (the archive is the request body), remove.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use dash_core::api::{ApiError, ImageInfo, PruneReport, PullEvent, PullLayer, PullRequest};
use dash_core::event::EventKind;
use dash_image::{ImageRecord, ImageStore};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiQuery, HttpError};

fn info(r: ImageRecord) -> ImageInfo {
    ImageInfo {
        id: r.id,
        tags: r.tags,
        size_bytes: r.size_bytes,
        created: r.created,
        layers: r.layers.len(),
    }
}

/// Every image in the store.
#[utoipa::path(get, path = "/v1/images", tag = "images", operation_id = "list_images",
    responses((status = 200, body = Vec<ImageInfo>)))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<ImageInfo>>, HttpError> {
    let images = s.images.clone();
    let list = tokio::task::spawn_blocking(move || images.list())
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(
        list.map_err(HttpError::internal)?
            .into_iter()
            .map(info)
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Treat the body as a plain root filesystem tarball and tag it with this reference.
    #[param(schema_with = dash_core::api::patterns::image_reference)]
    rootfs: Option<String>,
}

/// Imports an OCI image layout or `docker save` archive (or, with `rootfs`, a root filesystem
/// tarball) sent as the request body. The body's content type is not looked at: the CLI sends
/// `application/x-tar`, any other (`application/octet-stream`) is the same.
#[utoipa::path(post, path = "/v1/images/import", tag = "images", operation_id = "import_image",
    params(ImportQuery),
    request_body(description = "the archive, as it is (no size limit)", content(
        ("application/x-tar"),
        ("application/octet-stream"))),
    responses((status = 200, body = Vec<ImageInfo>, description = "the images imported"),
        (status = 400, body = ApiError, description = "`invalid`: the archive could not be imported, whatever the reason (`archive`), the upload broke off (`body`), or `rootfs` is not an image reference (`rootfs`)")))]
pub async fn import(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Body,
) -> Result<axum::response::Response, HttpError> {
    if let Some(r) = &q.rootfs {
        dash_image::normalize_reference(r)
            .map_err(|e| HttpError::bad_request("rootfs", e.to_string()))?;
    }
    tokio::fs::create_dir_all(&s.upload_dir)
        .await
        .map_err(HttpError::internal)?;
    let path = s
        .upload_dir
        .join(format!("upload-{}.tar", uuid::Uuid::new_v4().simple()));
    let result = receive_and_import(&s.images, &path, q.rootfs, body).await;
    let _ = tokio::fs::remove_file(&path).await;
    let records = result?;
    record_in_state(&s, &records).await;
    for r in &records {
        s.mq.publish(
            EventKind::ImageImported,
            None,
            None,
            format!("{} {}", r.tags.join(","), r.id),
        );
    }
    let tags: Vec<String> = records.iter().flat_map(|r| r.tags.clone()).collect();
    let target = format!("image {}", tags.join(","));
    Ok(super::auth::audited(
        Json(records.into_iter().map(info).collect::<Vec<_>>()),
        target,
    ))
}

/// With masters replicated, an image this master now holds goes into the state's image index
/// (`Command::RecordImage`), so that every master fetches it (`crate::image_sync`). Best
/// effort: the image is here either way; a master that lacks it is told again at the next
/// import or pull of the tag.
async fn record_in_state(s: &AppState, records: &[ImageRecord]) {
    let Some(raft) = s.manager.log().raft() else {
        return;
    };
    for r in records {
        for tag in &r.tags {
            let images = s.images.clone();
            let t = tag.clone();
            let digest = match tokio::task::spawn_blocking(move || images.inspect(&t)).await {
                Ok(Ok(i)) => i.manifest_digest,
                _ => continue,
            };
            let cmd = dash_core::command::Command::RecordImage {
                tag: tag.clone(),
                manifest_digest: digest,
                origin: raft.addr.clone(),
                at_ms: dash_core::clock::now_ms(),
            };
            if let Err(e) = s.manager.log().propose(cmd).await {
                tracing::warn!(image = %tag, error = %e, "recording the image for the other masters");
            }
        }
    }
}

async fn receive_and_import(
    images: &Arc<ImageStore>,
    path: &std::path::Path,
    rootfs: Option<String>,
    body: Body,
) -> Result<Vec<ImageRecord>, HttpError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(HttpError::internal)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| HttpError::bad_request("body", format!("reading the upload: {e}")))?;
        file.write_all(&chunk).await.map_err(HttpError::internal)?;
    }
    file.flush().await.map_err(HttpError::internal)?;
    drop(file);
    let images = images.clone();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match rootfs {
        Some(r) => images.import_rootfs(&path, &r).map(|rec| vec![rec]),
        None => images.import_archive(&path),
    })
    .await
    .map_err(HttpError::internal)?
    .map_err(|e| HttpError::bad_request("archive", e.to_string()))
}

/// Removes an image (a tag, or by id the image and its tags).
#[utoipa::path(delete, path = "/v1/images/{reference}", tag = "images", operation_id = "remove_image",
    params(("reference" = String, Path, description = "A tag or an image id (prefix); `/` is `%2F`")),
    responses((status = 200, body = ImageInfo, description = "the image removed"),
        (status = 404, body = ApiError, description = "`not_found`: the store could not find or remove it (any failure there)"),
        (status = 409, body = ApiError, description = "`conflict`: a service's current spec names the image")))]
pub async fn remove(
    State(s): State<AppState>,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<ImageInfo>, HttpError> {
    // Refuse to remove an image that a service uses.
    let services = s.manager.list().await?;
    let wanted = dash_image::normalize_reference(&reference).unwrap_or(reference.clone());
    if let Some(svc) = services
        .iter()
        .find(|svc| dash_image::normalize_reference(&svc.spec.image).is_ok_and(|n| n == wanted))
    {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "image {reference} is used by service {}; remove the service first",
                svc.spec.name
            ),
        ));
    }
    let images = s.images.clone();
    let r = reference.clone();
    let removed = tokio::task::spawn_blocking(move || images.remove(&r))
        .await
        .map_err(HttpError::internal)?
        .map_err(|e| HttpError::not_found(e.to_string()))?;
    if s.manager.log().raft().is_some() {
        // The tag removed only: the image's other tags stay.
        let cmd = dash_core::command::Command::ForgetImage {
            tag: wanted.clone(),
            at_ms: dash_core::clock::now_ms(),
        };
        if let Err(e) = s.manager.log().propose(cmd).await {
            tracing::warn!(image = %wanted, error = %e, "removing the image from the index");
        }
    }
    s.mq.publish(
        EventKind::ImageRemoved,
        None,
        None,
        format!("{reference} {}", removed.id),
    );
    Ok(Json(info(removed)))
}

/// A pull failure as an HTTP error: authentication problems are 401, the rest 502 (the
/// registry's side) unless the reference itself is wrong.
pub fn pull_error(e: dash_image::registry::PullError) -> HttpError {
    use dash_image::registry::PullError as E;
    let message = e.to_string();
    match e {
        E::AuthenticationFailed { .. } | E::AuthenticationRequired { .. } => {
            HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
        E::InvalidReference { .. } | E::InvalidRegistry { .. } => {
            HttpError::bad_request("reference", message)
        }
        E::NotFound { .. } => HttpError::not_found(message),
        _ => HttpError::new(StatusCode::BAD_GATEWAY, "registry", message),
    }
}

/// Pulls an image, streaming its progress as newline-delimited JSON ([`PullEvent`]s) and
/// ending with `done` or `error`. The pull goes on if the client goes away (other callers may
/// share it).
#[utoipa::path(post, path = "/v1/images/pull", tag = "images", operation_id = "pull_image",
    request_body = PullRequest,
    responses((status = 200, content_type = "application/x-ndjson", body = PullEvent,
            description = "newline-delimited JSON, one `PullEvent` a line, ending with `done` or `error` (what goes wrong once it started, e.g. an unreachable registry)"),
        (status = 400, body = ApiError, description = "`invalid`: `reference` is not an image reference (`reference`)")))]
pub async fn pull(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<PullRequest>,
) -> Result<axum::response::Response, HttpError> {
    dash_image::registry::parse_reference(&req.reference)
        .map_err(|e| HttpError::bad_request("reference", e.to_string()))?;
    let target = format!("image {}", req.reference);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let puller = s.puller.clone();
    let mq = s.mq.clone();
    let state = s.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let progress = move |p: dash_image::registry::PullProgress| {
            if let Some(e) = event(p) {
                let _ = progress_tx.send(line(&e));
            }
        };
        let result = puller.pull(&req.reference, &progress).await;
        let last = match result {
            Ok(record) => {
                record_in_state(&state, std::slice::from_ref(&record)).await;
                mq.publish(
                    EventKind::ImageImported,
                    None,
                    None,
                    format!("pulled {} {}", req.reference, record.id),
                );
                PullEvent::Done {
                    image: info(record),
                }
            }
            Err(e) => PullEvent::Error {
                message: e.to_string(),
            },
        };
        let _ = tx.send(line(&last));
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|s| (Ok::<_, std::convert::Infallible>(bytes::Bytes::from(s)), rx))
    }));
    axum::response::Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(body)
        .map(|r| super::auth::audited(r, target))
        .map_err(HttpError::internal)
}

/// The API's form of a progress event; the final `done` is sent with the image's details.
fn event(p: dash_image::registry::PullProgress) -> Option<PullEvent> {
    use dash_image::registry::PullProgress as P;
    Some(match p {
        P::Resolved {
            reference,
            manifest_digest,
            layers,
        } => PullEvent::Resolved {
            reference,
            manifest_digest,
            layers: layers
                .into_iter()
                .map(|(digest, size_bytes)| PullLayer { digest, size_bytes })
                .collect(),
        },
        P::Blob {
            digest,
            done,
            total,
        } => PullEvent::Blob {
            digest,
            done,
            total,
        },
        P::BlobDone { digest, cached } => PullEvent::BlobDone { digest, cached },
        P::Unpacking => PullEvent::Unpacking,
        P::Done { .. } => return None,
    })
}

fn line(e: &PullEvent) -> String {
    let mut s = serde_json::to_string(e).unwrap_or_default();
    s.push('\n');
    s
}

/// An image's config, manifest digest and layers.
#[utoipa::path(get, path = "/v1/images/{reference}", tag = "images", operation_id = "inspect_image",
    params(("reference" = String, Path, description = "A tag or an image id (prefix); `/` is `%2F`")),
    responses((status = 200, body = Object, description = "the image, its config and layers (the store's record, as it is)"),
        (status = 404, body = ApiError, description = "`not_found`: no such image")))]
pub async fn inspect(
    State(s): State<AppState>,
    ApiPath(reference): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, HttpError> {
    let images = s.images.clone();
    let r = reference.clone();
    let inspected = tokio::task::spawn_blocking(move || images.inspect(&r))
        .await
        .map_err(HttpError::internal)?
        .map_err(|e| HttpError::not_found(format!("{e}; `dash image ls` lists images")))?;
    Ok(axum::Json(
        serde_json::to_value(&inspected).map_err(HttpError::internal)?,
    ))
}

/// Removes untagged images that no replica uses, unreferenced blobs and unpacked layers, and
/// the blobs of unfinished pulls: here (the report), and with replicated masters on every
/// master (`Command::PruneImages`, followed by `crate::image_sync`).
#[utoipa::path(post, path = "/v1/images/prune", tag = "images", operation_id = "prune_images",
    responses((status = 200, body = PruneReport, description = "what this master removed"),
        (status = 503, body = ApiError, description = "`unavailable`: no leader took the prune for the other masters")))]
pub async fn prune(State(s): State<AppState>) -> Result<axum::Json<PruneReport>, HttpError> {
    if s.manager.log().raft().is_some() {
        let cmd = dash_core::command::Command::PruneImages {
            at_ms: dash_core::clock::now_ms(),
        };
        s.manager.log().propose(cmd).await?;
    }
    let report = crate::image_sync::prune_here(s.manager.store(), &s.images)
        .await
        .map_err(HttpError::internal)?;
    Ok(axum::Json(PruneReport {
        images_removed: report.images_removed.len() as u64,
        blobs_removed: report.blobs_removed as u64,
        layers_removed: report.layers_removed as u64,
        bytes_freed: report.bytes_freed,
    }))
}
