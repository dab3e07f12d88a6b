//! /v1/nodes and /v1/tokens: the cluster's members and the tokens that admit new ones.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use dash_core::api::{ApiError, NodeInfo, NodeState, TokenCreated, TokenInfo, TokenRequest};
use dash_core::command::Command;
use dash_core::event::{EventDraft, EventKind};
use serde::Deserialize;

use super::AppState;
use super::auth::audited;
use super::error::{ApiJson, ApiPath, ApiQuery, HttpError};
use crate::node_bouncer::NodeBouncer;
use crate::tokens::{TokenError, TokenRole};

/// Every node of the cluster.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", operation_id = "list_nodes",
    responses((status = 200, body = Vec<NodeInfo>)))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<NodeInfo>>, HttpError> {
    Ok(Json(nodes(&s).await?))
}

/// The state's nodes, each master with its place in the membership (this master's view).
async fn nodes(s: &AppState) -> Result<Vec<NodeInfo>, HttpError> {
    let mut nodes = s
        .manager
        .store()
        .nodes()
        .await
        .map_err(HttpError::internal)?;
    if let Some(raft) = s.manager.log().raft() {
        for n in nodes.iter_mut().filter(|n| n.role.is_master()) {
            n.raft = raft.role_of(&n.id).map(String::from);
        }
    }
    Ok(nodes)
}

async fn find(s: &AppState, id: &str) -> Result<NodeInfo, HttpError> {
    nodes(s)
        .await?
        .into_iter()
        .find(|n| n.id == id)
        .ok_or_else(|| {
            HttpError::not_found(format!("node {id:?} not found; `dash node ls` lists nodes"))
        })
}

/// One node.
#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "nodes", operation_id = "inspect_node",
    params(("id" = String, Path, description = "The node's name")),
    responses((status = 200, body = NodeInfo),
        (status = 404, body = ApiError, description = "`not_found`: no such node")))]
pub async fn inspect(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeInfo>, HttpError> {
    Ok(Json(find(&s, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove a node that is still ready (its replicas are started elsewhere; the node is
    /// refused from then on).
    #[serde(default)]
    pub force: bool,
}

/// Removes a node from the cluster; its certificate is refused from then on.
#[utoipa::path(delete, path = "/v1/nodes/{id}", tag = "nodes", operation_id = "remove_node",
    params(("id" = String, Path, description = "The node's name"), RemoveQuery),
    responses((status = 200, body = NodeInfo, description = "the node as it was"),
        (status = 404, body = ApiError, description = "`not_found`: no such node"),
        (status = 409, body = ApiError, description = "`conflict`: the node is the master answering or the leader, or ready and `force` is not set"),
        (status = 503, body = ApiError, description = "`unavailable`: a master's removal from the membership was not committed (no majority)")))]
pub async fn remove(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> Result<Json<NodeInfo>, HttpError> {
    let node = find(&s, &id).await?;
    if node.role.is_master() {
        remove_master(&s, &node, q.force).await?;
    }
    s.manager
        .log()
        .propose_with(
            Command::RemoveNode {
                id: id.clone(),
                force: q.force,
            },
            vec![EventDraft::node(
                EventKind::NodeRemoved,
                &id,
                "removed; its certificate is refused from now on",
            )],
        )
        .await
        .map_err(HttpError::internal)?
        .accepted()?;
    s.metrics.forget(&id);
    s.manager.wake();
    Ok(Json(node))
}

/// A master leaves the membership before its node goes (a dead one needs no `force`; the one
/// answering and the leader are refused: stop it, then remove it from another master).
async fn remove_master(s: &AppState, node: &NodeInfo, force: bool) -> Result<(), HttpError> {
    let id = &node.id;
    let conflict = |m: String| HttpError::new(StatusCode::CONFLICT, "conflict", m);
    let Some(raft) = s.manager.log().raft() else {
        return Err(conflict(format!(
            "node {id} is this master; a master cannot remove itself"
        )));
    };
    if *id == s.node {
        return Err(conflict(format!(
            "node {id} is the master answering; ask another master (DASH_ADDR=…), or stop {id} \
             first"
        )));
    }
    if node.raft.as_deref() == Some("leader") {
        return Err(conflict(format!(
            "master {id} is the leader; stop it (another master is elected), then remove it"
        )));
    }
    if node.state == NodeState::Ready && !force {
        return Err(conflict(format!(
            "master {id} is ready; stop it first, or remove it with --force (it then leaves \
             the membership while running)"
        )));
    }
    raft.remove_master(id).await.map_err(|e| {
        HttpError::unavailable(format!("master {id} could not leave the membership: {e}"))
    })
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

fn token_error(e: TokenError) -> HttpError {
    match e {
        TokenError::Invalid { field, message } => HttpError::bad_request(field, message),
        TokenError::NotFound(m) => HttpError::not_found(m),
        other => HttpError::internal(other),
    }
}

/// A new token: `read`, `deploy` or `admin` opens the admin API (`dash login`), `worker` or
/// `master` joins a node. Its text is in this answer only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", operation_id = "create_token",
    request_body = TokenRequest,
    responses((status = 200, body = TokenCreated),
        (status = 400, body = ApiError, description = "`invalid`: an unknown `role` (`role`), a `ttl_s` of 0 or over 10 years (`ttl`)"),
        (status = 409, body = ApiError, description = "`conflict`: a join token (`worker`, `master`) on a server without master_api (no --advertise-addr), which admits no nodes")))]
pub async fn create_token(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, HttpError> {
    if TokenRole::parse(&req.role).is_some_and(TokenRole::joins) {
        bouncer(&s)?;
    }
    let (token, info) = s.tokens.create(&req).await.map_err(token_error)?;
    let detail = format!("token {} ({})", info.id, info.role);
    Ok(audited(
        Json(TokenCreated {
            token: token.to_string(),
            info,
        }),
        detail,
    ))
}

/// Every token (never its secret).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", operation_id = "list_tokens",
    responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(State(s): State<AppState>) -> Result<Json<Vec<TokenInfo>>, HttpError> {
    Ok(Json(s.tokens.list().await.map_err(token_error)?))
}

/// Revokes a token (again, if it was): it opens nothing from now on.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", operation_id = "revoke_token",
    params(("id" = String, Path, description = "The token's id (`dash token ls`)")),
    responses((status = 200, body = TokenInfo, description = "the revoked token"),
        (status = 404, body = ApiError, description = "`not_found`: no such token")))]
pub async fn revoke_token(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TokenInfo>, HttpError> {
    Ok(Json(s.tokens.revoke(&id).await.map_err(token_error)?))
}

async fn set_state(s: &AppState, id: &str, state: NodeState) -> Result<NodeInfo, HttpError> {
    find(s, id).await?;
    let (id, at_ms) = (id.to_string(), crate::now_ms());
    let (cmd, kind, msg) = if state == NodeState::Drained {
        (
            Command::DrainNode {
                id: id.clone(),
                at_ms,
            },
            EventKind::NodeDrained,
            "drained: its replicas move to other nodes, each started before the old one stops",
        )
    } else {
        (
            Command::ActivateNode {
                id: id.clone(),
                at_ms,
            },
            EventKind::NodeReady,
            "activated: takes new replicas again",
        )
    };
    s.manager
        .log()
        .propose_with(cmd, vec![EventDraft::node(kind, &id, msg)])
        .await
        .map_err(HttpError::internal)?
        .accepted()?;
    let id = id.as_str();
    s.manager.wake();
    find(s, id).await
}

/// Drains a node: its replicas move to other nodes, each started before the old one stops.
#[utoipa::path(post, path = "/v1/nodes/{id}/drain", tag = "nodes", operation_id = "drain_node",
    params(("id" = String, Path, description = "The node's name")),
    responses((status = 200, body = NodeInfo),
        (status = 404, body = ApiError, description = "`not_found`: no such node")))]
pub async fn drain(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeInfo>, HttpError> {
    Ok(Json(set_state(&s, &id, NodeState::Drained).await?))
}

/// Lets a drained node take new replicas again.
#[utoipa::path(post, path = "/v1/nodes/{id}/activate", tag = "nodes", operation_id = "activate_node",
    params(("id" = String, Path, description = "The node's name")),
    responses((status = 200, body = NodeInfo),
        (status = 404, body = ApiError, description = "`not_found`: no such node"),
        (status = 409, body = ApiError, description = "`conflict`: the node is not drained")))]
