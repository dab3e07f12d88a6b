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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{TokenInfo, TokenRequest};
use dash_core::command::Command;
use dash_rpc::pki::{self, Ca, IssuedCert, JoinToken, PeerIdentity, Role};
use dash_store::{MasterStore, StoreError};

use crate::now_ms;
use crate::state_log::StateLog;

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
    log: StateLog,
    store: MasterStore,
    ca: Arc<Ca>,
    fingerprint: Arc<str>,
    cert_validity: Duration,
}

impl NodeBouncer {
    pub fn new(log: StateLog, ca: Ca, cert_validity: Duration) -> Result<Self, BouncerError> {
        let fingerprint = ca.fingerprint()?;
        Ok(Self {
            store: log.store().clone(),
            log,
            ca: Arc::new(ca),
            fingerprint: fingerprint.into(),
            cert_validity,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The CA's private key (PEM), for a master joining the cluster (sent over mutual TLS only).
    pub fn ca_key_pem(&self) -> &str {
        self.ca.key_pem()
    }

    pub fn ca_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A new join token; its text is returned once and never stored.
    pub async fn create_token(
        &self,
        req: &TokenRequest,
    ) -> Result<(JoinToken, TokenInfo), BouncerError> {
        if Role::parse(&req.role).is_none() {
            return Err(BouncerError::Invalid {
                field: "role",
                message: format!(
                    "{:?} is not a role a token can grant; use --role worker, or --role master \
                     for a master joining with `dash server --join`",
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
        self.log
            .propose(Command::CreateToken {
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
        self.log
            .propose(Command::RevokeToken {
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
        self.log
            .propose(Command::SetNodeCert {
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
            Some(serials) if is_recorded(&serials, &id) => Ok(id),
            Some(_) => Err(BouncerError::Refused(format!(
                "certificate {} of node {} was replaced; the node must use its newest certificate",
                id.serial, id.node
            ))),
        }
    }
}

/// Whether `id`'s certificate is one of the two the state records for its node (current and,
/// during a rotation, previous).
pub fn is_recorded((current, previous): &(String, String), id: &PeerIdentity) -> bool {
    [current, previous]
        .iter()
        .any(|s| pki::canonical_serial(s) == id.serial)
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
    pki::write_private(&key_path, ca.key_pem().as_bytes())?;
    pki::write_private(&cert_path, ca.cert_pem.as_bytes())?;
    Ok(ca)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dash_core::api::NodeState;
    use dash_core::command::NodeRecord;

    use super::*;

    async fn bouncer() -> (tempfile::TempDir, NodeBouncer) {
        let dir = tempfile::tempdir().unwrap();
        let pool = dash_store::open(&dir.path().join("dash.db")).await.unwrap();
        let ca = load_or_create_ca(&dir.path().join("pki"), "test").unwrap();
        let log = StateLog::new(pool, Default::default());
        let b = NodeBouncer::new(log, ca, Duration::from_secs(3600)).unwrap();
        (dir, b)
    }

    fn refused(r: Result<Role, BouncerError>) -> String {
        match r {
            Err(BouncerError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_bad_token_is_refused_with_its_reason() {
        let (_d, b) = bouncer().await;
        let req = |ttl_s| TokenRequest {
            role: "worker".into(),
            ttl_s,
        };
        let (good, _) = b.create_token(&req(None)).await.unwrap();
        assert_eq!(
            b.check_token(&good.to_string()).await.unwrap(),
            Role::Worker
        );

        let mut wrong = good.clone();
        wrong.secret = "0".repeat(32);
        assert!(refused(b.check_token(&wrong.to_string()).await).contains("wrong secret"));
        let mut unknown = good.clone();
        unknown.id = "deadbeef".into();
        assert!(refused(b.check_token(&unknown.to_string()).await).contains("unknown"));
        let mut other = good.clone();
        other.ca_fingerprint = "a".repeat(64);
        assert!(refused(b.check_token(&other.to_string()).await).contains("another cluster"));
        assert!(refused(b.check_token("garbage").await).contains("DASH1-"));

        let (short, _) = b.create_token(&req(Some(1))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(refused(b.check_token(&short.to_string()).await).contains("expired"));

        let (revoked, info) = b.create_token(&req(None)).await.unwrap();
        b.revoke(&info.id).await.unwrap();
        assert!(refused(b.check_token(&revoked.to_string()).await).contains("revoked"));
        assert!(matches!(
            b.revoke("nope").await,
            Err(BouncerError::NotFound(_))
        ));

        for (role, ttl_s) in [("admin", None), ("worker", Some(0))] {
            let r = b
                .create_token(&TokenRequest {
                    role: role.into(),
                    ttl_s,
                })
                .await;
            assert!(
                matches!(r, Err(BouncerError::Invalid { .. })),
                "{role} {ttl_s:?}"
            );
        }
        // The store holds hashes only.
        let stored = b.store.tokens().await.unwrap();
        assert!(
            stored
                .iter()
                .all(|(_, h)| *h != good.secret && h.len() == 64)
        );
    }

    #[tokio::test]
    async fn certificates_of_removed_nodes_and_old_serials_are_refused() {
        let (_d, b) = bouncer().await;
        let node = NodeRecord {
            id: "w1".into(),
            address: "10.0.0.2:7072".into(),
            role: dash_core::api::NodeRole::Worker,
            state: NodeState::Ready,
            labels: Default::default(),
            capacity: Default::default(),
            subnet: "10.89.0.0/24".into(),
            runtime: "crun".into(),
        };
        b.log
            .propose(Command::UpsertNode {
                node: Box::new(node),
                at_ms: 1,
            })
            .await
            .unwrap();
        let der = |pem: &str| {
            x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap()
                .1
                .contents
        };
        let (_, csr) = pki::new_csr("w1").unwrap();
        let first = b.issue("w1", Role::Worker, &csr).await.unwrap();
        assert_eq!(
            b.authorize(Some(&der(&first.pem))).await.unwrap().node,
            "w1"
        );
        assert!(matches!(
            b.authorize(None).await,
            Err(BouncerError::Refused(_))
        ));
        // Two renewals: the first certificate is neither current nor previous any more.
        let second = b.issue("w1", Role::Worker, &csr).await.unwrap();
        assert!(
            b.authorize(Some(&der(&first.pem))).await.is_ok(),
            "previous still valid"
        );
        let third = b.issue("w1", Role::Worker, &csr).await.unwrap();
        assert!(b.authorize(Some(&der(&first.pem))).await.is_err());
        assert!(b.authorize(Some(&der(&second.pem))).await.is_ok());
        b.log
            .propose(Command::RemoveNode {
                id: "w1".into(),
                force: true,
            })
            .await
            .unwrap();
        let err = b
            .authorize(Some(&der(&third.pem)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not part of this cluster"), "{err}");
    }
}
