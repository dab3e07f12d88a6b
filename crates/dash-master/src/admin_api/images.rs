//! /v1/images: list, import (the archive is the request body), remove.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dash_core::api::ImageInfo;
use dash_core::event::EventKind;
use dash_runtime::image::{ImageRecord, ImageStore};
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::error::{ApiQuery, HttpError};

fn info(r: ImageRecord) -> ImageInfo {
    ImageInfo {
        id: r.id,
        tags: r.tags,
        size_bytes: r.size_bytes,
        created: r.created,
        layers: r.layers.len(),
    }
}

#[utoipa::path(get, path = "/v1/images", responses((status = 200, body = Vec<ImageInfo>)))]
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
pub struct ImportQuery {
    /// Treat the body as a plain root filesystem tarball and tag it with this reference.
    rootfs: Option<String>,
}

/// Imports an OCI image layout or `docker save` archive (or, with `rootfs`, a root filesystem
/// tarball) sent as the request body.
#[utoipa::path(post, path = "/v1/images/import", params(ImportQuery), request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 200, body = Vec<ImageInfo>), (status = 400, body = dash_core::api::ApiError)))]
pub async fn import(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Body,
) -> Result<Json<Vec<ImageInfo>>, HttpError> {
    if let Some(r) = &q.rootfs {
        dash_runtime::image::normalize_reference(r)
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
    for r in &records {
        s.mq.publish(
            EventKind::ImageImported,
            None,
            None,
            format!("{} {}", r.tags.join(","), r.id),
        );
    }
    Ok(Json(records.into_iter().map(info).collect()))
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

#[utoipa::path(delete, path = "/v1/images/{reference}", params(("reference" = String, Path)),
    responses((status = 200, body = ImageInfo), (status = 404, body = dash_core::api::ApiError), (status = 409, body = dash_core::api::ApiError)))]
pub async fn remove(
    State(s): State<AppState>,
    Path(reference): Path<String>,
) -> Result<Json<ImageInfo>, HttpError> {
    // Refuse to remove an image that a service uses.
    let services = s.manager.list().await?;
    let wanted = dash_runtime::image::normalize_reference(&reference).unwrap_or(reference.clone());
    if let Some(svc) = services.iter().find(|svc| {
        dash_runtime::image::normalize_reference(&svc.spec.image).is_ok_and(|n| n == wanted)
    }) {
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
    s.mq.publish(
        EventKind::ImageRemoved,
        None,
        None,
        format!("{reference} {}", removed.id),
    );
    Ok(Json(info(removed)))
}
