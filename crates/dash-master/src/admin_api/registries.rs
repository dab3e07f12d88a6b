//! /v1/registries: credentials for pulling from registries.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use dash_core::api::LoginRequest;

use super::AppState;
use super::error::{ApiJson, HttpError};

/// Checks the credentials against the registry, then stores them (mode 0600 on the server).
#[utoipa::path(post, path = "/v1/registries/login", request_body = LoginRequest,
    responses((status = 204), (status = 401, body = dash_core::api::ApiError), (status = 502, body = dash_core::api::ApiError)))]
pub async fn login(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<StatusCode, HttpError> {
    if req.registry.trim().is_empty() || req.registry.contains('/') {
        return Err(HttpError::bad_request(
            "registry",
            format!("registry {:?}: expected host[:port]", req.registry),
        ));
    }
    s.puller
        .login(&req.registry, &req.username, &req.password)
        .await
        .map_err(super::images::pull_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/registries/{registry}", params(("registry" = String, Path)),
    responses((status = 204)))]
pub async fn logout(
    State(s): State<AppState>,
    Path(registry): Path<String>,
) -> Result<StatusCode, HttpError> {
    s.puller
        .logout(&registry)
        .map_err(super::images::pull_error)?;
    Ok(StatusCode::NO_CONTENT)
}
