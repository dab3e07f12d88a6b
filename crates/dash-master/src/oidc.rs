//! OpenID Connect: people log in with the company's provider instead of holding Dash tokens.
//!
//! ```text
//!  dash login URL --oidc ─► GET /v1/login (issuer, client id) ─► the provider's device flow
//!     (the person approves in a browser) ─► ID token (+ refresh token) ─► Bearer <ID token>
//!  admin API: guard ─► Oidc::verify: signature against the provider's JWKS (fetched by the
//!     kid of the token; an unknown kid fetches again: key rotation), iss, aud, exp, then the
//!     role claim's groups ─► the highest role mapped (`--oidc-role GROUP=ROLE`)
//! ```
//!
//! The JWT checks are jsonwebtoken's (on aws-lc-rs); the provider is found by its discovery
//! document (`<issuer>/.well-known/openid-configuration`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dash_core::oidc::{DeviceAnswer, Grant, TokenAnswer};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::admin_api::Access;

/// `dash server --oidc-*`.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `--oidc-issuer`: the provider's issuer URL, exactly as its tokens say it.
    pub issuer: String,
    /// `--oidc-client-id`: the audience Dash's ID tokens are for.
    pub client_id: String,
    /// `--oidc-role-claim` (default `groups`): the claim holding a person's groups.
    pub role_claim: String,
    /// `--oidc-role GROUP=ROLE`; none: a group named `read`, `deploy` or `admin` is that role.
    pub roles: Vec<(String, Access)>,
    /// `--oidc-scopes`: what the CLI asks the provider for (default `openid offline_access
    /// groups`).
    pub scopes: String,
}

impl OidcConfig {
    /// `GROUP=ROLE` of `--oidc-role`; the error names what is wrong.
    pub fn parse_role(text: &str) -> Result<(String, Access), String> {
        let (group, role) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: not GROUP=ROLE, e.g. platform-team=admin"))?;
        let access = match role.trim() {
            "read" => Access::Read,
            "deploy" => Access::Deploy,
            "admin" => Access::Admin,
            other => {
                return Err(format!(
                    "{text:?}: {other:?} is not a role; use read, deploy or admin"
                ));
            }
        };
        if group.trim().is_empty() {
            return Err(format!("{text:?}: the group is empty"));
        }
        Ok((group.trim().to_string(), access))
    }

    /// The highest role `groups` map to.
    fn role_of(&self, groups: &[String]) -> Option<Access> {
        let mapped = |g: &String| -> Option<Access> {
            if self.roles.is_empty() {
                return match g.as_str() {
                    "read" => Some(Access::Read),
                    "deploy" => Some(Access::Deploy),
                    "admin" => Some(Access::Admin),
                    _ => None,
                };
            }
            self.roles
                .iter()
                .filter(|(group, _)| group == g)
                .map(|(_, a)| *a)
                .max()
        };
        groups.iter().filter_map(mapped).max()
    }
}

/// The provider's discovery document (what Dash and the CLI use of it).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

/// Why a login step through the provider did not give tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// The provider answered with an OAuth error: `authorization_pending` and `slow_down`
    /// mean ask again later; `expired_token`, `access_denied`, `invalid_grant` that it is over.
    Provider { error: String, description: String },
    /// The provider could not be asked, or answered nonsense.
    Unreachable(String),
}

/// At most one fetch of the keys in this time for unknown key ids (a flood of forged tokens
/// does not become a flood of requests to the provider; a rotated key is picked up within it).
const REFETCH_AFTER: Duration = Duration::from_secs(1);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_S: u64 = 5;

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
}

pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
    keys: RwLock<Keys>,
}

/// Who an ID token says is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub subject: String,
    pub access: Access,
}

impl Oidc {
    pub fn new(cfg: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            cfg,
            http,
            discovery: RwLock::new(None),
            keys: RwLock::new(Keys {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
            }),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// The discovery document (fetched once; again after a failure).
    pub async fn discovery(&self) -> Result<Discovery, String> {
        if let Some(d) = self.discovery.read().await.clone() {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?;
        if d.issuer != self.cfg.issuer {
            return Err(format!(
                "{url} names issuer {:?}, not {:?} (--oidc-issuer must be the issuer exactly)",
                d.issuer, self.cfg.issuer
            ));
        }
        *self.discovery.write().await = Some(d.clone());
        Ok(d)
    }

    async fn fetch_keys(&self) -> Result<(), String> {
        let d = self.discovery().await?;
        let set: JwkSet = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching {}: {e}", d.jwks_uri))?
            .json()
            .await
            .map_err(|e| format!("reading {}: {e}", d.jwks_uri))?;
        let mut keys = self.keys.write().await;
        keys.set = set;
        keys.fetched = Some(Instant::now());
        Ok(())
    }

    /// The decoding key with id `kid`, fetching the provider's keys when it is unknown.
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        let find = |keys: &Keys| keys.set.find(kid).map(DecodingKey::from_jwk);
        if let Some(k) = find(&*self.keys.read().await) {
            return k.map_err(|e| format!("key {kid}: {e}"));
        }
        let recent = self
            .keys
            .read()
            .await
            .fetched
            .is_some_and(|t| t.elapsed() < REFETCH_AFTER);
        if !recent {
            self.fetch_keys().await?;
        }
        match find(&*self.keys.read().await) {
            Some(k) => k.map_err(|e| format!("key {kid}: {e}")),
            None => Err(format!("the provider has no signing key {kid:?}")),
        }
    }

    /// The provider's endpoints for a device login: (device authorization, token).
    async fn device_endpoints(&self) -> Result<(String, String), FlowError> {
        let d = self.discovery().await.map_err(FlowError::Unreachable)?;
        match (d.device_authorization_endpoint, d.token_endpoint) {
            (Some(device), Some(token)) => Ok((device, token)),
            _ => Err(FlowError::Unreachable(format!(
                "the provider {} offers no device flow (no device_authorization_endpoint)",
                self.cfg.issuer
            ))),
        }
    }

    /// Starts a device login for a browser: the code the person confirms at the provider.
    pub async fn start_device(&self) -> Result<dash_core::api::DeviceLogin, FlowError> {
        let (device, _) = self.device_endpoints().await?;
        let answer = self
            .http
            .post(&device)
            .form(&[
                ("client_id", self.cfg.client_id.as_str()),
                ("scope", self.cfg.scopes.as_str()),
            ])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| {
                FlowError::Unreachable(format!("asking {device} for a device code: {e}"))
            })?;
        let a: DeviceAnswer = answer
            .json()
            .await
            .map_err(|e| FlowError::Unreachable(format!("reading {device}'s answer: {e}")))?;
        Ok(a.into_login())
    }

