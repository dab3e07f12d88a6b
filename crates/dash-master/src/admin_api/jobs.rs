//! /v1/jobs: services of `kind = "job"` (`crate::jobs`): their runs, a run now, suspend and
//! resume. Applying and removing a job is /v1/services, as for any service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dash_core::api::ApiError;
use dash_core::job::api::{JobInfo, RunInfo};

use super::AppState;
use super::auth::audited;
use super::error::{ApiPath, HttpError};
use crate::jobs::{self, JobError};

impl From<JobError> for HttpError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Rejected(r) => r.into(),
            JobError::Store(e) => e.into(),
        }
    }
}

/// Every job: its schedule, last run and next slot.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", operation_id = "list_jobs",
    responses((status = 200, body = [JobInfo])))]
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<JobInfo>>, HttpError> {
    Ok(Json(jobs::list(s.manager.log()).await?))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{name}", tag = "jobs", operation_id = "inspect_job",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobInfo),
        (status = 400, body = ApiError, description = "`invalid`: the name is a service's, not a job's"),
        (status = 404, body = ApiError, description = "`not_found`: no such job")))]
pub async fn inspect(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<JobInfo>, HttpError> {
    Ok(Json(jobs::inspect(s.manager.log(), &name).await?))
}

/// The runs a job keeps (its `history`), oldest first, each with its attempts.
#[utoipa::path(get, path = "/v1/jobs/{name}/runs", tag = "jobs", operation_id = "list_job_runs",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = [RunInfo]),
        (status = 400, body = ApiError, description = "`invalid`: the name is a service's, not a job's"),
        (status = 404, body = ApiError, description = "`not_found`: no such job")))]
pub async fn runs(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<RunInfo>>, HttpError> {
    Ok(Json(jobs::runs(s.manager.log(), &name).await?))
}

/// A run now, outside the schedule. Held to the job's `concurrency`: refused while a run is in
/// progress with `forbid`; with `replace` the run in progress is stopped.
#[utoipa::path(post, path = "/v1/jobs/{name}/run", tag = "jobs", operation_id = "run_job",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 201, body = RunInfo, description = "The run, recorded: its attempts start next"),
        (status = 400, body = ApiError, description = "`invalid`: the name is a service's, not a job's"),
        (status = 404, body = ApiError, description = "`not_found`: no such job"),
        (status = 409, body = ApiError, description = "`conflict`: a run is in progress and the job's concurrency is `forbid`; the job is suspended; or it is being removed")))]
pub async fn run(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    let info = jobs::run_now(s.manager.log(), &name).await?;
    s.manager.wake();
    let target = format!("job {name} run {}", info.run);
    Ok(audited(
        (StatusCode::CREATED, Json(info)).into_response(),
        target,
    ))
}

/// Suspends a job: no run starts (no slot, no manual run, no run for a new version) until it is
/// resumed; runs in progress go on.
#[utoipa::path(post, path = "/v1/jobs/{name}/suspend", tag = "jobs", operation_id = "suspend_job",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobInfo),
        (status = 400, body = ApiError, description = "`invalid`: the name is a service's, not a job's"),
        (status = 404, body = ApiError, description = "`not_found`: no such job")))]
pub async fn suspend(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    let info = jobs::suspend(s.manager.log(), &name, true).await?;
    s.manager.wake();
    Ok(audited(Json(info), format!("job {name}")))
}

/// Resumes a suspended job: its schedule starts again from now (the slots it missed are not
/// run).
#[utoipa::path(post, path = "/v1/jobs/{name}/resume", tag = "jobs", operation_id = "resume_job",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobInfo),
        (status = 400, body = ApiError, description = "`invalid`: the name is a service's, not a job's"),
        (status = 404, body = ApiError, description = "`not_found`: no such job")))]
pub async fn resume(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, HttpError> {
    let info = jobs::suspend(s.manager.log(), &name, false).await?;
    s.manager.wake();
    Ok(audited(Json(info), format!("job {name}")))
}
