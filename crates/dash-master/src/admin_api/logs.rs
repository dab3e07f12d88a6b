//! /v1/logs/{name}: the merged logs of a service's replicas, each line tagged with its
//! replica, as newline-delimited JSON; `follow=true` keeps streaming new lines. With
//! `previous=true`, the logs of the service's removed replicas (replaced by an update or a
//! rollback, scaled down, drained: their nodes keep them for a while). A replica's id instead
//! of a service's name gives that replica's log, live or removed.
//!
//! Lines come from the per-container monitor's log files (`<time> <stream> <text>`), whose
//! timestamps sort as text, so merging is a sort on the line.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use dash_core::api::{DesiredState, LogLine, ReplicaInfo, ReplicaState};
use dash_store::RemovedReplica;
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
    /// The service's removed replicas instead of its live ones (as `kubectl logs --previous`).
    #[serde(default)]
    previous: bool,
    /// Only lines stamped at or after this time, in ms since the epoch (`--since 10m`).
    #[param(schema_with = super::openapi::unsigned_64)]
    since_ms: Option<u64>,
    /// Only lines stamped at or before this time, in ms since the epoch; with `follow`, the
    /// answer ends once this time has passed.
    #[param(schema_with = super::openapi::unsigned_64)]
    until_ms: Option<u64>,
    /// Only the attempts of this run of a job (`dash logs JOB --run 3`): kept as long as the
    /// run is in the job's history.
    #[param(schema_with = super::openapi::unsigned_64)]
    run: Option<u64>,
}

/// Which lines a request keeps, by their stamps (`<RFC 3339 ms UTC> <stream> <text>`, which
/// sort as text: the bounds are compared in that form).
struct Window {
    since: Option<String>,
    until: Option<String>,
}

impl Window {
    fn of(q: &LogQuery) -> Window {
        Window {
            since: q.since_ms.map(dash_core::clock::utc_ms),
            until: q.until_ms.map(dash_core::clock::utc_ms),
        }
    }

    fn keeps(&self, line: &str) -> bool {
        let stamp = line.split(' ').next().unwrap_or("");
        self.since.as_deref().is_none_or(|s| stamp >= s)
            && self.until.as_deref().is_none_or(|u| stamp <= u)
    }
}

/// Whose log lines a request gets.
enum Source {
    /// A service's live replicas, listed again on every follow step.
    Service(String),
    /// Fixed replicas: one named replica (live: followed; removed: not), or a service's
    /// removed ones.
    Replicas(Vec<ReplicaInfo>, bool),
    /// The attempts of a job's run, listed again on every follow step (a retry joins in);
    /// followed while the run is in progress.
    Run { job: String, run: u64, live: bool },
}

/// A removed replica as the log reader takes it (it needs its id and node).
fn removed_info(r: RemovedReplica) -> ReplicaInfo {
    ReplicaInfo {
        id: r.id,
        service: r.service,
        version: r.version,
        node: r.node,
        desired: DesiredState::Remove,
        state: ReplicaState::Exited,
        ip: None,
        restarts: 0,
        exit_code: None,
        created_ms: r.created_ms,
        started_ms: None,
        message: String::new(),
        run: None,
        start_at_ms: None,
    }
}

/// What `name` (a service's name or a replica's id) and `previous` ask for.
async fn source(
    s: &AppState,
    name: &str,
    previous: bool,
    run: Option<u64>,
) -> Result<Source, HttpError> {
    let store = s.manager.store();
    if let Some(run) = run {
        return run_source(s, name, run).await;
    }
    let service = store.service(name).await.map_err(HttpError::internal)?;
    let removed = store
        .removed_replicas(name)
        .await
        .map_err(HttpError::internal)?;
    if previous {
        if removed.is_empty() {
            let why = if service.is_some() {
                format!("service {name:?} has no removed replicas whose logs are kept")
            } else {
                format!(
                    "no service {name:?} with removed replicas; `dash service ls` lists services"
                )
            };
            return Err(HttpError::not_found(why));
        }
        return Ok(Source::Replicas(
            removed.into_iter().map(removed_info).collect(),
            false,
        ));
    }
    if service.is_some() {
        return Ok(Source::Service(name.to_owned()));
    }
    if let Some(r) = store.replica(name).await.map_err(HttpError::internal)? {
        return Ok(Source::Replicas(vec![r], true));
    }
    if let Some(r) = store
        .removed_replica(name)
        .await
        .map_err(HttpError::internal)?
    {
        return Ok(Source::Replicas(vec![removed_info(r)], false));
    }
    Err(HttpError::not_found(format!(
        "no service or replica {name:?}; `dash service ls` lists services, `dash ps` replicas"
    )))
}