    /// The ID token of a confirmed device login, or a new one for a refresh token.
    pub async fn grant(&self, grant: Grant<'_>) -> Result<dash_core::api::LoginTokens, FlowError> {
        let (_, token) = self.device_endpoints().await?;
        let a: TokenAnswer = self
            .http
            .post(&token)
            .form(&grant.form(&self.cfg.client_id))
            .send()
            .await
            .map_err(|e| FlowError::Unreachable(format!("asking {token}: {e}")))?
            .json()
            .await
            .map_err(|e| FlowError::Unreachable(format!("reading {token}'s answer: {e}")))?;
        match (a.id_token, a.error) {
            (Some(id_token), _) => Ok(dash_core::api::LoginTokens {
                id_token,
                refresh_token: a.refresh_token,
            }),
            (None, Some(error)) => Err(FlowError::Provider {
                error,
                description: a.error_description.unwrap_or_default(),
            }),
            (None, None) => Err(FlowError::Unreachable(
                "the provider answered no ID token: ask for the openid scope (--oidc-scopes)"
                    .into(),
            )),
        }
    }

    /// Checks an ID token: signature, issuer, audience, expiry; the role from its groups. The
    /// error says which check failed.
    pub async fn verify(&self, token: &str) -> Result<Person, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        let kid = header
            .kid
            .ok_or_else(|| "the token names no signing key (kid)".to_string())?;
        // Only the provider's asymmetric algorithms: never HS* (a shared secret).
        use jsonwebtoken::Algorithm as A;
        if !matches!(
            header.alg,
            A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 | A::ES256 | A::ES384
        ) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let key = self.key(&kid).await?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.client_id]);
        v.leeway = LEEWAY_S;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => {
                        "the ID token has expired; log in again (dash login --oidc)".to_string()
                    }
                    K::InvalidIssuer => format!(
                        "the ID token is from another issuer than {}",
                        self.cfg.issuer
                    ),
                    K::InvalidAudience => {
                        format!("the ID token is not for client {}", self.cfg.client_id)
                    }
                    K::InvalidSignature => "the ID token's signature does not verify".to_string(),
                    _ => format!("the ID token is refused: {e}"),
                }
            })?;
        let subject = data
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string();
        let groups: Vec<String> = match data.claims.get(&self.cfg.role_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            _ => Vec::new(),
        };
        let access = self.cfg.role_of(&groups).ok_or_else(|| {
            format!(
                "{subject} has no group that maps to a role (claim {:?}: {groups:?}); an admin maps one with --oidc-role GROUP=ROLE",
                self.cfg.role_claim
            )
        })?;
        Ok(Person { subject, access })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_the_highest_role_given() {
        let mut cfg = OidcConfig {
            issuer: "https://id.example".into(),
            client_id: "dash".into(),
            role_claim: "groups".into(),
            roles: Vec::new(),
            scopes: "openid".into(),
        };
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(cfg.role_of(&g(&["deploy", "read"])), Some(Access::Deploy));
        assert_eq!(cfg.role_of(&g(&["devs"])), None);
        cfg.roles = vec![
            OidcConfig::parse_role("devs=deploy").unwrap(),
            OidcConfig::parse_role("ops=admin").unwrap(),
        ];
        assert_eq!(cfg.role_of(&g(&["devs"])), Some(Access::Deploy));
        assert_eq!(cfg.role_of(&g(&["devs", "ops"])), Some(Access::Admin));
        assert_eq!(
            cfg.role_of(&g(&["admin"])),
            None,
            "mapped: names alone mean nothing"
        );
        for bad in ["devs", "devs=root", "=admin"] {
            assert!(OidcConfig::parse_role(bad).is_err(), "{bad}");
        }
    }
}
