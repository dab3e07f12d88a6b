//! /v1/stats: the resource use of running replicas (`dash stats`), from what their nodes
//! measured last (every 2 s).

use axum::Json;
use axum::extract::State;
use dash_core::api::{ReplicaState, ReplicaStats, ServiceHistory};

use super::AppState;
use super::error::{ApiPath, ApiQuery, HttpError};

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Only this service's replicas.
    service: Option<String>,
}

/// The resource use of running replicas, as their nodes measured it last.
#[utoipa::path(get, path = "/v1/stats", tag = "stats", operation_id = "list_stats",
    params(StatsQuery),
    responses((status = 200, body = Vec<ReplicaStats>),
        (status = 404, body = dash_core::api::ApiError, description = "`not_found`: no such service")))]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Vec<ReplicaStats>>, HttpError> {
    let store = s.manager.store();
    let services = store.services().await.map_err(HttpError::internal)?;
    if let Some(name) = &q.service
        && !services.iter().any(|svc| svc.spec.name.as_str() == name)
    {
        return Err(HttpError::not_found(format!(
            "service {name:?} not found; `dash service ls` lists services"
        )));
    }
    let samples = s.metrics.replicas();
    // Requests per replica, through the proxies of every node.
    let mut requests: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for (_, routes) in s.metrics.route_stats() {
        for u in routes.iter().flat_map(|r| &r.upstreams) {
            *requests.entry(u.replica.clone()).or_default() += u.requests;
        }
    }
    let replicas = store
        .replicas(q.service.as_deref())
        .await
        .map_err(HttpError::internal)?;
    let out = replicas
        .into_iter()
        .filter(|r| {
            matches!(
                r.state,
                ReplicaState::Running | ReplicaState::Healthy | ReplicaState::Unhealthy
            )
        })
        .map(|r| {
            let resources = services
                .iter()
                .find(|svc| svc.spec.name.as_str() == r.service)
                .map(|svc| svc.spec.resources)
                .unwrap_or_default();
            // Only the replica's own node speaks for it.
            let sample = samples
                .get(&r.id)
                .filter(|(node, _, _)| r.node.as_deref() == Some(node.as_str()));
            let cpu_percent = sample.and_then(|(_, s, _)| s.cpu_percent);
            ReplicaStats {
                cpu_percent_of_limit: cpu_percent
                    .map(|c| dash_core::autoscale::cpu_of_limit(c, resources.cpu_millis)),
                cpu_percent,
                memory_bytes: sample.map(|(_, s, _)| s.memory_bytes),
                memory_limit_bytes: (resources.memory_bytes > 0).then_some(resources.memory_bytes),
                sampled_ms: sample.map(|(_, _, at)| *at),
                net_rx_bytes: sample.and_then(|(_, s, _)| s.net_rx_bytes),
                net_tx_bytes: sample.and_then(|(_, s, _)| s.net_tx_bytes),
                requests: requests.get(&r.id).copied(),
                restarts: r.restarts,
                state: r.state,
                replica: r.id,
                service: r.service,
                node: r.node,
            }
        })
        .collect();
    Ok(Json(out))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How far back, in seconds: 10 to 3600 (the default: the hour that is kept).
    #[param(minimum = 10, maximum = 3600)]
    window_s: Option<u64>,
}

/// A service's last hour (or `window_s`): CPU, memory and requests per second of the service
/// and of each of its replicas, in 10 s buckets (what `dash top` and the portal chart).
#[utoipa::path(get, path = "/v1/services/{name}/history", tag = "stats", operation_id = "service_history",
    params(("name" = String, Path, description = "The service's name"), HistoryQuery),
    responses((status = 200, body = ServiceHistory),
        (status = 400, body = dash_core::api::ApiError, description = "`invalid`: `window_s` outside 10 to 3600"),
        (status = 404, body = dash_core::api::ApiError, description = "`not_found`: no such service")))]
pub async fn history(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<ServiceHistory>, HttpError> {
    let window_s = q.window_s.unwrap_or(3600);
    if !(10..=3600).contains(&window_s) {
        return Err(HttpError::bad_request(
            "window_s",
            format!(
                "window_s={window_s} is outside 10 to 3600: the last hour is kept, in 10 s buckets"
            ),
        ));
    }
    let now = crate::now_ms();
    let history = s.metrics.history().service(&name, window_s * 1000, now);
    let exists = s
        .manager
        .store()
        .service(&name)
        .await
        .map_err(HttpError::internal)?
        .is_some();
    match history {
        Some(h) => Ok(Json(h)),
        // A service nobody measured yet (no replica has run): an empty history.
        None if exists => Ok(Json(ServiceHistory {
            service: name,
            resolution_ms: crate::service_state::history::RESOLUTION_MS,
            points: Vec::new(),
            replicas: Vec::new(),
        })),
        None => Err(HttpError::not_found(format!(
            "service {name:?} not found; `dash service ls` lists services"
        ))),
    }
}
