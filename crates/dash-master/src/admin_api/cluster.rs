//! /v1/cluster: the masters' Raft (`dash cluster status`), as the leader sees it: a follower
//! asks the leader, and answers with its own partial view if the leader cannot be reached.

use axum::Json;
use axum::extract::State;
use dash_core::api::{ApiError, ClusterStatus};

use super::AppState;
use super::error::HttpError;
use crate::raft::network::Method;

/// The leader, the term, the commit index and every master's role, match index, lag and last
/// contact. A master without a cluster (no `--advertise-addr`) has no Raft: 409, as the
/// token routes answer there.
#[utoipa::path(get, path = "/v1/cluster", tag = "nodes", operation_id = "cluster_status",
    responses((status = 200, body = ClusterStatus),
        (status = 409, body = ApiError, description = "`conflict`: a master without a cluster (no `--advertise-addr`)")))]
pub async fn status(State(s): State<AppState>) -> Result<Json<ClusterStatus>, HttpError> {
    let log = s.manager.log();
    let Some(node) = log.raft() else {
        return Err(HttpError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "this master runs alone (no --advertise-addr): there is no cluster of masters",
        ));
    };
    let store = s.manager.store();
    if !node.is_leader()
        && let Some((_, leader)) = node.leader()
    {
        let asked: Result<ClusterStatus, _> = node
            .peers
            .call(
                &leader,
                Method::Status,
                &(),
                std::time::Duration::from_secs(2),
            )
            .await;
        match asked {
            Ok(status) => return Ok(Json(status)),
            Err(e) => tracing::debug!(error = %e, "asking the leader for the cluster status"),
        }
    }
    Ok(Json(
        crate::raft::status::local(node, store, s.liveness.as_deref(), &s.node).await,
    ))
}

/// A consistent backup of the cluster (`dash backup -o FILE`): the state, the admin token, the
/// CA and every image, as one tar (the format: `crate::backup`). Any master makes it from its
/// own applied state; `dash restore` turns it into the data dir of a new one-master cluster.
#[utoipa::path(get, path = "/v1/backup", tag = "nodes", operation_id = "backup",
    responses((status = 200, content_type = "application/x-tar", description = "the backup (a tar whose last entry, dash-backup.json, lists and checksums the rest)")))]
pub async fn backup(State(s): State<AppState>) -> Result<axum::response::Response, HttpError> {
    let out = s
        .upload_dir
        .join(format!("backup-{}.tar", uuid::Uuid::new_v4().simple()));
    tokio::fs::create_dir_all(&s.upload_dir)
        .await
        .map_err(HttpError::internal)?;
    let ca = Some((s.ca.0.as_str(), s.ca.1.as_str()));
    let made = crate::backup::create(
        crate::backup::Sources {
            log: s.manager.log(),
            images: &s.images,
            admin_token: &s.token,
            ca,
            made_by: &s.node,
            scratch: &s.upload_dir,
        },
        &out,
    )
    .await;
    let file = tokio::fs::File::open(&out).await;
    // Unlinked at once: the open file is streamed, and nothing stays behind after.
    let _ = tokio::fs::remove_file(&out).await;
    let manifest = made.map_err(HttpError::internal)?;
    let file = file.map_err(HttpError::internal)?;
    let len = file.metadata().await.map_err(HttpError::internal)?.len();
    tracing::info!(
        bytes = len,
        applied_index = manifest.applied_index,
        images = manifest.images.len(),
        "backup made"
    );
    let stream = futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    axum::response::Response::builder()
        .header("content-type", "application/x-tar")
        .header("content-length", len)
        .body(axum::body::Body::from_stream(stream))
        .map_err(HttpError::internal)
}