/// The attempts of run `run` of job `name` (followed while the run is in progress).
async fn run_source(s: &AppState, name: &str, run: u64) -> Result<Source, HttpError> {
    let store = s.manager.store();
    let row = store.service(name).await.map_err(HttpError::internal)?;
    let Some(row) = row.filter(|r| r.spec.is_job()) else {
        return Err(HttpError::not_found(format!(
            "no job {name:?}: --run picks a run of a job; `dash job ls` lists jobs"
        )));
    };
    let runs = store
        .job_runs(Some(name))
        .await
        .map_err(HttpError::internal)?;
    let Some(found) = runs.iter().find(|r| r.run == run) else {
        let kept = runs
            .iter()
            .map(|r| r.run.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let history = row.spec.job.as_ref().map_or(0, |j| j.history);
        return Err(HttpError::not_found(format!(
            "job {name} has no run {run} in its history (history = {history}; kept: {}); `dash job history {name}` lists them",
            if kept.is_empty() { "none" } else { &kept }
        )));
    };
    Ok(Source::Run {
        job: name.to_string(),
        run,
        live: found.state == dash_core::job::RunState::Running,
    })
}

impl Source {
    /// The replicas to read now.
    async fn replicas(&self, s: &AppState) -> Option<Vec<ReplicaInfo>> {
        match self {
            Source::Service(name) => s.manager.store().replicas(Some(name)).await.ok(),
            Source::Replicas(list, _) => Some(list.clone()),
            Source::Run { job, run, .. } => {
                let all = s.manager.store().replicas(Some(job)).await.ok()?;
                Some(all.into_iter().filter(|r| r.run == Some(*run)).collect())
            }
        }
    }

    fn followable(&self) -> bool {
        match self {
            Source::Service(_) => true,
            Source::Replicas(_, live) | Source::Run { live, .. } => *live,
        }
    }
}

/// A service's logs, its replicas' lines merged in time order; or one replica's.
#[utoipa::path(get, path = "/v1/logs/{service}", tag = "logs", operation_id = "stream_logs",
    params(("service" = String, Path, description = "A service's name, or a replica's id (live or removed)"), LogQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = LogLine,
            description = "newline-delimited JSON, one `LogLine` a line; with `follow`, streamed without end"),
        (status = 400, body = dash_core::api::ApiError, description = "`invalid`: a parameter that is not what it should be (the message names it)"),
        (status = 404, body = dash_core::api::ApiError, description = "`not_found`: no such service or replica, or (with `previous`) no removed replica whose logs are kept")))]
pub async fn stream(
    State(s): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, HttpError> {
    let source = source(&s, &service, q.previous, q.run).await?;
    let replicas = source.replicas(&s).await.unwrap_or_default();
    let window = Window::of(&q);
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
        let mut mine: Vec<&str> = text.lines().filter(|l| window.keeps(l)).collect();
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
        if !q.follow || !source.followable() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if q.until_ms
                .is_some_and(|t| crate::now_ms() > t.saturating_add(1000))
            {
                // A second's grace for lines stamped before the bound but read after it.
                return;
            }
            let Some(replicas) = source.replicas(&s).await else {
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
                batch.extend(text.lines().filter(|l| window.keeps(l)).map(|l| LogLine {
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
