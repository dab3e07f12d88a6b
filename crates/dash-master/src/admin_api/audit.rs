//! /v1/audit: who changed what through the admin API, when and from where (`dash audit`);
//! /v1/whoami: the caller itself (`dash login` checks its token with it).

use axum::Json;
use axum::extract::State;
use dash_core::api::{ApiError, AuditEntry, WhoAmI};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiQuery, HttpError};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries recorded at or after this time (milliseconds since the epoch; 0: all kept).
    #[param(schema_with = super::openapi::unsigned_64)]
    since_ms: Option<u64>,
    /// At most this many, the newest (1 to 10,000; default 1,000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// The audit log: every write through the admin API and every refusal of one for its role,
/// oldest first. The state keeps the latest 10,000 entries, on every master.
#[utoipa::path(get, path = "/v1/audit", tag = "nodes", operation_id = "audit",
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>),
        (status = 400, body = ApiError, description = "`invalid`: a `limit` of 0 or over 10,000 (`limit`)")))]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, HttpError> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=dash_core::command::AUDIT_KEPT as u32).contains(&limit) {
        return Err(HttpError::bad_request(
            "limit",
            format!("{limit} is out of range: ask for 1 to 10000 entries"),
        ));
    }
    let entries = s
        .manager
        .store()
        .audit(q.since_ms.unwrap_or(0), limit)
        .await
        .map_err(HttpError::internal)?;
    Ok(Json(entries))
}

/// The caller: who its token says it is, and its role.
#[utoipa::path(get, path = "/v1/whoami", tag = "nodes", operation_id = "whoami",
    responses((status = 200, body = WhoAmI)))]
pub async fn whoami(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<super::Caller>,
) -> Json<WhoAmI> {
    Json(WhoAmI {
        who: caller.who,
        role: caller.access.as_str().into(),
        master: s.node.clone(),
    })
}
