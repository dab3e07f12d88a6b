//! /v1/services and /v1/replicas.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dash_core::api::{ApplyRequest, ApplyResponse, ReplicaInfo, ScaleRequest, ServiceInfo};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiJson, ApiPath, ApiQuery, HttpError};
use dash_core::api::ApiError;

/// Create or update a service from a service file.
#[utoipa::path(post, path = "/v1/services", tag = "services", operation_id = "apply_service",
    request_body = ApplyRequest,
    responses((status = 200, body = ApplyResponse, description = "what changed, or (dry_run) would"),
        (status = 400, body = ApiError, description = "`invalid`: the service file is not valid; `diagnostics` lists every problem"),
        (status = 409, body = ApiError, description = "`conflict`: the service is being removed")))]
pub async fn apply(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> axum::response::Response {
    match s.manager.apply(&req).await {
        Ok(r) => {
            let target = format!(
                "service {} ({:?}, version {})",
                r.service, r.action, r.version
            );
            super::auth::audited(Json(r), target)
        }
        Err(e) => super::auth::audited(HttpError::from(e), format!("file {}", req.file_name)),
    }
}

/// Every service, with its replicas.
#[utoipa::path(get, path = "/v1/services", tag = "services", operation_id = "list_services",
    responses((status = 200, body = Vec<ServiceInfo>)))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<ServiceInfo>>, HttpError> {
    Ok(Json(s.manager.list().await?))
}

/// One service, with its replicas.
#[utoipa::path(get, path = "/v1/services/{name}", tag = "services", operation_id = "inspect_service",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 200, body = ServiceInfo),
        (status = 404, body = ApiError, description = "`not_found`: no such service")))]
pub async fn inspect(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ServiceInfo>, HttpError> {
    Ok(Json(s.manager.inspect(&name).await?))
}

/// Removes a service: its replicas are stopped, then it goes.
#[utoipa::path(delete, path = "/v1/services/{name}", tag = "services", operation_id = "remove_service",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 202, description = "being removed"),
        (status = 404, body = ApiError, description = "`not_found`: no such service")))]
pub async fn remove(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, HttpError> {
    s.manager.remove(&name).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sets a service's replica count.
#[utoipa::path(post, path = "/v1/services/{name}/scale", tag = "services", operation_id = "scale_service",
    params(("name" = String, Path, description = "The service's name")), request_body = ScaleRequest,
    responses((status = 202, description = "the reconciler starts or stops replicas"),
        (status = 400, body = ApiError, description = "`invalid`: over 10000, or outside an autoscaled service's `[autoscale]` min..max (`replicas`)"),
        (status = 404, body = ApiError, description = "`not_found`: no such service, or it is being removed")))]
pub async fn scale(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ScaleRequest>,
) -> Result<StatusCode, HttpError> {
    s.manager.scale(&name, req.replicas).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Where each replica of a service is and why, and how every node looks to it.
#[utoipa::path(get, path = "/v1/services/{name}/explain", tag = "services", operation_id = "explain_service",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 200, body = dash_core::api::ServiceExplain),
        (status = 404, body = ApiError, description = "`not_found`: no such service")))]
