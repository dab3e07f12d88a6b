//! /v1/services and /v1/replicas.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dash_core::api::{ApplyRequest, ApplyResponse, ReplicaInfo, ScaleRequest, ServiceInfo};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiJson, ApiQuery, HttpError};

/// Create or update a service from a service file.
#[utoipa::path(post, path = "/v1/services", request_body = ApplyRequest,
    responses((status = 200, body = ApplyResponse), (status = 400, body = dash_core::api::ApiError)))]
pub async fn apply(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> Result<Json<ApplyResponse>, HttpError> {
    Ok(Json(s.manager.apply(&req).await?))
}

#[utoipa::path(get, path = "/v1/services", responses((status = 200, body = Vec<ServiceInfo>)))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<ServiceInfo>>, HttpError> {
    Ok(Json(s.manager.list().await?))
}

#[utoipa::path(get, path = "/v1/services/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ServiceInfo), (status = 404, body = dash_core::api::ApiError)))]
pub async fn inspect(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceInfo>, HttpError> {
    Ok(Json(s.manager.inspect(&name).await?))
}

#[utoipa::path(delete, path = "/v1/services/{name}", params(("name" = String, Path)),
    responses((status = 202), (status = 404, body = dash_core::api::ApiError)))]
pub async fn remove(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, HttpError> {
    s.manager.remove(&name).await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(post, path = "/v1/services/{name}/scale", params(("name" = String, Path)), request_body = ScaleRequest,
    responses((status = 202), (status = 404, body = dash_core::api::ApiError)))]
pub async fn scale(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ScaleRequest>,
) -> Result<StatusCode, HttpError> {
    s.manager.scale(&name, req.replicas).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The version a rollback made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RollbackResponse {
    pub service: String,
    pub version: u64,
}

#[utoipa::path(post, path = "/v1/services/{name}/rollback", params(("name" = String, Path)),
    responses((status = 200, body = RollbackResponse), (status = 400, body = dash_core::api::ApiError), (status = 404, body = dash_core::api::ApiError)))]
pub async fn rollback(
    State(s): State<AppState>,
    Path(name): Path<String>,
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
pub struct ReplicaQuery {
    /// Only this service's replicas.
    service: Option<String>,
}

#[utoipa::path(get, path = "/v1/replicas", params(ReplicaQuery), responses((status = 200, body = Vec<ReplicaInfo>)))]
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
