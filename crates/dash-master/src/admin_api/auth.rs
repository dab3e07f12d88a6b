//! Who may do what through the admin API, and the record of what they did.
//!
//! ```text
//! request ─► authenticate ─► authorize ─► (handler) ─► audit
//!            401: no token,   403: the      the          a write (or exec, or a refusal for
//!            wrong, revoked,  route needs   route        the role) is recorded in the state
//!            expired, or a    a higher                   with who, what, when, where from and
//!            join token       role                       the answer's status
//! ```
//!
//! Callers: the data dir's bootstrap token (`<data-dir>/admin.token`, role admin) and access
//! tokens of `dash token create --role read|deploy|admin` (crate::tokens). Roles are ordered,
//! read < deploy < admin; [`required`] is the one table of what each route needs.

use std::path::Path;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dash_core::api::AuditEntry;
use dash_core::command::Command;

use super::AppState;
use super::error::HttpError;
use crate::tokens::{TokenError, TokenRole};

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

/// What a caller may do, in order: each role may do all that the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// GETs: services, replicas, nodes, images, logs, events, stats.
    Read,
    /// Shipping services: apply, scale, rollback, remove, exec, images, registry logins.
    Deploy,
    /// Everything: nodes, tokens, backups, the audit log.
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Deploy => "deploy",
            Access::Admin => "admin",
        }
    }

    fn of(role: TokenRole) -> Option<Access> {
        match role {
            TokenRole::Read => Some(Access::Read),
            TokenRole::Deploy => Some(Access::Deploy),
            TokenRole::Admin => Some(Access::Admin),
            TokenRole::Worker | TokenRole::Master => None,
        }
    }
}

/// The routes that need no token (outside the guard): how to log in.
pub const PUBLIC: [&str; 3] = ["/v1/login", "/v1/login/device", "/v1/login/token"];

/// The role a request needs: the one table of the admin API's permissions (the OpenAPI
/// document shows it on every operation as `x-dash-role`).
pub fn required(method: &Method, path: &str) -> Access {
    let path = path.trim_end_matches('/');
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let read_only = method == Method::GET || method == Method::HEAD;
    if under("/v1/tokens") || under("/v1/backup") || under("/v1/audit") || under("/v1/data-keys") {
        // Tokens open the cluster; a backup holds the CA's key; data keys seal every secret.
        Access::Admin
    } else if under("/v1/nodes") && !read_only {
        Access::Admin
    } else if path.starts_with("/v1/replicas/") && path.ends_with("/exec") {
        // A GET that upgrades to a shell in a replica.
        Access::Deploy
    } else if read_only {
        Access::Read
    } else {
        Access::Deploy
    }
}

/// Whether a request is recorded in the audit log: every write, and exec.
fn audited_request(method: &Method, path: &str) -> bool {
    !(method == Method::GET || method == Method::HEAD || method == Method::OPTIONS)
        || path.ends_with("/exec")
}

/// The authenticated caller of a request (a request extension, for handlers and the audit).
#[derive(Debug, Clone)]
pub struct Caller {
    /// `admin.token`, `token <id>` or `oidc <subject>`.
    pub who: String,
    pub access: Access,
}

/// What a handler adds to the audit entry when the path does not say what the request
/// was about (e.g. the service an apply created): a response extension.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// `response` with `target` for the audit log.
pub fn audited(response: impl IntoResponse, target: String) -> Response {
    let mut r = response.into_response();
    r.extensions_mut().insert(AuditTarget(target));
    r
}