pub async fn explain(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<dash_core::api::ServiceExplain>, HttpError> {
    use dash_core::api::{DesiredState, NodeExplain, ReplicaExplain};
    use dash_core::scheduler::Rejection;
    let store = s.manager.store();
    let row = store
        .service(&name)
        .await
        .map_err(HttpError::internal)?
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "service {name:?} not found; `dash service ls` lists services"
            ))
        })?;
    let replicas = store
        .replicas(Some(&name))
        .await
        .map_err(HttpError::internal)?;
    let nodes = store.nodes().await.map_err(HttpError::internal)?;
    let snapshots = crate::reconciler::node_snapshots(store, &replicas)
        .await
        .map_err(HttpError::internal)?;
    let req = crate::reconciler::request(&row);
    let verdicts = dash_core::scheduler::explain(&snapshots, &req);
    let reason = |r: Rejection| match r {
        Rejection::NotReady => "not ready (unreachable, down or drained)".to_string(),
        Rejection::Constraint => format!(
            "fails a placement constraint ({})",
            row.spec
                .placement
                .constraints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Rejection::MaxPerNode => format!(
            "already holds max_per_node = {} of its replicas",
            req.max_per_node
        ),
        Rejection::Memory => "lacks the memory a replica asks for".to_string(),
        Rejection::Cpu => "lacks the CPU a replica asks for".to_string(),
    };
    let node_views: Vec<NodeExplain> = verdicts
        .iter()
        .map(|v| NodeExplain {
            node: v.node.clone(),
            state: nodes
                .iter()
                .find(|n| n.id == v.node)
                .map_or(dash_core::api::NodeState::Down, |n| n.state),
            rejected: v.rejected.map(reason),
            rank: v.rank,
            service_replicas: v.service_replicas,
            load_percent: v.load_percent,
            total_replicas: v.total_replicas,
        })
        .collect();
    let explained = replicas
        .iter()
        .map(|r| {
            let why = match (&r.node, r.desired) {
                (_, DesiredState::Remove) => format!("being removed: {}", if r.message.is_empty() { "scaled down, replaced or its node is gone" } else { &r.message }),
                (Some(n), _) => match node_views.iter().find(|v| v.node == *n) {
                    Some(v) => format!(
                        "on {n}: the scheduler takes the node with the fewest replicas of {name}, then the least loaded; {n} holds {} of them, load {}%, {} replicas in all",
                        v.service_replicas, v.load_percent, v.total_replicas
                    ),
                    None => format!("on {n}, a node no longer in the cluster"),
                },
                (None, _) => {
                    let rejected: Vec<String> = node_views
                        .iter()
                        .filter_map(|v| v.rejected.as_ref().map(|why| format!("{}: {why}", v.node)))
                        .collect();
                    if rejected.is_empty() {
                        "pending: no node in the cluster".to_string()
                    } else {
                        format!("pending: {}", rejected.join("; "))
                    }
                }
            };
            ReplicaExplain {
                replica: r.id.clone(),
                node: r.node.clone(),
                state: r.state,
                why,
            }
        })
        .collect();
    Ok(Json(dash_core::api::ServiceExplain {
        service: name,
        replicas: explained,
        nodes: node_views,
    }))
}

/// The version a rollback made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RollbackResponse {
    pub service: String,
    pub version: u64,
}

/// Puts the previous version's spec back, as a new version.
#[utoipa::path(post, path = "/v1/services/{name}/rollback", tag = "services", operation_id = "rollback_service",
    params(("name" = String, Path, description = "The service's name")),
    responses((status = 200, body = RollbackResponse),
        (status = 400, body = ApiError, description = "`invalid`: no previous version, or it is the current spec (`name`)"),
        (status = 404, body = ApiError, description = "`not_found`: no such service")))]
pub async fn rollback(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RollbackResponse>, HttpError> {
    let version = s
        .manager
        .rollback(&name, "asked for (dash service rollback)")
        .await?;
    Ok(Json(RollbackResponse {
        service: name,
        version,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplicaQuery {
    /// Only this service's replicas.
    service: Option<String>,
}

/// Every replica, or one service's.
#[utoipa::path(get, path = "/v1/replicas", tag = "replicas", operation_id = "list_replicas",
    params(ReplicaQuery),
    responses((status = 200, body = Vec<ReplicaInfo>),
        (status = 404, body = ApiError, description = "`not_found`: no such service")))]
pub async fn replicas(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ReplicaQuery>,
) -> Result<Json<Vec<ReplicaInfo>>, HttpError> {
    if let Some(name) = &q.service
        && s.manager
            .store()
            .service(name)
            .await
            .map_err(HttpError::internal)?
            .is_none()
    {
        return Err(HttpError::not_found(format!(
            "service {name:?} not found; `dash service ls` lists services"
        )));
    }
    let all = s
        .manager
        .store()
        .replicas(q.service.as_deref())
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(all))
}
