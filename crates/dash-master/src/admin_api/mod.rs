//! admin_api: the HTTP JSON API for the CLI (axum), under /v1, with its OpenAPI document at
//! /openapi.json. Every route but /healthz needs a bearer token whose role allows it, and
//! writes are audited (`auth`). Handlers parse, call the
//! service_manager (or the image store), and map errors in `error.rs`; nothing else.

mod audit;
mod auth;
mod cluster;
mod error;
mod events;
mod exec;
mod images;
mod jobs;
mod listener;
mod login;
mod logs;
mod metrics;
mod networks;
mod nodes;
mod openapi;
mod registries;
mod routes;
mod secrets;
mod services;
mod stats;
mod ui;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use dash_core::api::ReplicaInfo;
use dash_image::ImageStore;

pub use auth::{Access, Caller, load_or_create_token, required};
pub use listener::{ListenAddr, Peer, TlsListener};

use crate::message_queue::MessageQueue;
use crate::service_manager::ServiceManager;

/// Complete log lines of a replica from a byte offset, and the offset after them: from the
/// local file for replicas on this node, through worker_api for others.
pub type LogReader = Arc<
    dyn Fn(ReplicaInfo, u64) -> futures::future::BoxFuture<'static, Result<(String, u64), String>>
        + Send
        + Sync,
>;

/// Starts an exec session in a replica, wherever it runs.
pub type ExecStarter = Arc<
    dyn Fn(
            ReplicaInfo,
            dash_core::api::ExecRequest,
        ) -> futures::future::BoxFuture<
            'static,
            Result<crate::worker_clients::ExecChannels, String>,
        > + Send
        + Sync,
>;

/// The proxy's routes and counters (the proxy runs in the worker part of this process).
pub type RouteStats = Arc<dyn Fn() -> Vec<dash_core::api::RouteInfo> + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    pub manager: ServiceManager,
    pub mq: Arc<MessageQueue>,
    pub images: Arc<ImageStore>,
    pub puller: Arc<dash_image::registry::Puller>,
    /// The bootstrap token of `<data-dir>/admin.token` (role admin).
    pub token: Arc<str>,
    /// Access and join tokens of `dash token create`.
    pub tokens: crate::tokens::Tokens,
    /// Secrets and configs.
    pub secrets: crate::secrets::Secrets,
    /// The OpenID Connect provider people log in with (`--oidc-issuer`), if any.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Where uploads are staged before import.
    pub upload_dir: PathBuf,
    pub logs: LogReader,
    pub exec: ExecStarter,
    pub route_stats: RouteStats,
    /// This master's own node (its proxy's counters are read live, the others' as reported).
    pub node: String,
    /// Nodes' latest measurements (`/v1/stats`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// This master's node's series for /metrics (its replicas and proxy).
    pub node_series: Option<crate::telemetry::NodeSeries>,
    /// Admission of nodes; None when master_api is off (no --advertise-addr).
    pub bouncer: Option<crate::node_bouncer::NodeBouncer>,
    /// Node liveness (with a cluster): when the leader last heard from each node.
    pub liveness: Option<Arc<crate::master_api::Liveness>>,
    /// Registry credentials in the state (`dash registry login`).
    pub registry_logins: crate::registry_logins::RegistryLogins,
    /// The cluster CA's certificate and key, PEM (backups carry them).
    pub ca: Arc<(String, String)>,
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/services", get(services::list).post(services::apply))
        .route(
            "/services/{name}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{name}/scale", post(services::scale))
        .route("/services/{name}/rollback", post(services::rollback))
        .route("/services/{name}/explain", get(services::explain))
        .route("/services/{name}/history", get(stats::history))
        .route("/replicas", get(services::replicas))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{name}", get(jobs::inspect))
        .route("/jobs/{name}/runs", get(jobs::runs))
        .route("/jobs/{name}/run", post(jobs::run))
        .route("/jobs/{name}/suspend", post(jobs::suspend))
        .route("/jobs/{name}/resume", post(jobs::resume))
        .route("/replicas/{id}/exec", get(exec::exec))
        .route("/nodes", get(nodes::list))
        .route("/cluster", get(cluster::status))
        .route("/backup", get(cluster::backup))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/drain", post(nodes::drain))
        .route("/nodes/{id}/activate", post(nodes::activate))
        .route("/nodes/{id}/labels", post(nodes::label))
        .route("/tokens", get(nodes::list_tokens).post(nodes::create_token))
        .route("/tokens/{id}", axum::routing::delete(nodes::revoke_token))
        .route("/audit", get(audit::list))
        .route(
            "/secrets",
            get(secrets::list_secrets).post(secrets::create_secret),
        )
        .route(
            "/secrets/{name}",
            get(secrets::inspect_secret)
                .put(secrets::update_secret)
                .delete(secrets::remove_secret),
        )
        .route(
            "/configs",
            get(secrets::list_configs).post(secrets::create_config),
        )
        .route(
            "/configs/{name}",
            get(secrets::inspect_config)
                .put(secrets::update_config)
                .delete(secrets::remove_config),
        )
        .route("/data-keys", post(secrets::rotate_key))
        .route("/whoami", get(audit::whoami))
        .route("/images", get(images::list))
        .route(
            "/images/import",
            post(images::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/images/pull", post(images::pull))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{reference}",
            get(images::inspect).delete(images::remove),
        )
        .route("/registries/login", post(registries::login))
        .route(
            "/registries/{registry}",
            axum::routing::delete(registries::logout),
        )
        .route("/routes", get(routes::list))
        .route("/networks", get(networks::list))
        .route("/networks/{name}", get(networks::inspect))
        .route("/stats", get(stats::list))
        .route("/events", get(events::stream))
        .route("/logs/{service}", get(logs::stream));
    Router::new()
        .nest("/v1", v1)
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::scrape))
        .route_layer(axum::middleware::from_fn(metrics::note_route))
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::linearizable,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/login", get(login::login))
        .route("/v1/login/device", post(login::device))
        .route("/v1/login/token", post(login::token))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/{*file}", get(ui::asset))
        .layer(axum::middleware::from_fn(metrics::count))
        .with_state(state)
}
