//! The simulation's control endpoint (HTTP on `--control`, loopback by default): what
//! `dash sim kill` and `dash sim report` talk to.
//!
//! - `GET /v1/sim/report` → [`Report`](crate::stats::Report)
//! - `POST /v1/sim/kill` with `{"workers": N}` → [`Killed`](crate::fleet::Killed), or 400
//!   with the admin API's error body (`code`, `message`) naming the value and what is allowed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dash_core::api::ApiError;
use dash_core::sim::KillRequest;

use crate::fleet::Fleet;

pub fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/v1/sim/report", get(report))
        .route("/v1/sim/kill", post(kill))
        .with_state(fleet)
}

async fn report(State(fleet): State<Arc<Fleet>>) -> Response {
    Json(fleet.report().await).into_response()
}

async fn kill(
    State(fleet): State<Arc<Fleet>>,
    body: Result<Json<KillRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return invalid(format!("the body must be {{\"workers\": N}}: {e}"));
        }
    };
    match fleet.kill(req.workers).await {
        Ok(k) => Json(k).into_response(),
        Err(message) => invalid(message),
    }
}

fn invalid(message: String) -> Response {
    let body = ApiError {
        code: "invalid".into(),
        message,
        field: Some("workers".into()),
        diagnostics: Vec::new(),
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
