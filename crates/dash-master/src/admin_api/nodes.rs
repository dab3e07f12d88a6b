//! /v1/nodes.

use axum::Json;
use axum::extract::State;
use dash_core::api::NodeInfo;

use super::AppState;
use super::error::HttpError;

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
