//! One conversation with one registry: an `oci_client::Client` set up for it (plain HTTP only
//! for loopback and configured insecure registries), the credentials to use, and the mapping
//! of the client's errors to [`PullError`].

use std::sync::Arc;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::credentials::Credentials;
use super::reference::is_loopback;
use super::{PullError, RegistryConfig, RegistryRef};

const USER_AGENT: &str = concat!("dash/", env!("CARGO_PKG_VERSION"));
/// A registry that does not answer the TCP handshake in this long is taken as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A stalled download (no byte for this long) fails instead of hanging the pull.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for one registry and the credentials it uses there.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) auth: RegistryAuth,
    pub(crate) registry: String,
    username: Option<String>,
}

impl Session {
    /// A client for `registry` with `credentials` (anonymous when `None`). Makes no request.
    pub(crate) fn new(
        cfg: &RegistryConfig,
        registry: &str,
        credentials: Option<Credentials>,
    ) -> Result<Self, PullError> {
        let plain_http = is_loopback(registry) || cfg.insecure.iter().any(|r| r == registry);
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // Indexes are resolved by `manifest.rs`, against the configured platform.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| PullError::Registry {
            registry: registry.to_owned(),
            action: "setting up the http client".to_owned(),
            source: Arc::new(e),
        })?;
        tracing::debug!(
            registry,
            plain_http,
            authenticated = credentials.is_some(),
            "registry client"
        );
        let (auth, username) = match credentials {
            Some(c) => (
                RegistryAuth::Basic(c.username.clone(), c.password),
                Some(c.username),
            ),
            None => (RegistryAuth::Anonymous, None),
        };
        Ok(Self {
            client,
            auth,
            registry: registry.to_owned(),
            username,
        })
    }

    /// The client's reference for `r`.
    pub(crate) fn reference(r: &RegistryRef) -> Reference {
        match (&r.tag, &r.digest) {
            (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
                r.registry.clone(),
                r.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (None, Some(digest)) => {
                Reference::with_digest(r.registry.clone(), r.repository.clone(), digest.clone())
            }
            (tag, None) => Reference::with_tag(
                r.registry.clone(),
                r.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".to_owned()),
            ),
        }
    }

    /// Answers the registry's challenge (`GET /v2/`): fetches a bearer token from its token
    /// service (with the credentials, if any), or settles on basic auth. Returns whether a
    /// token service accepted the credentials.
    pub(crate) async fn authenticate(
        &self,
        image: &Reference,
        reference: &str,
    ) -> Result<bool, PullError> {
        let token = self
            .client
            .auth(image, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.error(e, reference, "authenticating"))?;
        Ok(token.is_some())
    }

    /// Checks the credentials with a real request: a token service already did when
    /// `authenticate` got a token; else (basic auth) the catalog is asked for, and only a 401
    /// counts as a refusal (a registry may forbid listing to users it did authenticate).
    pub(crate) async fn verify_login(&self) -> Result<(), PullError> {
        let image = Reference::with_tag(
            self.registry.clone(),
            "dash/login-check".to_owned(),
            "latest".to_owned(),
        );
        if self.authenticate(&image, &self.registry).await? {
            return Ok(());
        }
        match self.client.catalog(&image, &self.auth, Some(1), None).await {
            Ok(_) => Ok(()),
            Err(
                e @ (OciDistributionError::UnauthorizedError { .. }
                | OciDistributionError::ServerError { code: 401, .. }
                | OciDistributionError::RequestError(_)
                | OciDistributionError::IoError(_)),
            ) => Err(self.error(e, &self.registry, "checking the credentials")),
            Err(e) => {
                tracing::debug!(registry = %self.registry, error = %e, "catalog refused; the credentials were accepted");
                Ok(())
            }
        }
    }

    /// Maps a client error to a [`PullError`] about `reference` (what the user asked for).
    pub(crate) fn error(
        &self,
        e: OciDistributionError,
        reference: &str,
        action: &str,
    ) -> PullError {
        let refused = |detail: String| match &self.username {
            Some(user) => PullError::AuthenticationFailed {
                registry: self.registry.clone(),
                reason: format!("the registry refused the credentials of user {user:?} ({detail})"),
            },
            None => PullError::AuthenticationRequired {
                registry: self.registry.clone(),
                reference: reference.to_owned(),
            },
        };
        let not_found = || PullError::NotFound {
            registry: self.registry.clone(),
            reference: reference.to_owned(),
        };
        match e {
            OciDistributionError::UnauthorizedError { url } => {
                refused(format!("401 unauthorized for {url}"))
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                PullError::AuthenticationFailed {
                    registry: self.registry.clone(),
                    reason: format!("the token service refused them: {}", reason.trim()),
                }
            }
            OciDistributionError::RegistryError { envelope, url } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    refused(format!("{} for {url}", envelope))
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    not_found()
                } else {
                    self.wrap(
                        OciDistributionError::RegistryError { envelope, url },
                        action,
                    )
                }
            }
            OciDistributionError::ServerError { code: 401, url, .. } => {
                refused(format!("401 unauthorized for {url}"))
            }
            OciDistributionError::ServerError { code: 404, .. } => not_found(),
            // Only manifests are verified by the client; blobs are hashed by `download.rs`.
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => PullError::DigestMismatch {
                reference: reference.to_owned(),
                what: "manifest".to_owned(),
                expected,
                actual,
            },
            other => self.wrap(other, action),
        }
    }

    fn wrap(&self, e: OciDistributionError, action: &str) -> PullError {
        PullError::Registry {
            registry: self.registry.clone(),
            action: action.to_owned(),
            source: Arc::new(e),
        }
    }
}