pub async fn activate(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NodeInfo>, HttpError> {
    Ok(Json(set_state(&s, &id, NodeState::Ready).await?))
}

/// `POST /v1/nodes/{id}/labels`: labels to set and label keys to remove.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct LabelRequest {
    /// Labels to set (added or replaced), after the removals.
    #[serde(default)]
    #[schema(schema_with = label_map)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Label keys to remove (an absent one is no error).
    #[serde(default)]
    #[schema(schema_with = label_keys)]
    pub remove: Vec<String>,
}

/// What `label` checks a label key with, as the document says it.
pub(super) const LABEL_KEY: &str = "^[A-Za-z0-9._/-]{1,63}$";

fn label_key() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(LABEL_KEY))
        .description(Some("1 to 63 letters, digits, '-', '_', '.', '/'"))
        .build()
}

fn label_map() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .property_names(Some(label_key()))
        .additional_properties(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String),
        ))
        .build()
}

fn label_keys() -> utoipa::openapi::Array {
    utoipa::openapi::ArrayBuilder::new()
        .items(label_key())
        .build()
}

/// Sets and removes a node's labels (placement constraints match them).
#[utoipa::path(post, path = "/v1/nodes/{id}/labels", tag = "nodes", operation_id = "label_node",
    params(("id" = String, Path, description = "The node's name")), request_body = LabelRequest,
    responses((status = 200, body = NodeInfo),
        (status = 400, body = ApiError, description = "`invalid`: a label key that is not 1 to 63 letters, digits, '-', '_', '.', '/' (`labels`)"),
        (status = 404, body = ApiError, description = "`not_found`: no such node")))]
pub async fn label(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<LabelRequest>,
) -> Result<Json<NodeInfo>, HttpError> {
    find(&s, &id).await?;
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
    s.manager
        .log()
        .propose(Command::SetNodeLabels {
            id: id.clone(),
            set: req.set,
            remove: req.remove,
        })
        .await
        .map_err(HttpError::internal)?
        .accepted()?;
    s.manager.wake();
    Ok(Json(find(&s, &id).await?))
}
