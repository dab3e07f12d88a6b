//! /v1/logs/{service}: the merged logs of a service's replicas, each line tagged with its
//! replica, as newline-delimited JSON; `follow=true` keeps streaming new lines.
//!
//! Lines come from the per-container monitor's log files (`<time> <stream> <text>`), whose
//! timestamps sort as text, so merging is a sort on the line.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use dash_core::api::LogLine;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiPath, ApiQuery, HttpError};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Keep streaming new lines: the answer then never ends.
    #[serde(default)]
    follow: bool,
    /// Only the last N lines of each replica.
    #[param(schema_with = super::openapi::unsigned_64)]
    tail: Option<usize>,
}

/// A service's logs, its replicas' lines merged in time order.
#[utoipa::path(get, path = "/v1/logs/{service}", tag = "logs", operation_id = "stream_logs",
    params(("service" = String, Path, description = "The service's name"), LogQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = LogLine,
            description = "newline-delimited JSON, one `LogLine` a line; with `follow`, streamed without end"),
        (status = 404, body = dash_core::api::ApiError, description = "`not_found`: no such service")))]
pub async fn stream(
    State(s): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, HttpError> {
    if s.manager
        .store()
        .service(&service)
        .await
        .map_err(HttpError::internal)?
        .is_none()
    {
        return Err(HttpError::not_found(format!(
            "service {service:?} not found; `dash service ls` lists services"
        )));
    }
    let replicas = s
        .manager
        .store()
        .replicas(Some(&service))
        .await
        .map_err(HttpError::internal)?;
    let mut lines = Vec::new();
    let mut offsets: HashMap<String, u64> = HashMap::new();
    for r in &replicas {
        let (text, end) = match (s.logs)(r.clone(), 0).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(replica = %r.id, error = %e, "log not readable");
                (String::new(), 0)
            }
        };
        offsets.insert(r.id.clone(), end);
        let mut mine: Vec<&str> = text.lines().collect();
        if let Some(n) = q.tail {
            mine = mine.split_off(mine.len().saturating_sub(n));
        }
        lines.extend(mine.into_iter().map(|l| LogLine {
            replica: r.id.clone(),
            line: l.to_string(),
        }));
    }
    lines.sort_by(|a, b| a.line.cmp(&b.line));
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    tokio::spawn(async move {
        for l in &lines {
            if tx.send(json_line(l)).await.is_err() {
                return;
            }
        }
        if !q.follow {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(replicas) = s.manager.store().replicas(Some(&service)).await else {
                return;
            };
            let mut batch = Vec::new();
            for r in replicas {
                let from = offsets.get(&r.id).copied().unwrap_or(0);
                let id = r.id.clone();
                let Ok((text, end)) = (s.logs)(r, from).await else {
                    continue;
                };
                offsets.insert(id.clone(), end);
                batch.extend(text.lines().map(|l| LogLine {
                    replica: id.clone(),
                    line: l.to_string(),
                }));
            }
            batch.sort_by(|a, b| a.line.cmp(&b.line));
            for l in &batch {
                if tx.send(json_line(l)).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|s| (Ok::<_, std::convert::Infallible>(bytes::Bytes::from(s)), rx))
    }));
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(body)
        .map_err(HttpError::internal)
}

fn json_line(l: &LogLine) -> String {
    let mut s = serde_json::to_string(l).unwrap_or_default();
    s.push('\n');
    s
}
