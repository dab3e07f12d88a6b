//! Tokens: the secrets that let someone in.
//!
//! - **Join tokens** (`worker`, `master`) admit a node (node_bouncer checks them at `Join`).
//! - **Access tokens** (`read`, `deploy`, `admin`) open the admin API to a person or a
//!   pipeline (admin_api's `auth` checks them on every request).
//!
//! Both are made by `dash token create --role R [--ttl D]` and look alike,
//! `DASH1-<CA fingerprint>-<id>.<secret>`: the fingerprint lets a joining node and `dash
//! login` pin the cluster's CA. Only a SHA-256 of the secret is kept in the replicated state;
//! a token can expire and be revoked. The bootstrap token in `<data-dir>/admin.token` is an
//! admin token that is never in the state (it opens a fresh cluster).

use std::sync::Arc;

use dash_core::api::{TokenInfo, TokenRequest};
use dash_core::command::Command;
use dash_rpc::pki::{self, JoinToken};
use dash_store::{MasterStore, StoreError};

use crate::now_ms;
use crate::state_log::StateLog;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    /// Joins a node as a worker.
    Worker,
    /// Joins a node as a master.
    Master,
    /// Admin API, GETs.
    Read,
    /// Admin API, GETs and the work of shipping services (apply, scale, rollback, exec…).
    Deploy,
    /// Admin API, everything (nodes, tokens, backups, audit).
    Admin,
}

