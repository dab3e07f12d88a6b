//! The CLI's side of OpenID Connect: the device flow of `dash login --oidc` (RFC 8628: the
//! person approves in a browser, on any device) and the refresh of an expired ID token before
//! a command sends it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dash_core::api::OidcInfo;
use dash_core::oidc::{DeviceAnswer, Grant, TokenAnswer};
use serde::Deserialize;

/// What `dash login --oidc` gets from the provider and keeps (in credentials.toml, 0600).
#[derive(Debug, Clone)]
pub struct Tokens {
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub token_endpoint: String,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

async fn discover(http: &reqwest::Client, issuer: &str) -> anyhow::Result<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let d: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| anyhow::anyhow!("the OpenID Connect provider: {url}: {e}"))?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("the OpenID Connect provider: {url}: {e}"))?;
    Ok(d)
}

/// The device flow against `info`'s provider: shows where to approve, waits for it, and
/// answers the tokens.
pub async fn device_login(info: &OidcInfo) -> anyhow::Result<Tokens> {
    let http = http();
    let d = discover(&http, &info.issuer).await?;
    let (Some(device), Some(token_endpoint)) = (d.device_authorization_endpoint, d.token_endpoint)
    else {
        anyhow::bail!(
            "the OpenID Connect provider {} offers no device flow (no device_authorization_endpoint)",
            info.issuer
        );
    };
    let auth = http
        .post(&device)
        .form(&[
            ("client_id", info.client_id.as_str()),
            ("scope", info.scopes.as_str()),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| anyhow::anyhow!("asking {device} for a device code: {e}"))?
        .json::<DeviceAnswer>()
        .await
        .map_err(|e| anyhow::anyhow!("reading {device}'s answer: {e}"))?
        .into_login();
    eprintln!(
        "To log in, open {} and confirm the code {} (or open {}).",
        auth.verification_uri,
        auth.user_code,
        auth.verification_uri_complete
            .as_deref()
            .unwrap_or(&auth.verification_uri)
    );
    eprintln!("code: {}", auth.user_code);
    let mut interval = Duration::from_secs(auth.interval_s);
    let deadline = std::time::Instant::now() + Duration::from_secs(auth.expires_in_s);
    loop {
        tokio::time::sleep(interval).await;
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the code {} expired before it was confirmed; run dash login --oidc again",
            auth.user_code
        );
        let a: TokenAnswer = http
            .post(&token_endpoint)
            .form(&Grant::Device(&auth.device_code).form(&info.client_id))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("asking {token_endpoint}: {e}"))?
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("reading {token_endpoint}'s answer: {e}"))?;
        match (a.id_token, a.error.as_deref()) {
            (Some(id_token), _) => {
                return Ok(Tokens {
                    id_token,
                    refresh_token: a.refresh_token,
                    token_endpoint,
                });
            }
            (None, Some("authorization_pending")) => {}
            (None, Some("slow_down")) => interval += Duration::from_secs(5),
            (None, Some(e)) => anyhow::bail!(
                "the provider refused the login: {e}{}",
                a.error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            (None, None) => anyhow::bail!(
                "the provider answered no ID token: ask for the openid scope (--oidc-scopes)"
            ),
        }
    }
}

/// A new ID token for `refresh_token`; the provider may hand a new refresh token too.
pub async fn refresh(
    token_endpoint: &str,
    client_id: &str,
    refresh_token: &str,
) -> anyhow::Result<(String, Option<String>)> {
    let a: TokenAnswer = http()
        .post(token_endpoint)
        .form(&Grant::Refresh(refresh_token).form(client_id))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("refreshing the login at {token_endpoint}: {e}"))?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("refreshing the login at {token_endpoint}: {e}"))?;
    match a.id_token {
        Some(t) => Ok((t, a.refresh_token)),
        None => anyhow::bail!(
            "the login could not be refreshed ({}); run dash login --oidc again",
            a.error.unwrap_or_else(|| "no ID token".into())
        ),
    }
}

/// The `exp` of a JWT (seconds since the epoch), read without checking it (the server checks).
pub fn expires_at(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_expiry_of_a_jwt_is_read_from_its_payload() {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            enc("{\"alg\":\"RS256\"}"),
            enc("{\"exp\":1700000000}")
        );
        assert_eq!(super::expires_at(&jwt), Some(1_700_000_000));
        assert_eq!(super::expires_at("nonsense"), None);
    }
}
