//! /v1/stats: the resource use of running replicas (`dash stats`), from what their nodes
//! measured last (every 2 s).

use axum::Json;
use axum::extract::State;
use dash_core::api::{ReplicaState, ReplicaStats};

use super::AppState;
use super::error::{ApiQuery, HttpError};

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
                replica: r.id,
                service: r.service,
                node: r.node,
            }
        })
        .collect();
    Ok(Json(out))
}
