//! /v1/nodes and /v1/tokens: the cluster's members and the tokens that admit new ones.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use dash_core::api::{NodeInfo, NodeState, TokenCreated, TokenInfo, TokenRequest};
use dash_core::command::Command;
use dash_core::event::EventKind;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiJson, HttpError};
use crate::node_bouncer::{BouncerError, NodeBouncer};

#[utoipa::path(get, path = "/v1/nodes", responses((status = 200, body = Vec<NodeInfo>)))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<NodeInfo>>, HttpError> {
    Ok(Json(
        s.manager
            .store()
            .nodes()
            .await
            .map_err(HttpError::internal)?,
    ))
}

async fn find(s: &AppState, id: &str) -> Result<NodeInfo, HttpError> {
    s.manager
        .store()
        .nodes()
        .await
        .map_err(HttpError::internal)?
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| {
            HttpError::not_found(format!("node {id:?} not found; `dash node ls` lists nodes"))
        })
}

#[utoipa::path(get, path = "/v1/nodes/{id}", responses((status = 200, body = NodeInfo), (status = 404, body = dash_core::api::ApiError)))]
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeInfo>, HttpError> {
    Ok(Json(find(&s, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    /// Remove a node that is still ready (its replicas are started elsewhere; the node is
    /// refused from then on).
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/v1/nodes/{id}", params(RemoveQuery), responses((status = 200, body = NodeInfo, description = "the node as it was"), (status = 409, body = dash_core::api::ApiError)))]
pub async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<NodeInfo>, HttpError> {
    let node = find(&s, &id).await?;
    if node.role == "server" || node.role == "master" {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("node {id} is this master; a master cannot remove itself"),
        ));
    }
    if node.state == NodeState::Ready && !q.force {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "node {id} is ready; drain it or stop it first, or remove it anyway with --force"
            ),
        ));
    }
    s.manager
        .store()
        .apply(&Command::RemoveNode { id: id.clone() })
        .await
        .map_err(HttpError::internal)?;
    s.metrics.forget(&id);
    s.mq.publish_node(
        EventKind::NodeRemoved,
        &id,
        "removed; its certificate is refused from now on".into(),
    );
    s.manager.wake();
    Ok(Json(node))
}

fn bouncer(s: &AppState) -> Result<&NodeBouncer, HttpError> {
    s.bouncer.as_ref().ok_or_else(|| {
        HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this server runs without master_api; start it with --advertise-addr to admit nodes",
        )
    })
}

fn bouncer_error(e: BouncerError) -> HttpError {
    match e {
        BouncerError::Invalid { field, message } => HttpError::bad_request(field, message),
        BouncerError::NotFound(m) => HttpError::not_found(m),
        other => HttpError::internal(other),
    }
}

#[utoipa::path(post, path = "/v1/tokens", request_body = TokenRequest, responses((status = 200, body = TokenCreated), (status = 400, body = dash_core::api::ApiError)))]
pub async fn create_token(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<TokenCreated>, HttpError> {
    let (token, info) = bouncer(&s)?
        .create_token(&req)
        .await
        .map_err(bouncer_error)?;
    Ok(Json(TokenCreated {
        token: token.to_string(),
        info,
    }))
}

#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(State(s): State<AppState>) -> Result<Json<Vec<TokenInfo>>, HttpError> {
    Ok(Json(bouncer(&s)?.tokens().await.map_err(bouncer_error)?))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", responses((status = 200, body = TokenInfo), (status = 404, body = dash_core::api::ApiError)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, HttpError> {
    let b = bouncer(&s)?;
    b.revoke(&id).await.map_err(bouncer_error)?;
    let info = b
        .tokens()
        .await
        .map_err(bouncer_error)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| HttpError::not_found(format!("token {id} vanished")))?;
    Ok(Json(info))
}

async fn set_state(s: &AppState, id: &str, state: NodeState) -> Result<NodeInfo, HttpError> {
    let node = find(s, id).await?;
    if state == NodeState::Ready && node.state != NodeState::Drained {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "node {id} is {}, not drained; only a drained node is activated (an unreachable or down node becomes ready by itself when it is heard again)",
                node.state.as_str()
            ),
        ));
    }
    s.manager
        .store()
        .apply(&Command::SetNodeState {
            id: id.to_string(),
            state,
            at_ms: crate::now_ms(),
            from: None,
        })
        .await
        .map_err(HttpError::internal)?;
    let (kind, msg) = if state == NodeState::Drained {
        (
            EventKind::NodeDrained,
            "drained: its replicas move to other nodes, each started before the old one stops",
        )
    } else {
        (EventKind::NodeReady, "activated: takes new replicas again")
    };
    s.mq.publish_node(kind, id, msg.into());
    s.manager.wake();
    find(s, id).await
}

#[utoipa::path(post, path = "/v1/nodes/{id}/drain", responses((status = 200, body = NodeInfo), (status = 404, body = dash_core::api::ApiError)))]
pub async fn drain(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeInfo>, HttpError> {
    Ok(Json(set_state(&s, &id, NodeState::Drained).await?))
}

#[utoipa::path(post, path = "/v1/nodes/{id}/activate", responses((status = 200, body = NodeInfo), (status = 409, body = dash_core::api::ApiError)))]
pub async fn activate(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeInfo>, HttpError> {
    Ok(Json(set_state(&s, &id, NodeState::Ready).await?))
}

/// `POST /v1/nodes/{id}/labels`: labels to set and label keys to remove.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct LabelRequest {
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[utoipa::path(post, path = "/v1/nodes/{id}/labels", request_body = LabelRequest, responses((status = 200, body = NodeInfo), (status = 400, body = dash_core::api::ApiError)))]
pub async fn label(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LabelRequest>,
) -> Result<Json<NodeInfo>, HttpError> {
    let node = find(&s, &id).await?;
    let valid = |k: &str| {
        !k.is_empty()
            && k.len() <= 63
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    if let Some(bad) = req.set.keys().chain(req.remove.iter()).find(|k| !valid(k)) {
        return Err(HttpError::bad_request(
            "labels",
            format!("label key {bad:?}: use 1 to 63 letters, digits, '-', '_', '.', '/'"),
        ));
    }
    let mut labels = node.labels;
    for k in &req.remove {
        labels.remove(k);
    }
    labels.extend(req.set);
    s.manager
        .store()
        .apply(&Command::SetNodeLabels {
            id: id.clone(),
            labels,
        })
        .await
        .map_err(HttpError::internal)?;
    s.manager.wake();
    Ok(Json(find(&s, &id).await?))
}
