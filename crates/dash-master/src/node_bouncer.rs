//! node_bouncer: who may be part of the cluster.
//!
//! - The cluster CA, made at the first start (`<data>/pki/ca.crt`, `ca.key` mode 0600).
//! - Join tokens (`tokens`): `dash token create --role worker [--ttl 1h]`.
//! - Admission: a joining node sends its token and a CSR; the bouncer checks the token (and
//!   says which check failed; an access token for the admin API does not admit), signs the CSR's key for that node name, records the serial.
//! - Authorisation of every later call: the peer's certificate (verified by TLS against the CA)
//!   must name a node that still exists and present one of the two serials the store keeps
//!   for it (current and, during a rotation, previous). `dash node rm` forgets the node, so its
//!   certificate is refused from then on. A certificate found good is trusted for
//!   [`VERIFIED_FOR`] without asking the state again, as long as no node's certificates or
//!   membership changed (so that a fleet's heartbeats do not each cost a read).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dash_core::command::Command;
use dash_rpc::pki::{self, Ca, IssuedCert, PeerIdentity, Role};
use dash_store::MasterStore;

use crate::state_log::StateLog;
use crate::tokens::{TokenError, TokenRole, Tokens};

/// The bouncer refuses, and fails, as the tokens do: a refusal's message says which check
/// failed (of the token or of the certificate), for the operator.
pub type BouncerError = TokenError;

/// How long a certificate found good is trusted without asking the state again (and only while
/// no node's certificates or membership changed meanwhile).
pub const VERIFIED_FOR: Duration = Duration::from_secs(1);

type VerifiedCerts = std::collections::HashMap<(String, String), (std::time::Instant, u64)>;

#[derive(Clone)]
pub struct NodeBouncer {
    log: StateLog,
    store: MasterStore,
    ca: Arc<Ca>,
    tokens: Tokens,
    cert_validity: Duration,
    /// (node, serial) → when, and at which generation of the nodes' identities, the state
    /// last said that certificate is the node's.
    verified: Arc<std::sync::Mutex<VerifiedCerts>>,
}

impl NodeBouncer {
    pub fn new(log: StateLog, ca: Ca, cert_validity: Duration) -> Result<Self, BouncerError> {
        let fingerprint = ca.fingerprint()?;
        Ok(Self {
            store: log.store().clone(),
            tokens: Tokens::new(log.clone(), &fingerprint),
            log,
            ca: Arc::new(ca),
            cert_validity,
            verified: Default::default(),
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
        self.tokens.ca_fingerprint()
    }

    /// The cluster's tokens (join and access).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Checks a join token; the error says exactly which check failed.
    pub async fn check_token(&self, text: &str) -> Result<Role, BouncerError> {
        let refused = |why: String| BouncerError::Refused(format!("join refused: {why}"));
        let held = self.tokens.check(text).await.map_err(|e| match e {
            TokenError::Store(e) => BouncerError::Store(e),
            other => refused(other.to_string()),
        })?;
        match held.role {
            TokenRole::Worker => Ok(Role::Worker),
            TokenRole::Master => Ok(Role::Master),
            access => Err(refused(format!(
                "token {} is an access token (role {}) for the admin API; a node joins with a \
                 token of `dash token create --role worker` (or master)",
                held.info.id,
                access.as_str()
            ))),
        }
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
        let key = (id.node.clone(), id.serial.clone());
        let generation = self.store.identities_generation();
        if let Ok(v) = self.verified.lock()
            && v.get(&key)
                .is_some_and(|(at, g)| *g == generation && at.elapsed() < VERIFIED_FOR)
        {
            return Ok(id);
        }
        let verdict = self.ask_state(id).await;
        if verdict.is_ok()
            && let Ok(mut v) = self.verified.lock()
        {
            if v.len() > 200_000 {
                v.retain(|_, (at, _)| at.elapsed() < VERIFIED_FOR);
            }
            v.insert(key, (std::time::Instant::now(), generation));
        }
        verdict
    }

    /// Whether the state holds `id`'s certificate as its node's.
    async fn ask_state(&self, id: PeerIdentity) -> Result<PeerIdentity, BouncerError> {
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
    async fn only_join_tokens_admit_and_refusals_say_why() {
        let (_d, b) = bouncer().await;
        let create = |role: &str| {
            let req = dash_core::api::TokenRequest {
                role: role.into(),
                ttl_s: None,
            };
            let t = b.tokens().clone();
            async move { t.create(&req).await.unwrap().0.to_string() }
        };
        assert_eq!(
            b.check_token(&create("worker").await).await.unwrap(),
            Role::Worker
        );
        assert_eq!(
            b.check_token(&create("master").await).await.unwrap(),
            Role::Master
        );
        for access in ["read", "deploy", "admin"] {
            let why = refused(b.check_token(&create(access).await).await);
            assert!(
                why.contains("access token") && why.contains(access),
                "{why}"
            );
        }
        assert!(refused(b.check_token("garbage").await).starts_with("join refused: "));
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
