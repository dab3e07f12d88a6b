//! Bearer-token authentication for every route but /healthz.
//!
//! The token is generated at first start into `<data-dir>/admin.token` (mode 0600).

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::HttpError;

/// Reads the admin token, creating it (32 random bytes, hex) on first start.
pub fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    dash_rpc::pki::write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

pub async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, HttpError> {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        // Constant time: the token cannot be guessed byte by byte from timings.
        Some(t) if dash_rpc::pki::constant_time_eq(t.trim(), &state.token) => {
            Ok(next.run(req).await)
        }
        Some(_) => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong; it is in <data-dir>/admin.token",
        )),
        None => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>`; the token is in <data-dir>/admin.token (DASH_TOKEN for the CLI)",
        )),
    }
}

/// Reads of the replicated state are linearizable (decision 0012): before a GET of services,
/// replicas, nodes, tokens, networks or a backup, a master of a cluster passes the read barrier (the
/// leader's read index, applied here). `?stale=true` reads this master's state as it is (it
/// may lag the leader by its replication delay; it answers while there is no leader). Other
/// routes read what is not replicated (images, stats, routes, logs, events) or report on the
/// masters themselves (`/v1/cluster`, which must answer without a leader).
pub async fn linearizable(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, HttpError> {
    let path = req.uri().path();
    let replicated = [
        "/v1/services",
        "/v1/replicas",
        "/v1/nodes",
        "/v1/tokens",
        "/v1/backup",
        "/v1/networks",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let stale = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "stale=true" || kv == "stale"));
    if req.method() == axum::http::Method::GET
        && replicated
        && !stale
        && !path.ends_with("/exec")
        && let Some(raft) = state.manager.log().raft()
    {
        raft.read_barrier().await.map_err(|e| {
            HttpError::unavailable(format!(
                "{e}; add ?stale=true to read this master's state as it is"
            ))
        })?;
    }
    Ok(next.run(req).await)
}
