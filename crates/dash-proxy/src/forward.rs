//! proxy forward: one client request, from route lookup to the response the client gets.
//!
//! ```text
//! request ─▶ host + path ─▶ RouteTable::find ──miss──▶ 404
//!                               │ entry
//!                               ▼
//!   rewrite uri (strip_prefix), headers ─▶ pick upstream ──none──▶ 503
//!                               ▲               │
//!     connect failed, GET/HEAD/ │               ▼
//!     OPTIONS, ≤ 2 retries ─────┴──── pool.take / connect ─▶ send ─▶ response (101: splice)
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tracing::Instrument;

use crate::balance::{self, UpstreamState};
use crate::body::{Lease, ProxyBody};
use crate::clock;
use crate::config::ProxyConfig;
use crate::error::ForwardError;
use crate::headers::{self, ClientInfo};
use crate::pool::{self, Sender};
use crate::routes::{self, Miss, RouteEntry};
use crate::server::Shared;

/// Retries after a failed connect, for requests that may be retried.
const MAX_RETRIES: usize = 2;

/// What every request on one client connection shares.
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: ClientInfo,
}

/// hyper's service for one request: never fails, errors become responses.
pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported\n".into(),
        ));
    }
    let Some(host_value) = headers::request_host(&req) else {
        return Ok(text(StatusCode::BAD_REQUEST, "no Host header\n".into()));
    };
    let Ok(host) = host_value.to_str() else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "Host header is not text\n".into(),
        ));
    };
    let host = headers::host_without_port(host);
    let table = ctx.shared.table_for_request();
    let entry = match table.find(host, req.uri().path()) {
        Ok(entry) => entry,
        Err(Miss::Host) => {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("no route for host {host}\n"),
            ));
        }
        Err(Miss::Path) => {
            let path = req.uri().path();
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("no route for {host}{path}\n"),
            ));
        }
    };
    let start = Instant::now();
    entry.counters.start(start);
    let (response, proxy_error) = forward(&ctx, entry, req, &host_value, start).await;
    entry
        .counters
        .finish(response.status().as_u16(), start.elapsed(), proxy_error);
    Ok(response)
}

/// Sends the request to one of the entry's upstreams; also says whether the proxy answered
/// itself because no upstream could.
async fn forward(
    ctx: &ConnCtx,
    entry: &RouteEntry,
    mut req: Request<Incoming>,
    host: &HeaderValue,
    start: Instant,
) -> (Response<ProxyBody>, bool) {
    let cfg = &ctx.shared.cfg;
    let upgrade = headers::wants_upgrade(req.headers(), req.version());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    parts.uri = match upstream_uri(entry, &parts.uri) {
        Some(uri) => uri,
        None => {
            return (
                text(StatusCode::BAD_REQUEST, "bad request path\n".into()),
                false,
            );
        }
    };
    if parts.version == Version::HTTP_2 && !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, host.clone());
    }
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    headers::add_forwarding(&mut parts.headers, &ctx.client, host);
    let mut req = Request::from_parts(parts, body);

    let now_nanos = clock::nanos(start);
    let mut tried = 0u64;
    let mut attempts = 0;
    let mut last_error = None;
    loop {
        let Some(index) = balance::pick(
            cfg.balance,
            &entry.upstreams,
            entry.counters.next(),
            now_nanos,
            tried,
        ) else {
            return match last_error {
                Some(error) => (error_response(entry, &error), true),
                None => (no_upstream(entry), true),
            };
        };
        tried |= balance::bit(index);
        attempts += 1;
        let upstream = &entry.upstreams[index];
        let mut lease = Lease::new(upstream);
        let error = match send(upstream, req, cfg).await {
            Ok((mut response, sender)) => {
                let status = response.status();
                if status.is_server_error() {
                    fail(upstream, cfg);
                } else {
                    upstream.on_success();
                }
                if status == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    let upstream_upgrade = hyper::upgrade::on(&mut response);
                    let abort = ctx.shared.abort.subscribe();
                    spawn_splice(client_upgrade, upstream_upgrade, lease, abort);
                    headers::remove_hop_by_hop(response.headers_mut(), true);
                    let (parts, _) = response.into_parts();
                    return (Response::from_parts(parts, ProxyBody::empty()), false);
                }
                lease.sender = Some(sender);
                headers::remove_hop_by_hop(response.headers_mut(), false);
                let (parts, body) = response.into_parts();
                return (
                    Response::from_parts(parts, ProxyBody::upstream(body, lease)),
                    false,
                );
            }
            Err(Failed::BeforeSend(error, unsent)) => {
                fail(upstream, cfg);
                // Nothing reached the upstream (refused, timed out, closed before the
                // request was written): any request, POST and upgrades too, can go elsewhere.
                if attempts <= MAX_RETRIES {
                    tracing::debug!(error = ?error, "retrying on another upstream");
                    req = *unsent;
                    last_error = Some(error);
                    continue;
                }
                error
            }
            Err(Failed::Sent(error)) => {
                fail(upstream, cfg);
                error
            }
        };
        return (error_response(entry, &error), true);
    }
}

