//! How people log in (no token needed): /v1/login says whether the cluster has an OpenID
//! Connect provider; /v1/login/device and /v1/login/token run the provider's device flow for a
//! browser (the portal), which may not reach the provider itself (its page allows requests to
//! its own origin only). The CLI runs the device flow against the provider directly.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dash_core::api::{DeviceLogin, LoginGrant, LoginInfo, LoginTokens, OidcInfo};
use dash_core::oidc::Grant;

use super::AppState;
use super::error::{ApiJson, HttpError};
use crate::oidc::{FlowError, Oidc};

/// How to log in to this cluster (no token needed): its OpenID Connect provider, if any. `dash
/// login --oidc` starts here.
#[utoipa::path(get, path = "/v1/login", tag = "nodes", operation_id = "login_info",
    security(()),
    responses((status = 200, body = LoginInfo)))]
pub async fn login(State(s): State<AppState>) -> Json<LoginInfo> {
    Json(LoginInfo {
        oidc: s.oidc.as_ref().map(|o| {
            let c = o.config();
            OidcInfo {
                issuer: c.issuer.clone(),
                client_id: c.client_id.clone(),
                scopes: c.scopes.clone(),
            }
        }),
    })
}

/// The provider, or 409 when there is none.
fn provider(s: &AppState) -> Result<&Oidc, HttpError> {
    s.oidc.as_deref().ok_or_else(|| {
        HttpError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this cluster has no OpenID Connect provider (dash server --oidc-issuer): log in \
             with a token of `dash token create`",
        )
    })
}

fn flow_error(e: FlowError) -> HttpError {
    match e {
        FlowError::Provider { error, description } => {
            // The provider's OAuth error name (`authorization_pending`: ask again later), kept
            // to the characters such names have.
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_lowercase() || *c == '_')
                .take(40)
                .collect();
            let message = match (code.as_str(), description.is_empty()) {
                ("authorization_pending", _) => {
                    "not confirmed yet: ask again after the interval".to_string()
                }
                ("slow_down", _) => "asked too often: wait 5 s more between requests".to_string(),
                (_, true) => format!("the provider refused the login: {code}"),
                (_, false) => format!("the provider refused the login: {code} ({description})"),
            };
            HttpError::new(StatusCode::BAD_REQUEST, &code, message)
        }
        FlowError::Unreachable(why) => HttpError::new(StatusCode::BAD_GATEWAY, "bad_gateway", why),
    }
}

/// Starts a device login with the cluster's OpenID Connect provider: the person confirms
/// `user_code` at `verification_uri`, then `POST /v1/login/token` gives the ID token.
#[utoipa::path(post, path = "/v1/login/device", tag = "nodes", operation_id = "login_device",
    security(()),
    responses((status = 200, body = DeviceLogin),
        (status = 409, body = dash_core::api::ApiError, description = "`conflict`: no OpenID Connect provider (--oidc-issuer)"),
        (status = 502, body = dash_core::api::ApiError, description = "`bad_gateway`: the provider could not be asked")))]
pub async fn device(State(s): State<AppState>) -> Result<Json<DeviceLogin>, HttpError> {
    let oidc = provider(&s)?;
    oidc.start_device().await.map(Json).map_err(flow_error)
}

/// The ID token of a confirmed device login (`device_code`), or a new one for a
/// `refresh_token`: the bearer token of the admin API.
#[utoipa::path(post, path = "/v1/login/token", tag = "nodes", operation_id = "login_token",
    security(()),
    request_body = LoginGrant,
    responses((status = 200, body = LoginTokens),
        (status = 400, body = dash_core::api::ApiError, description = "`invalid`: not exactly one of `device_code` and `refresh_token`; or the provider's OAuth error as the code: `authorization_pending` (ask again after the interval), `slow_down`, `expired_token`, `access_denied`, `invalid_grant`"),
        (status = 409, body = dash_core::api::ApiError, description = "`conflict`: no OpenID Connect provider (--oidc-issuer)"),
        (status = 502, body = dash_core::api::ApiError, description = "`bad_gateway`: the provider could not be asked")))]
pub async fn token(
    State(s): State<AppState>,
    ApiJson(grant): ApiJson<LoginGrant>,
) -> Result<Json<LoginTokens>, HttpError> {
    // Without a provider nothing can be granted, whatever was asked.
    let oidc = provider(&s)?;
    let grant = match (grant.device_code.as_deref(), grant.refresh_token.as_deref()) {
        (Some(code), None) if !code.is_empty() => Grant::Device(code),
        (None, Some(refresh)) if !refresh.is_empty() => Grant::Refresh(refresh),
        _ => {
            return Err(HttpError::bad_request(
                "device_code",
                "give exactly one of device_code (from POST /v1/login/device) and refresh_token",
            ));
        }
    };
    oidc.grant(grant).await.map(Json).map_err(flow_error)
}
