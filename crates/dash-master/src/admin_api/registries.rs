//! /v1/registries: credentials for pulling from registries.

use axum::extract::State;
use axum::http::StatusCode;
use dash_core::api::{ApiError, LoginRequest};

use super::AppState;
use super::error::{ApiJson, ApiPath, HttpError};
use crate::registry_logins::KeepError;

/// Checks the credentials against the registry, then keeps them in the cluster's state,
/// sealed with its data key: every master pulls with them.
#[utoipa::path(post, path = "/v1/registries/login", tag = "registries", operation_id = "login_registry",
    request_body = LoginRequest,
    responses((status = 204, description = "checked and stored"),
        (status = 400, body = ApiError, description = "`invalid`: `registry` is not `host[:port]` (`registry` or `reference`)"),
        (status = 401, body = ApiError, description = "`unauthorized`: the registry refused the credentials, or the user name is empty or has a ':'"),
        (status = 404, body = ApiError, description = "`not_found`: the registry answered 404 where a registry would not"),
        (status = 502, body = ApiError, description = "`registry`: the registry could not be reached or answered something unexpected"),
        (status = 503, body = ApiError, description = "`unavailable`: the state could not take them (no leader)")))]
pub async fn login(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<axum::response::Response, HttpError> {
    if req.registry.trim().is_empty() || req.registry.contains('/') {
        return Err(HttpError::bad_request(
            "registry",
            format!("registry {:?}: expected host[:port]", req.registry),
        ));
    }
    let registry = s
        .puller
        .verify_login(&req.registry, &req.username, &req.password)
        .await
        .map_err(super::images::pull_error)?;
    s.registry_logins
        .keep(&registry, &req.username, &req.password)
        .await
        .map_err(|e| match e {
            KeepError::Store(e) => e.into(),
            other => HttpError::internal(other),
        })?;
    tracing::info!(%registry, user = %req.username, "logged in");
    Ok(super::auth::audited(
        StatusCode::NO_CONTENT,
        format!("registry {registry} (user {})", req.username),
    ))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RegistryPath {
    /// `host[:port]` as for login (a scheme before it and a path after it are dropped).
    #[param(schema_with = dash_core::api::patterns::registry_in_path, required = true)]
    registry: String,
}

/// Forgets the stored credentials for a registry (none stored is no error).
#[utoipa::path(delete, path = "/v1/registries/{registry}", tag = "registries", operation_id = "logout_registry",
    params(RegistryPath),
    responses((status = 204, description = "none are stored now"),
        (status = 400, body = ApiError, description = "`invalid`: `registry` is not `host[:port]` (`reference`)"),
        (status = 502, body = ApiError, description = "`registry`: the credentials file could not be read or written"),
        (status = 503, body = ApiError, description = "`unavailable`: the state could not take the change (no leader)")))]
pub async fn logout(
    State(s): State<AppState>,
    ApiPath(RegistryPath { registry }): ApiPath<RegistryPath>,
) -> Result<StatusCode, HttpError> {
    let registry = dash_image::registry::check_registry(&registry)
        .map_err(|e| HttpError::bad_request("reference", e.to_string()))?;
    s.registry_logins.forget(&registry).await?;
    // An older release's file of this master too.
    s.puller
        .logout(&registry)
        .map_err(super::images::pull_error)?;
    Ok(StatusCode::NO_CONTENT)
}
