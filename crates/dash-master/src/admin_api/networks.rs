//! /v1/networks: the networks services name, what is on them and what every node enforces.

use axum::Json;
use axum::extract::State;
use dash_core::api::{ApiError, NetworkInfo, networks_of};

use super::AppState;
use super::error::{ApiPath, HttpError};

async fn all(s: &AppState) -> Result<Vec<NetworkInfo>, HttpError> {
    let endpoints = crate::route_table::endpoints(s.manager.store())
        .await
        .map_err(HttpError::from)?;
    Ok(networks_of(&endpoints))
}

/// Every network a service names, with its services, their virtual IPs and ready replicas.
#[utoipa::path(get, path = "/v1/networks", tag = "networks", operation_id = "list_networks",
    responses((status = 200, body = Vec<NetworkInfo>)))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<NetworkInfo>>, HttpError> {
    Ok(Json(all(&s).await?))
}

/// One network.
#[utoipa::path(get, path = "/v1/networks/{name}", tag = "networks", operation_id = "inspect_network",
    params(("name" = String, Path, description = "The network's name")),
    responses((status = 200, body = NetworkInfo),
        (status = 404, body = ApiError, description = "`not_found`: no service names this network")))]
pub async fn inspect(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<NetworkInfo>, HttpError> {
    all(&s)
        .await?
        .into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "network {name:?} not found: no service names it; `dash network ls` lists networks"
            ))
        })
}