fn unauthorized(message: String) -> HttpError {
    HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Who is calling, from the bearer token.
async fn authenticate(state: &AppState, bearer: Option<&str>) -> Result<Caller, HttpError> {
    let Some(given) = bearer else {
        return Err(unauthorized(
            "missing `Authorization: Bearer <token>`: a token of `dash token create --role \
             read|deploy|admin`, or the bootstrap token in <data-dir>/admin.token (DASH_TOKEN \
             or `dash login` for the CLI)"
                .into(),
        ));
    };
    // Constant time: the token cannot be guessed byte by byte from timings.
    if dash_rpc::pki::constant_time_eq(given, &state.token) {
        return Ok(Caller {
            who: "admin.token".into(),
            access: Access::Admin,
        });
    }
    // An OpenID Connect ID token (a JWT: its header is base64 of `{"`).
    if given.starts_with("eyJ") {
        let Some(oidc) = &state.oidc else {
            return Err(unauthorized(
                "the bearer token is an OpenID Connect token, and this cluster has no provider \
                 (dash server --oidc-issuer)"
                    .into(),
            ));
        };
        let person = oidc
            .verify(given)
            .await
            .map_err(|why| unauthorized(format!("the bearer token is refused: {why}")))?;
        return Ok(Caller {
            who: format!("oidc {}", person.subject),
            access: person.access,
        });
    }
    if !given.starts_with("DASH1-") {
        return Err(unauthorized(
            "the bearer token is wrong: it is neither the bootstrap token of <data-dir>/admin.token, \
             a token of `dash token create` (DASH1-…) nor an OpenID Connect ID token"
                .into(),
        ));
    }
    let held = state.tokens.check(given).await.map_err(|e| match e {
        TokenError::Store(e) => HttpError::internal(e),
        refused => unauthorized(format!("the bearer token is refused: {refused}")),
    })?;
    match Access::of(held.role) {
        Some(access) => Ok(Caller {
            who: format!("token {}", held.info.id),
            access,
        }),
        None => Err(unauthorized(format!(
            "token {} is a join token (role {}) for nodes; the admin API takes a token of \
             `dash token create --role read|deploy|admin`",
            held.info.id,
            held.role.as_str()
        ))),
    }
}

/// Every route but /healthz: authenticates the caller, checks the route's role, and records
/// writes in the audit log once answered.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let caller = match authenticate(&state, bearer.as_deref()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let source = req
        .extensions()
        .get::<ConnectInfo<super::Peer>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.0.to_string());
    let needed = required(&method, &path);
    let response = if caller.access < needed {
        HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{method} {path} needs the {} role; this caller ({}) has {}. An admin makes a \
                 token for it with `dash token create --role {}`",
                needed.as_str(),
                caller.who,
                caller.access.as_str(),
                needed.as_str()
            ),
        )
        .into_response()
    } else {
        req.extensions_mut().insert(caller.clone());
        next.run(req).await
    };
    let status = response.status();
    // Every write and exec, and every refusal for the role (a read refused too); not a write
    // that found no leader (503): the record could not be kept either, and would wait again.
    if (audited_request(&method, &path) || status == StatusCode::FORBIDDEN)
        && status != StatusCode::SERVICE_UNAVAILABLE
    {
        let entry = AuditEntry {
            seq: 0,
            at_ms: crate::now_ms(),
            who: caller.who,
            role: caller.access.as_str().into(),
            method: method.to_string(),
            path,
            target: response
                .extensions()
                .get::<AuditTarget>()
                .map(|t| t.0.clone()),
            source,
            master: state.node.clone(),
            status: response.status().as_u16(),
        };
        // Recorded before the caller hears the answer: an acknowledged write is in the log.
        if let Err(e) = state
            .manager
            .log()
            .propose(Command::RecordAudit {
                entry: entry.clone(),
            })
            .await
        {
            tracing::warn!(error = %e, who = %entry.who, method = %entry.method, path = %entry.path,
                status = entry.status, "the audit entry of this request could not be recorded");
        }
    }
    response
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
        "/v1/audit",
        "/v1/secrets",
        "/v1/configs",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_the_role_its_kind_of_work_asks() {
        use Access::*;
        let cases = [
            (Method::GET, "/v1/services", Read),
            (Method::GET, "/v1/services/web/explain", Read),
            (Method::GET, "/v1/logs/web", Read),
            (Method::GET, "/v1/nodes/w1", Read),
            (Method::GET, "/openapi.json", Read),
            (Method::POST, "/v1/services", Deploy),
            (Method::DELETE, "/v1/services/web", Deploy),
            (Method::POST, "/v1/services/web/scale", Deploy),
            (Method::POST, "/v1/images/import", Deploy),
            (Method::GET, "/v1/replicas/web-1/exec", Deploy),
            (Method::POST, "/v1/nodes/w1/drain", Admin),
            (Method::DELETE, "/v1/nodes/w1", Admin),
            (Method::GET, "/v1/tokens", Admin),
            (Method::POST, "/v1/tokens", Admin),
            (Method::DELETE, "/v1/tokens/ab12cd34", Admin),
            (Method::GET, "/v1/backup", Admin),
            (Method::GET, "/v1/audit", Admin),
            (Method::POST, "/v1/data-keys", Admin),
            (Method::GET, "/v1/secrets/pw", Read),
            (Method::PUT, "/v1/secrets/pw", Deploy),
            // A trailing slash is no way around it.
            (Method::GET, "/v1/tokens/", Admin),
        ];
        for (method, path, role) in cases {
            assert_eq!(required(&method, path), role, "{method} {path}");
        }
        assert!(audited_request(&Method::POST, "/v1/services"));
        assert!(audited_request(&Method::GET, "/v1/replicas/web-1/exec"));
        assert!(!audited_request(&Method::GET, "/v1/services"));
    }
}