impl TokenRole {
    pub const ALL: [TokenRole; 5] = [
        TokenRole::Read,
        TokenRole::Deploy,
        TokenRole::Admin,
        TokenRole::Worker,
        TokenRole::Master,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Worker => "worker",
            TokenRole::Master => "master",
            TokenRole::Read => "read",
            TokenRole::Deploy => "deploy",
            TokenRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<TokenRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether it joins nodes (rather than opening the admin API).
    pub fn joins(self) -> bool {
        matches!(self, TokenRole::Worker | TokenRole::Master)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token (or, for the node bouncer, the certificate) was refused; the message says
    /// which check failed, for the operator.
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

/// A checked token: what the state records of it.
#[derive(Debug, Clone)]
pub struct Holder {
    pub info: TokenInfo,
    pub role: TokenRole,
}

#[derive(Clone)]
pub struct Tokens {
    log: StateLog,
    store: MasterStore,
    fingerprint: Arc<str>,
}

impl Tokens {
    /// Tokens of the cluster whose CA has `ca_fingerprint` (pki::Ca::fingerprint).
    pub fn new(log: StateLog, ca_fingerprint: &str) -> Self {
        Self {
            store: log.store().clone(),
            log,
            fingerprint: ca_fingerprint.into(),
        }
    }

    pub fn ca_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A new token; its text is returned once and never stored.
    pub async fn create(&self, req: &TokenRequest) -> Result<(JoinToken, TokenInfo), TokenError> {
        let Some(role) = TokenRole::parse(&req.role) else {
            return Err(TokenError::Invalid {
                field: "role",
                message: format!(
                    "{:?} is not a role a token can grant; use --role read, deploy or admin for \
                     the admin API, --role worker or master for a node joining the cluster",
                    req.role
                ),
            });
        };
        let ttl_ms = match req.ttl_s {
            None => None,
            Some(0) => {
                return Err(TokenError::Invalid {
                    field: "ttl",
                    message:
                        "0s: a token must live at least a second; leave --ttl out for no expiry"
                            .into(),
                });
            }
            Some(s) if s > 10 * 365 * 24 * 3600 => {
                return Err(TokenError::Invalid {
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
            role: role.as_str().to_string(),
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

    /// Every token, newest first (never a secret).
    pub async fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(self
            .store
            .tokens()
            .await?
            .into_iter()
            .map(|(t, _)| t)
            .collect())
    }

    /// Revokes token `id` (again, if it was), and answers what it now is.
    pub async fn revoke(&self, id: &str) -> Result<TokenInfo, TokenError> {
        if self.store.token(id).await?.is_none() {
            return Err(TokenError::NotFound(format!(
                "no token with id {id:?}; `dash token ls` lists them"
            )));
        }
        self.log
            .propose(Command::RevokeToken {
                id: id.to_string(),
                at_ms: now_ms(),
            })
            .await?;
        match self.store.token(id).await? {
            Some((info, _)) => Ok(info),
            None => Err(TokenError::NotFound(format!("token {id:?} is gone"))),
        }
    }

    /// Checks a token's text; the error says exactly which check failed (the token's id
    /// included, never its secret).
    pub async fn check(&self, text: &str) -> Result<Holder, TokenError> {
        let token = JoinToken::parse(text).map_err(|e| TokenError::Refused(e.to_string()))?;
        if !pki::constant_time_eq(&token.ca_fingerprint, &self.fingerprint) {
            return Err(TokenError::Refused(
                "the token is for another cluster (its CA fingerprint differs)".into(),
            ));
        }
        let Some((info, hash)) = self.store.token(&token.id).await? else {
            return Err(TokenError::Refused(format!(
                "token {} is unknown to this cluster",
                token.id
            )));
        };
        if !pki::constant_time_eq(&hash, &token.secret_hash()) {
            return Err(TokenError::Refused(format!(
                "token {} has a wrong secret",
                token.id
            )));
        }
        if let Some(at) = info.revoked_ms {
            return Err(TokenError::Refused(format!(
                "token {} was revoked {} ago",
                token.id,
                ago(at)
            )));
        }
        if let Some(exp) = info.expires_ms
            && exp <= now_ms()
        {
            return Err(TokenError::Refused(format!(
                "token {} expired {} ago; create a new one with `dash token create`",
                token.id,
                ago(exp)
            )));
        }
        let role = TokenRole::parse(&info.role).ok_or_else(|| {
            TokenError::Refused(format!(
                "token {} has role {:?}, which this version does not know",
                token.id, info.role
            ))
        })?;
        Ok(Holder { info, role })
    }
}

/// How long ago `ms` was, for refusals.
pub(crate) fn ago(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let pool = dash_store::open(&dir.path().join("dash.db")).await.unwrap();
        let log = StateLog::new(pool, Default::default());
        (dir, Tokens::new(log, &"f".repeat(64)))
    }

    fn refused(r: Result<Holder, TokenError>) -> String {
        match r {
            Err(TokenError::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_bad_token_is_refused_with_its_reason() {
        let (_d, t) = tokens().await;
        let req = |role: &str, ttl_s| TokenRequest {
            role: role.into(),
            ttl_s,
        };
        for role in TokenRole::ALL {
            let (good, info) = t.create(&req(role.as_str(), None)).await.unwrap();
            let held = t.check(&good.to_string()).await.unwrap();
            assert_eq!((held.role, held.info.id), (role, info.id));
        }
        let (good, _) = t.create(&req("deploy", None)).await.unwrap();
        let mut wrong = good.clone();
        wrong.secret = "0".repeat(32);
        assert!(refused(t.check(&wrong.to_string()).await).contains("wrong secret"));
        let mut unknown = good.clone();
        unknown.id = "deadbeef".into();
        assert!(refused(t.check(&unknown.to_string()).await).contains("unknown"));
        let mut other = good.clone();
        other.ca_fingerprint = "a".repeat(64);
        assert!(refused(t.check(&other.to_string()).await).contains("another cluster"));
        assert!(refused(t.check("garbage").await).contains("DASH1-"));

        let (short, _) = t.create(&req("read", Some(1))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(refused(t.check(&short.to_string()).await).contains("expired"));

        let (revoked, info) = t.create(&req("admin", None)).await.unwrap();
        let after = t.revoke(&info.id).await.unwrap();
        assert!(after.revoked_ms.is_some());
        assert!(refused(t.check(&revoked.to_string()).await).contains("revoked"));
        assert!(matches!(
            t.revoke("nope").await,
            Err(TokenError::NotFound(_))
        ));

        for (role, ttl_s, field) in [
            ("root", None, "role"),
            ("", None, "role"),
            ("worker", Some(0), "ttl"),
            ("read", Some(u64::MAX), "ttl"),
        ] {
            match t.create(&req(role, ttl_s)).await {
                Err(TokenError::Invalid { field: f, .. }) => assert_eq!(f, field, "{role}"),
                other => panic!("{role} {ttl_s:?}: {other:?}"),
            }
        }
        // The store holds hashes only.
        let stored = t.store.tokens().await.unwrap();
        assert!(
            stored
                .iter()
                .all(|(_, h)| *h != good.secret && h.len() == 64)
        );
    }
}
