//! /v1/secrets and /v1/configs: named values services get as files (`crate::secrets`); no
//! answer ever holds a value. /v1/data-keys: `dash secret rotate-key`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use dash_core::api::{ApiError, SecretCreate, SecretInfo, SecretUpdate};
use dash_core::secret::Kind;

use super::AppState;
use super::auth::audited;
use super::error::{ApiJson, ApiPath, HttpError};
use crate::secrets::{SecretError, Secrets};

fn error(e: SecretError) -> HttpError {
    match e {
        SecretError::Invalid { field, message } => {
            HttpError::bad_request(&field, format!("{field}: {message}"))
        }
        SecretError::NotFound(m) => HttpError::not_found(m),
        SecretError::Conflict(m) => HttpError::new(StatusCode::CONFLICT, "conflict", m),
        SecretError::Store(e) => e.into(),
        other => HttpError::internal(other),
    }
}

/// A new secret or config (`create`), or a new version of one; the audit names the version.
async fn put(
    s: &AppState,
    kind: Kind,
    name: &str,
    data: &str,
    create: bool,
) -> Result<Response, HttpError> {
    let value = Secrets::decode(data).map_err(error)?;
    let info = s
        .secrets
        .put(kind, name, &value, create)
        .await
        .map_err(error)?;
    let target = format!("{} {} version {}", kind.as_str(), info.name, info.version);
    Ok(audited(Json(info), target))
}

/// A new secret: its value is sealed in the state and shown nowhere afterwards.
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", operation_id = "create_secret",
    request_body = SecretCreate,
    responses((status = 200, body = SecretInfo),
        (status = 400, body = ApiError, description = "`invalid`: a bad `name` (a slash, too long…), `data` not base64 or over 500 KiB"),
        (status = 409, body = ApiError, description = "`conflict`: a secret of that name exists (`PUT` makes a new version)")))]
pub async fn create_secret(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<SecretCreate>,
) -> Result<Response, HttpError> {
    put(&s, Kind::Secret, &req.name, &req.data, true).await
}

/// A new config.
#[utoipa::path(post, path = "/v1/configs", tag = "secrets", operation_id = "create_config",
    request_body = SecretCreate,
    responses((status = 200, body = SecretInfo),
        (status = 400, body = ApiError, description = "`invalid`: a bad `name`, `data` not base64 or over 500 KiB"),
        (status = 409, body = ApiError, description = "`conflict`: a config of that name exists")))]
pub async fn create_config(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<SecretCreate>,
) -> Result<Response, HttpError> {
    put(&s, Kind::Config, &req.name, &req.data, true).await
}

/// A new version of a secret: every service that lists it rolls to it (by its update policy);
/// the old version goes once no replica uses it.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", operation_id = "update_secret",
    params(("name" = String, Path, description = "The secret's name")),
    request_body = SecretUpdate,
    responses((status = 200, body = SecretInfo),
        (status = 400, body = ApiError, description = "`invalid`: `data` not base64 or over 500 KiB"),
        (status = 404, body = ApiError, description = "`not_found`: no such secret")))]
pub async fn update_secret(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SecretUpdate>,
) -> Result<Response, HttpError> {
    put(&s, Kind::Secret, &name, &req.data, false).await
}

/// A new version of a config (the services that list it roll to it).
#[utoipa::path(put, path = "/v1/configs/{name}", tag = "secrets", operation_id = "update_config",
    params(("name" = String, Path, description = "The config's name")),
    request_body = SecretUpdate,
    responses((status = 200, body = SecretInfo),
        (status = 400, body = ApiError, description = "`invalid`: `data` not base64 or over 500 KiB"),
        (status = 404, body = ApiError, description = "`not_found`: no such config")))]
pub async fn update_config(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SecretUpdate>,
) -> Result<Response, HttpError> {
    put(&s, Kind::Config, &name, &req.data, false).await
}

/// Every secret (never a value).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", operation_id = "list_secrets",
    responses((status = 200, body = Vec<SecretInfo>)))]
pub async fn list_secrets(State(s): State<AppState>) -> Result<Json<Vec<SecretInfo>>, HttpError> {
    Ok(Json(s.secrets.list(Kind::Secret).await.map_err(error)?))
}

/// Every config (never a value).
#[utoipa::path(get, path = "/v1/configs", tag = "secrets", operation_id = "list_configs",
    responses((status = 200, body = Vec<SecretInfo>)))]
pub async fn list_configs(State(s): State<AppState>) -> Result<Json<Vec<SecretInfo>>, HttpError> {
    Ok(Json(s.secrets.list(Kind::Config).await.map_err(error)?))
}

/// A secret: versions, sizes, the services that use it (never its value).
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets", operation_id = "inspect_secret",
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 200, body = SecretInfo),
        (status = 404, body = ApiError, description = "`not_found`: no such secret")))]
pub async fn inspect_secret(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SecretInfo>, HttpError> {
    Ok(Json(
        s.secrets.get(Kind::Secret, &name).await.map_err(error)?,
    ))
}

/// A config: versions, sizes, the services that use it.
#[utoipa::path(get, path = "/v1/configs/{name}", tag = "secrets", operation_id = "inspect_config",
    params(("name" = String, Path, description = "The config's name")),
    responses((status = 200, body = SecretInfo),
        (status = 404, body = ApiError, description = "`not_found`: no such config")))]
pub async fn inspect_config(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SecretInfo>, HttpError> {
    Ok(Json(
        s.secrets.get(Kind::Config, &name).await.map_err(error)?,
    ))
}

/// Removes a secret and every version of it; refused while a service lists it.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", operation_id = "remove_secret",
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 204, description = "removed"),
        (status = 404, body = ApiError, description = "`not_found`: no such secret"),
        (status = 409, body = ApiError, description = "`conflict`: a service lists it")))]
pub async fn remove_secret(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, HttpError> {
    s.secrets.remove(Kind::Secret, &name).await.map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a config; refused while a service lists it.
#[utoipa::path(delete, path = "/v1/configs/{name}", tag = "secrets", operation_id = "remove_config",
    params(("name" = String, Path, description = "The config's name")),
    responses((status = 204, description = "removed"),
        (status = 404, body = ApiError, description = "`not_found`: no such config"),
        (status = 409, body = ApiError, description = "`conflict`: a service lists it")))]
pub async fn remove_config(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, HttpError> {
    s.secrets.remove(Kind::Config, &name).await.map_err(error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `dash secret rotate-key`: a new data key seals every kept secret and config again; the old
/// keys are dropped. Answers the new key's id.
#[utoipa::path(post, path = "/v1/data-keys", tag = "secrets", operation_id = "rotate_data_key",
    responses((status = 200, body = u64, content_type = "application/json", description = "the new data key's id"),
        (status = 409, body = ApiError, description = "`conflict`: secrets changed during the rotation; rotate again")))]
pub async fn rotate_key(State(s): State<AppState>) -> Result<Response, HttpError> {
    let id = s.secrets.rotate_key().await.map_err(error)?;
    Ok(audited(Json(id), format!("data key {id}")))
}
