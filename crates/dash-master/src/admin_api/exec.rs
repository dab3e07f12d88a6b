//! /v1/replicas/{id}/exec: `dash exec`. The request upgrades the connection (`Upgrade:
//! dash-exec`); then both sides speak the frames of `dash_core::api::exec_frame`: stdin from
//! the client, stdout, stderr and the exit status from the server. The session runs where
//! the replica is: in process on this node, through worker_api on another.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use dash_core::api::{ExecEvent, ExecRequest, exec_frame};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::AppState;
use super::error::{ApiPath, ApiQuery, HttpError};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecQuery {
    /// The command and its arguments as a JSON array, e.g. `["sh","-c","ls /"]` (the document
    /// declares it as JSON content; see `openapi.rs`).
    command: String,
    /// Give the command a terminal.
    #[serde(default)]
    tty: bool,
    /// The terminal's initial rows (with `tty`; 0 leaves the runtime's default).
    #[serde(default)]
    #[param(maximum = 65535)]
    rows: u16,
    /// The terminal's initial columns (with `tty`; 0 leaves the runtime's default).
    #[serde(default)]
    #[param(maximum = 65535)]
    cols: u16,
}

/// Runs a command in a replica over the upgraded connection (`dash exec`).
#[utoipa::path(get, path = "/v1/replicas/{id}/exec", tag = "replicas", operation_id = "exec_replica",
    params(("id" = String, Path, description = "The replica's id (`dash ps`)"), ExecQuery,
        ("Upgrade" = String, Header, pattern = "^[Dd][Aa][Ss][Hh]-[Ee][Xx][Ee][Cc]$",
            description = "`dash-exec`, in any case (with `Connection: Upgrade`)")),
    responses((status = 101, description = "the connection carries exec frames from now on"),
        (status = 400, body = dash_core::api::ApiError, description = "`invalid`: `command` is not a non-empty JSON array of strings (`command`), or no `Upgrade: dash-exec` (`upgrade`)"),
        (status = 404, body = dash_core::api::ApiError, description = "`not_found`: no such replica"),
        (status = 409, body = dash_core::api::ApiError, description = "`conflict`: the replica is not placed on a node yet, or its session could not be started")))]
pub async fn exec(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExecQuery>,
    mut req: Request,
) -> Result<Response, HttpError> {
    let command: Vec<String> = serde_json::from_str(&q.command).map_err(|e| {
        HttpError::bad_request(
            "command",
            format!("command={:?}: not a JSON array of strings ({e})", q.command),
        )
    })?;
    if command.is_empty() {
        return Err(HttpError::bad_request(
            "command",
            "an empty command; give e.g. [\"sh\"]",
        ));
    }
    let wants_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("dash-exec"));
    if !wants_upgrade {
        return Err(HttpError::bad_request(
            "upgrade",
            "exec needs `Connection: Upgrade` and `Upgrade: dash-exec` (use `dash exec`)",
        ));
    }
    let replica = s
        .manager
        .store()
        .replica(&id)
        .await
        .map_err(HttpError::internal)?
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "replica {id:?} not found; `dash ps` lists replicas"
            ))
        })?;
    if replica.node.is_none() {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("replica {id} is not placed on a node yet"),
        ));
    }
    let session = (s.exec)(
        replica,
        ExecRequest {
            command,
            tty: q.tty,
            rows: q.rows,
            cols: q.cols,
        },
    )
    .await
    .map_err(|e| HttpError::new(StatusCode::CONFLICT, "conflict", e))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioIo::new(upgraded);
        let (mut rd, mut wr) = tokio::io::split(io);
        let stdin = session.stdin;
        let mut events = session.events;
        let input = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match exec_frame::decode(&mut buf) {
                        Ok(Some((kind, payload))) => {
                            let Some(input) = exec_frame::to_input(kind, payload) else {
                                continue;
                            };
                            if stdin.send(input).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
            }
            // The client is gone: dropping `stdin` hangs the session up (a terminal) or
            // closes the command's stdin (pipes).
        });
        while let Some(ev) = events.recv().await {
            let last = matches!(ev, ExecEvent::Exit(_) | ExecEvent::Error(_));
            if wr.write_all(&exec_frame::encode_event(&ev)).await.is_err() {
                break;
            }
            if last {
                break;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        input.abort();
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "dash-exec")
        .body(Body::empty())
        .map_err(HttpError::internal)
}
