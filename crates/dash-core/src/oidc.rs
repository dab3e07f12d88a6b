//! A device login (RFC 8628) and a refresh with an OpenID Connect provider, as the CLI (`dash
//! login --oidc`, refreshes) and the masters (the portal's logins) both talk to it: what they
//! send to its token endpoint and what they read of its answers (only the parts Dash uses).

use serde::Deserialize;

use crate::api::DeviceLogin;

/// What a token request trades in.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// A device login's code.
    Device(&'a str),
    Refresh(&'a str),
}

impl<'a> Grant<'a> {
    /// The token request's form, for client `client_id`.
    pub fn form(self, client_id: &'a str) -> [(&'static str, &'a str); 3] {
        match self {
            Grant::Device(code) => [
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", code),
                ("client_id", client_id),
            ],
            Grant::Refresh(refresh) => [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", client_id),
            ],
        }
    }
}

/// The device authorization endpoint's answer, read through [`DeviceAnswer::into_login`].
#[derive(Deserialize)]
pub struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    interval: Option<u64>,
    expires_in: Option<u64>,
}

impl DeviceAnswer {
    /// The login to confirm: asked again every `interval` seconds (5 when the provider names
    /// none, at least 1), for `expires_in` seconds (600 when it names none).
    pub fn into_login(self) -> DeviceLogin {
        DeviceLogin {
            device_code: self.device_code,
            user_code: self.user_code,
            verification_uri: self.verification_uri,
            verification_uri_complete: self.verification_uri_complete,
            interval_s: self.interval.unwrap_or(5).max(1),
            expires_in_s: self.expires_in.unwrap_or(600),
        }
    }
}

/// The token endpoint's answer: an ID token (and maybe a refresh token), or an OAuth error.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}
