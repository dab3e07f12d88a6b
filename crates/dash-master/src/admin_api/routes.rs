//! /v1/routes: the routing table with the counters of every node's proxy, summed per route,
//! or per node with `per_node=true`.

use axum::Json;
use axum::extract::State;
use dash_core::api::{RouteInfo, sum_routes};
use serde::Deserialize;

use super::AppState;
use super::error::ApiQuery;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoutesQuery {
    /// One row per route and node (`node` set) instead of the sum over the nodes.
    #[serde(default)]
    per_node: bool,
}

/// The routes, their counters and upstreams: this master's proxy live, every other node's as
/// it last reported (every 2 s; a node silent for 15 s is left out).
#[utoipa::path(get, path = "/v1/routes", tag = "routes", operation_id = "list_routes",
    params(RoutesQuery),
    responses((status = 200, body = Vec<RouteInfo>)))]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<RoutesQuery>,
) -> Json<Vec<RouteInfo>> {
    let own = (s.route_stats)();
    let mut rows: Vec<RouteInfo> = own
        .iter()
        .cloned()
        .map(|mut r| {
            r.node = Some(s.node.clone());
            r
        })
        .collect();
    for (node, stats) in s.metrics.route_stats() {
        if node == s.node {
            continue;
        }
        rows.extend(stats.into_iter().map(|mut r| {
            // Workers' proxies do not know the route's port and prefix handling: ours does.
            if let Some(m) = own
                .iter()
                .find(|m| m.host == r.host && m.path_prefix == r.path_prefix)
            {
                r.port = m.port;
                r.strip_prefix = m.strip_prefix;
            }
            r.node = Some(node.clone());
            r
        }));
    }
    if q.per_node {
        rows.sort_by(|a, b| {
            (&a.host, &a.path_prefix, &a.node).cmp(&(&b.host, &b.path_prefix, &b.node))
        });
        Json(rows)
    } else {
        Json(sum_routes(rows))
    }
}
