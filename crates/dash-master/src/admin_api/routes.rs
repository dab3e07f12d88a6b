//! /v1/routes: the proxy's routing table with its live counters.

use axum::Json;
use axum::extract::State;
use dash_core::api::RouteInfo;

use super::AppState;

/// The proxy's routes, their counters and upstreams.
#[utoipa::path(get, path = "/v1/routes", tag = "routes", operation_id = "list_routes",
    responses((status = 200, body = Vec<RouteInfo>)))]
pub async fn list(State(s): State<AppState>) -> Json<Vec<RouteInfo>> {
    Json((s.route_stats)())
}