fn error_response(entry: &RouteEntry, error: &ForwardError) -> Response<ProxyBody> {
    tracing::debug!(error = ?error, service = %entry.route().service, "upstream failed");
    let status = error.status();
    let message = match status {
        StatusCode::GATEWAY_TIMEOUT => "upstream timed out\n",
        _ => "upstream unavailable\n",
    };
    text(status, message.into())
}

fn fail(upstream: &UpstreamState, cfg: &ProxyConfig) {
    let now = clock::nanos(Instant::now());
    if upstream.on_failure(now, cfg.eject_after, cfg.eject_for) {
        tracing::info!(
            replica = %upstream.upstream.replica,
            addr = %upstream.upstream.addr,
            eject_for = ?cfg.eject_for,
            "upstream ejected after consecutive failures"
        );
    }
}

fn no_upstream(entry: &RouteEntry) -> Response<ProxyBody> {
    let service = &entry.route().service;
    let message = if entry.upstreams.is_empty() {
        format!("no upstream for service {service}\n")
    } else {
        format!("no healthy upstream for service {service}\n")
    };
    text(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// Why [`send`] failed: before anything was written (the request comes back), or after.
enum Failed {
    BeforeSend(ForwardError, Box<Request<Incoming>>),
    Sent(ForwardError),
}

/// Sends `req` on a pooled or new connection to `upstream` and waits for the response headers.
async fn send(
    upstream: &UpstreamState,
    mut req: Request<Incoming>,
    cfg: &ProxyConfig,
) -> Result<(Response<Incoming>, Sender), Failed> {
    let addr = upstream.upstream.addr;
    loop {
        let (mut sender, pooled) = match upstream.pool.take(Instant::now(), cfg.idle_timeout) {
            Some(sender) => (sender, true),
            None => match pool::connect(addr, cfg.connect_timeout).await {
                Ok(sender) => (sender, false),
                Err(error) => return Err(Failed::BeforeSend(error, Box::new(req))),
            },
        };
        if sender.ready().await.is_err() {
            if pooled {
                // Closed while idle: take another.
                continue;
            }
            return Err(Failed::BeforeSend(
                ForwardError::Closed { addr },
                Box::new(req),
            ));
        }
        match tokio::time::timeout(cfg.header_timeout, sender.try_send_request(req)).await {
            Ok(Ok(response)) => return Ok((response, sender)),
            Ok(Err(mut error)) => match error.take_message() {
                // Not written: a pooled connection closed under us. Try a fresh one.
                Some(unsent) if pooled => req = unsent,
                Some(unsent) => {
                    let error = ForwardError::Closed { addr };
                    return Err(Failed::BeforeSend(error, Box::new(unsent)));
                }
                None => {
                    let source = Some(error.into_error());
                    return Err(Failed::Sent(ForwardError::Upstream { addr, source }));
                }
            },
            Err(_elapsed) => {
                let after = cfg.header_timeout;
                return Err(Failed::Sent(ForwardError::HeaderTimeout { addr, after }));
            }
        }
    }
}

/// The URI the upstream gets: origin-form, the route's prefix stripped if it says so.
fn upstream_uri(entry: &RouteEntry, uri: &Uri) -> Option<Uri> {
    let path_and_query = if entry.route().strip_prefix && entry.prefix() != "/" {
        let stripped = routes::strip_path(entry.prefix(), uri.path(), uri.query());
        PathAndQuery::from_maybe_shared(stripped).ok()?
    } else {
        match uri.path_and_query() {
            Some(pq) => pq.clone(),
            None => PathAndQuery::from_static("/"),
        }
    };
    Some(Uri::from(path_and_query))
}

/// Joins the client's and the upstream's upgraded connections until either side closes or the
/// proxy shuts down. The lease keeps the upstream's in-flight count up meanwhile.
fn spawn_splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    lease: Lease,
    mut abort: watch::Receiver<bool>,
) {
    let splice = async move {
        let _lease = lease;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = copied {
                    tracing::debug!(%error, "upgraded connection ended with an error");
                }
            }
            _ = abort.wait_for(|abort| *abort) => {}
        }
    };
    tokio::spawn(splice.instrument(tracing::debug_span!("splice")));
}

fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
