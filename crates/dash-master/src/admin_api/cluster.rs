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
