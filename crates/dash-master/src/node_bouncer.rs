//! node_bouncer: who may be part of the cluster.
//!
//! - The cluster CA, made at the first start (`<data>/pki/ca.crt`, `ca.key` mode 0600).
//! - Join tokens: `dash token create --role worker [--ttl 1h]`; only a SHA-256 of each secret is
//!   stored; a token can expire and be revoked; it carries the CA's fingerprint.
//! - Admission: a joining node sends its token and a CSR; the bouncer checks the token (and
//!   says which check failed), signs the CSR's key for that node name, records the serial.
//! - Authorisation of every later call: the peer's certificate (verified by TLS against the CA)
//!   must name a node that still exists and present one of the two serials the store keeps
//!   for it (current and, during a rotation, previous). `dash node rm` forgets the node, so its
//!   certificate is refused from then on.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{TokenInfo, TokenRequest};
use dash_core::command::Command;
use dash_rpc::pki::{self, Ca, IssuedCert, JoinToken, PeerIdentity, Role};
use dash_store::{MasterStore, StoreError};

use crate::now_ms;

/// How long node certificates are valid; nodes renew at two thirds of it.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum BouncerError {
    /// The token (or certificate) was refused; the message says why, for the operator.
    #[error("{0}")]
    Refused(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Pki(#[from] pki::PkiError),
}

#[derive(Clone)]
pub struct NodeBouncer {
    store: MasterStore,
    ca: Arc<Ca>,
    fingerprint: Arc<str>,
    cert_validity: Duration,
}

impl NodeBouncer {
    pub fn new(store: MasterStore, ca: Ca, cert_validity: Duration) -> Result<Self, BouncerError> {
        let fingerprint = ca.fingerprint()?;
        Ok(Self {
            store,
            ca: Arc::new(ca),
            fingerprint: fingerprint.into(),
            cert_validity,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    pub fn ca_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A new join token; its text is returned once and never stored.
    pub async fn create_token(
        &self,
        req: &TokenRequest,
    ) -> Result<(JoinToken, TokenInfo), BouncerError> {
        if Role::parse(&req.role) != Some(Role::Worker) {
            return Err(BouncerError::Invalid {
                field: "role",
                message: format!(
                    "{:?} is not a role a token can grant; use --role worker",
                    req.role
                ),
            });
        }
        let ttl_ms = match req.ttl_s {
            None => None,
            Some(0) => {
                return Err(BouncerError::Invalid {
                    field: "ttl",
                    message:
                        "0s: a token must live at least a second; leave --ttl out for no expiry"
                            .into(),
                });
            }
            Some(s) if s > 10 * 365 * 24 * 3600 => {
                return Err(BouncerError::Invalid {
                    field: "ttl",
                    message: format!("{s}s is over 10 years; leave --ttl out for no expiry"),
                });
            }
            Some(s) => Some(s * 1000),
        };
        let token = JoinToken::generate(&self.fingerprint)?;
        let at_ms = now_ms();
        let info = TokenInfo {
            id: token.id.clone(),
            role: req.role.clone(),
            created_ms: at_ms,
            expires_ms: ttl_ms.map(|t| at_ms + t),
            revoked_ms: None,
        };
        self.store
            .apply(&Command::CreateToken {
                id: info.id.clone(),
                role: info.role.clone(),
                secret_hash: token.secret_hash(),
                expires_ms: info.expires_ms,
                at_ms,
            })
            .await?;
        Ok((token, info))
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, BouncerError> {
        Ok(self
            .store
            .tokens()
            .await?
            .into_iter()
            .map(|(t, _)| t)
            .collect())
    }

    pub async fn revoke(&self, id: &str) -> Result<(), BouncerError> {
        if !self.store.tokens().await?.iter().any(|(t, _)| t.id == id) {
            return Err(BouncerError::NotFound(format!(
                "no token with id {id:?}; `dash token ls` lists them"
            )));
        }
        self.store
            .apply(&Command::RevokeToken {
                id: id.to_string(),
                at_ms: now_ms(),
            })
            .await?;
        Ok(())
    }

    /// Checks a join token; the error says exactly which check failed.
    pub async fn check_token(&self, text: &str) -> Result<Role, BouncerError> {
        let token = JoinToken::parse(text)
            .map_err(|e| BouncerError::Refused(format!("join refused: {e}")))?;
        if !pki::constant_time_eq(&token.ca_fingerprint, &self.fingerprint) {
            return Err(BouncerError::Refused(
                "join refused: the token is for another cluster (its CA fingerprint differs)"
                    .into(),
            ));
        }
        let tokens = self.store.tokens().await?;
        let Some((info, hash)) = tokens.iter().find(|(t, _)| t.id == token.id) else {
            return Err(BouncerError::Refused(format!(
                "join refused: token {} is unknown to this cluster",
                token.id
            )));
        };
        if !pki::constant_time_eq(hash, &token.secret_hash()) {
            return Err(BouncerError::Refused(format!(
                "join refused: token {} has a wrong secret",
                token.id
            )));
        }
        if let Some(at) = info.revoked_ms {
            return Err(BouncerError::Refused(format!(
                "join refused: token {} was revoked {} ago",
                token.id,
                ago(at)
            )));
        }
        if let Some(exp) = info.expires_ms
            && exp <= now_ms()
        {
            return Err(BouncerError::Refused(format!(
                "join refused: token {} expired {} ago; create a new one with `dash token create`",
                token.id,
                ago(exp)
            )));
        }
        Role::parse(&info.role).ok_or_else(|| {
            BouncerError::Refused(format!("join refused: token role {:?} unknown", info.role))
        })
    }

    /// Signs a CSR for `node` in `role` and records the serial as the node's current one.
    /// The node's row must exist (the caller registers it first).
    pub async fn issue(
        &self,
        node: &str,
        role: Role,
        csr_pem: &str,
    ) -> Result<IssuedCert, BouncerError> {
        let issued = self.sign(node, role, csr_pem)?;
        self.store
            .apply(&Command::SetNodeCert {
                id: node.to_string(),
                serial: issued.serial.clone(),
            })
            .await?;
        Ok(issued)
    }

    /// A signature without recording (the master's own certificate, made before its row).
    pub fn sign(&self, node: &str, role: Role, csr_pem: &str) -> Result<IssuedCert, BouncerError> {
        Ok(self.ca.sign(csr_pem, node, role, self.cert_validity)?)
    }

    /// Who is calling: the peer certificate (already verified by TLS against the CA) must
    /// belong to a node the cluster still has, with a serial it issued to it.
    pub async fn authorize(
        &self,
        peer_cert_der: Option<&[u8]>,
    ) -> Result<PeerIdentity, BouncerError> {
        let der = peer_cert_der.ok_or_else(|| {
            BouncerError::Refused(
                "a client certificate issued by the cluster CA is required; join with a token first".into(),
            )
        })?;
        let id = pki::identity(der)?;
        match self.store.node_cert_serials(&id.node).await? {
            None => Err(BouncerError::Refused(format!(
                "node {} is not part of this cluster (removed?); join again with a new token",
                id.node
            ))),
            Some((current, previous)) if id.serial == current || id.serial == previous => Ok(id),
            Some(_) => Err(BouncerError::Refused(format!(
                "certificate {} of node {} was replaced; the node must use its newest certificate",
                id.serial, id.node
            ))),
        }
    }
}

fn ago(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Loads the cluster CA from `<dir>/ca.crt` and `<dir>/ca.key`, creating both at first start.
pub fn load_or_create_ca(dir: &Path, cluster: &str) -> Result<Ca, std::io::Error> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    let other = |e: pki::PkiError| std::io::Error::other(e.to_string());
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read_to_string(&cert_path)?;
        let key = std::fs::read_to_string(&key_path)?;
        return Ca::load(cert, key).map_err(other);
    }
    std::fs::create_dir_all(dir)?;
    let ca = Ca::create(cluster).map_err(other)?;
    write_private(&key_path, ca.key_pem())?;
    write_private(&cert_path, &ca.cert_pem)?;
    Ok(ca)
}

/// Writes `content` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
