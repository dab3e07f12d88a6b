//! Registry credentials in the cluster's state: `dash login` at any master checks them
//! against the registry, seals them with the cluster's data key (`crate::sealing`) and
//! proposes `Command::KeepRegistryLogin`; every master's puller asks the state first
//! (`dash_image::registry::CredentialStore`), so a pull works at whichever master runs it,
//! after the master that took the login is gone too.
//!
//! Credentials an older release stored in `<data>/registries.json` are moved into the state
//! once a leader takes them (then removed from the file).

use std::sync::Arc;
use std::time::Duration;

use dash_core::command::Command;
use dash_image::registry::{CredentialStore, PullError, Puller};
use dash_store::{MasterStore, StoreError};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::sealing::DataKey;
use crate::state_log::StateLog;

/// The state's registry credentials, sealed with the data key.
#[derive(Clone)]
pub struct RegistryLogins {
    log: StateLog,
    key: Arc<DataKey>,
}

impl RegistryLogins {
    pub fn new(log: StateLog, key: Arc<DataKey>) -> Self {
        RegistryLogins { log, key }
    }

    fn store(&self) -> &MasterStore {
        self.log.store()
    }

    /// Keeps `username` and `password` for `registry` (canonical `host[:port]`), replacing
    /// what was kept for it.
    pub async fn keep(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), KeepError> {
        let sealed = self
            .key
            .seal(registry, format!("{username}:{password}").as_bytes())
            .map_err(|e| KeepError::Seal(e.to_string()))?;
        self.log
            .propose(Command::KeepRegistryLogin {
                registry: registry.to_string(),
                sealed,
                at_ms: dash_core::clock::now_ms(),
            })
            .await
            .map_err(KeepError::Store)?;
        Ok(())
    }

    /// Forgets what was kept for `registry`; whether there was anything.
    pub async fn forget(&self, registry: &str) -> Result<bool, StoreError> {
        let applied = self
            .log
            .propose(Command::ForgetRegistryLogin {
                registry: registry.to_string(),
            })
            .await?;
        Ok(applied.changed)
    }

    async fn read(&self, registry: &str) -> Result<Option<(String, String)>, String> {
        // A login or logout acknowledged at another master is seen here (read index); with no
        // leader to confirm it, this master's own state serves.
        if let Some(raft) = self.log.raft()
            && let Err(e) = raft.read_barrier().await
        {
            tracing::warn!(error = %e, registry, "registry credentials read from this master's state");
        }
        let Some(sealed) = self
            .store()
            .registry_login(registry)
            .await
            .map_err(|e| format!("reading the state: {e}"))?
        else {
            return Ok(None);
        };
        let plain = self
            .key
            .open(registry, &sealed)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8(plain).map_err(|_| "not UTF-8 once opened".to_string())?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| "not user:password once opened".to_string())?;
        Ok(Some((user.to_string(), password.to_string())))
    }
}

impl CredentialStore for RegistryLogins {
    fn lookup<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, String>> {
        Box::pin(self.read(registry))
    }
}

/// Why credentials could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("sealing the credentials: {0}")]
    Seal(String),
    #[error("recording the credentials in the state")]
    Store(#[source] StoreError),
}

/// Moves the credentials of `<data>/registries.json` (an older release's login at this
/// master) into the state, each removed from the file once the state holds it. Retried every
/// few seconds until done: a master of several needs a leader to take them.
pub async fn adopt_file(
    logins: RegistryLogins,
    puller: Arc<Puller>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match adopt_once(&logins, &puller).await {
            Ok(0) => return,
            Ok(n) => {
                tracing::info!(
                    registries = n,
                    "registry credentials moved from registries.json into the cluster's state"
                );
                return;
            }
            Err(e) => tracing::warn!(error = %e, "moving registries.json into the state; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn adopt_once(logins: &RegistryLogins, puller: &Puller) -> Result<usize, String> {
    let stored = puller
        .stored_logins()
        .map_err(|e: PullError| e.to_string())?;
    for (registry, user, password) in &stored {
        // What the state already holds for the registry is newer than the file.
        let held = logins
            .store()
            .registry_login(registry)
            .await
            .map_err(|e| e.to_string())?;
        if held.is_none() {
            logins
                .keep(registry, user, password)
                .await
                .map_err(|e| e.to_string())?;
        }
        puller.logout(registry).map_err(|e| e.to_string())?;
    }
    Ok(stored.len())
}
