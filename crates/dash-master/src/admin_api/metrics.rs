//! /metrics: Prometheus text (role read), and the middleware that counts every admin API
//! request by method, matched route and status code.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The master's series (instruments, the state, Raft), then its node's (replicas, proxy).
#[utoipa::path(get, path = "/metrics", tag = "stats", operation_id = "metrics",
    responses((status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8", body = String,
        description = "the Prometheus text format (version 0.0.4)")))]
pub async fn scrape(State(s): State<AppState>) -> Response {
    let log = s.manager.log();
    let state = crate::telemetry::state_series(
        s.manager.store(),
        log.raft(),
        s.metrics.history().buckets(),
    )
    .await;
    let node = match &s.node_series {
        Some(series) => Some(series().await),
        None => None,
    };
    (
        [(header::CONTENT_TYPE, dash_rpc::exposition::CONTENT_TYPE)],
        crate::telemetry::render(state, node),
    )
        .into_response()
}

/// The route a request matched, carried on its response to [`count`] (which runs before
/// routing, so that refused requests are counted too).
#[derive(Clone)]
struct Matched(String);

/// Inside the router: notes the matched route template on the response.
pub async fn note_route(request: Request, next: Next) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut response = next.run(request).await;
    if let Some(m) = matched {
        response.extensions_mut().insert(Matched(m));
    }
    response
}

/// Outermost: counts the request and its latency to the response headers. A request refused
/// before routing (401, 403) or matching no route is counted under its path only if that is
/// one of the fixed ones, else as `other`: a series per unknown path would let anyone grow
/// the metrics without bound.
pub async fn count(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Methods are open-ended tokens in HTTP: any other than the usual counts as `other`, for
    // the same reason as paths.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let route = match response.extensions().get::<Matched>() {
        Some(Matched(m)) => m.clone(),
        None if ["/healthz", "/metrics", "/openapi.json", "/v1/login", "/ui"]
            .contains(&path.as_str()) =>
        {
            path
        }
        None => "other".to_string(),
    };
    crate::telemetry::instruments().api_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
