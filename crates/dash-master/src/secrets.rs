//! Secrets and configs: `dash secret create|update|ls|inspect|rm|rotate-key` and `dash config
//! …`, the versions services are pinned to, and the values handed to the nodes that run them.
//!
//! ```text
//!  value ──seal(data key k, "secret/NAME")──► state: secret_versions.sealed = "k<id>:v1:…"
//!  data key k (32 random bytes) ──seal(key from the CA's, "data key k")──► state: data_keys
//! ```
//!
//! Every master opens both (it holds the CA key); a worker never holds a key: it gets the
//! values of the replicas it runs, over mutual TLS, and writes them only to a tmpfs. A value
//! is never logged, never in an event, an API answer or the state in clear. `rotate-key`
//! makes a new data key, seals every kept value again with it and drops the old keys, in one
//! entry of the state.

use std::sync::Arc;

use base64::Engine as _;
#[cfg(test)]
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};

/// Standard base64 with padding; the unused bits of the last symbol need not be zero (as most
/// encoders and decoders take it).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);
use dash_core::ServiceSpec;
use dash_core::api::{ReplicaFile, SecretInfo};
use dash_core::command::{Command, Resealed};
use dash_core::secret::{Kind, MAX_BYTES, check_name};
use dash_store::{MasterStore, StoreError};

use crate::now_ms;
use crate::sealing::{DataKey, SealError};
use crate::state_log::StateLog;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The state refused it (exists already, still used, changed during a rotation).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
    #[error("{0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct Secrets {
    log: StateLog,
    store: MasterStore,
    /// The key derived from the CA's: it seals the data keys.
    kek: Arc<DataKey>,
}

impl From<dash_store::Rejection> for SecretError {
    fn from(r: dash_store::Rejection) -> Self {
        match r {
            dash_store::Rejection::NotFound { what, name } => {
                SecretError::NotFound(format!("no {what} {name:?}; `dash {what} ls` lists them"))
            }
            dash_store::Rejection::Invalid { field, message } => SecretError::Invalid {
                field: field.into_owned(),
                message,
            },
            other => SecretError::Conflict(other.to_string()),
        }
    }
}

fn context(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

impl Secrets {
    pub fn new(log: StateLog, kek: Arc<DataKey>) -> Self {
        Self {
            store: log.store().clone(),
            log,
            kek,
        }
    }

    /// The newest data key, made (and recorded) if the cluster has none yet.
    async fn current_key(&self) -> Result<(u64, DataKey), SecretError> {
        if let Some(k) = self.keys().await?.pop() {
            return Ok(k);
        }
        let bytes = DataKey::random()?;
        let sealed = self.kek.seal("data key 1", &bytes)?;
        self.log
            .propose(Command::AddDataKey {
                id: 1,
                sealed,
                at_ms: now_ms(),
            })
            .await?;
        // Another master may have made key 1 first: the state's is the one.
        self.keys()
            .await?
            .pop()
            .ok_or_else(|| SecretError::Corrupt("no data key after making one".into()))
    }

    /// Every data key, opened, oldest first.
    async fn keys(&self) -> Result<Vec<(u64, DataKey)>, SecretError> {
        let mut out = Vec::new();
        for (id, sealed) in self.store.data_keys().await? {
            let bytes = self.kek.open(&format!("data key {id}"), &sealed)?;
            out.push((id, DataKey::from_bytes(&bytes)?));
        }
        Ok(out)
    }

    /// `data` checked: base64 of at most 500 KiB. The error names the field.
    pub fn decode(data: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = LENIENT
            .decode(data.trim())
            .map_err(|e| SecretError::Invalid {
                field: "data".into(),
                message: format!("not base64: {e}"),
            })?;
        if bytes.len() > MAX_BYTES {
            return Err(SecretError::Invalid {
                field: "data".into(),
                message: format!(
                    "{} bytes is over the limit of {MAX_BYTES} (500 KiB); keep large files in \
                     the image or a volume",
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// A new secret (config), or a new version of one (`create` false).
    pub async fn put(
        &self,
        kind: Kind,
        name: &str,
        value: &[u8],
        create: bool,
    ) -> Result<SecretInfo, SecretError> {
        if let Err(message) = check_name(name) {
            // A new version of what cannot exist: there is no such thing (as for a read).
            return Err(match create {
                true => SecretError::Invalid {
                    field: "name".into(),
                    message,
                },
                false => SecretError::NotFound(format!(
                    "no {k} {name:?}; `dash {k} ls` lists them",
                    k = kind.as_str()
                )),
            });
        }
        if value.len() > MAX_BYTES {
            return Err(SecretError::Invalid {
                field: "data".into(),
                message: format!("{} bytes is over the limit of {MAX_BYTES}", value.len()),
            });
        }
        let (id, key) = self.current_key().await?;
        let sealed = format!("k{id}:{}", key.seal(&context(kind, name), value)?);
        self.log
            .propose(Command::PutSecret {
                kind,
                name: name.to_string(),
                sealed,
                size: value.len() as u64,
                create,
                at_ms: now_ms(),
            })
            .await?
            .accepted()?;
        self.get(kind, name).await
    }

    pub async fn get(&self, kind: Kind, name: &str) -> Result<SecretInfo, SecretError> {
        self.store.secret(kind, name).await?.ok_or_else(|| {
            SecretError::NotFound(format!(
                "no {k} {name:?}; `dash {k} ls` lists them",
                k = kind.as_str()
            ))
        })
    }

    pub async fn list(&self, kind: Kind) -> Result<Vec<SecretInfo>, SecretError> {
        Ok(self.store.secrets(kind).await?)
    }

    pub async fn remove(&self, kind: Kind, name: &str) -> Result<(), SecretError> {
        self.log
            .propose(Command::RemoveSecret {
                kind,
                name: name.to_string(),
            })
            .await?
            .accepted()?;
        Ok(())
    }

    /// A new data key; every kept value sealed again with it; the old keys dropped. Its id.
    pub async fn rotate_key(&self) -> Result<u64, SecretError> {
        let keys = self.keys().await?;
        let id = keys.last().map_or(1, |(id, _)| id + 1);
        let bytes = DataKey::random()?;
        let new = DataKey::from_bytes(&bytes)?;
        let sealed_key = self.kek.seal(&format!("data key {id}"), &bytes)?;
        let mut resealed = Vec::new();
        for v in self.store.secret_versions().await? {
            let plain = open_with(&keys, v.kind, &v.name, &v.sealed)?;
            resealed.push(Resealed {
                sealed: format!("k{id}:{}", new.seal(&context(v.kind, &v.name), &plain)?),
                ..v
            });
        }
        self.log
            .propose(Command::RotateDataKey {
                id,
                sealed_key,
                resealed,
                at_ms: now_ms(),
            })
            .await?
            .accepted()?;
        Ok(id)
    }

    /// The files of a replica whose service version has `spec`: each listed secret and
    /// config at its pinned version, opened.
    pub async fn files_of(&self, spec: &ServiceSpec) -> Result<Vec<ReplicaFile>, SecretError> {
        if spec.secrets.is_empty() && spec.configs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys().await?;
        let mut out = Vec::new();
        let all = spec
            .secrets
            .iter()
            .map(|r| (Kind::Secret, r))
            .chain(spec.configs.iter().map(|r| (Kind::Config, r)));
        for (kind, r) in all {
            let sealed = self
                .store
                .secret_sealed(kind, &r.name, r.version)
                .await?
                .ok_or_else(|| {
                    SecretError::NotFound(format!(
                        "{} {} version {} is not kept any more",
                        kind.as_str(),
                        r.name,
                        r.version
                    ))
                })?;
            out.push(ReplicaFile {
                kind,
                name: r.name.clone(),
                version: r.version,
                data: open_with(&keys, kind, &r.name, &sealed)?,
            });
        }
        Ok(out)
    }
}

/// Pins every secret and config `spec` lists to its current version (at apply); an unknown
/// one is an error naming the entry.
pub async fn pin(store: &MasterStore, spec: &mut ServiceSpec) -> Result<(), SecretError> {
    pin_with(store, spec, false).await
}

/// For a rollback: each entry keeps the version the earlier spec had while the state still
/// holds it (its replicas are still around), else gets the current one.
pub async fn pin_kept(store: &MasterStore, spec: &mut ServiceSpec) -> Result<(), SecretError> {
    pin_with(store, spec, true).await
}

async fn pin_with(
    store: &MasterStore,
    spec: &mut ServiceSpec,
    keep: bool,
) -> Result<(), SecretError> {
    for (kind, list) in [
        (Kind::Secret, &mut spec.secrets),
        (Kind::Config, &mut spec.configs),
    ] {
        for (i, r) in list.iter_mut().enumerate() {
            if keep
                && r.version > 0
                && store
                    .secret_sealed(kind, &r.name, r.version)
                    .await?
                    .is_some()
            {
                continue;
            }
            match store.secret(kind, &r.name).await? {
                Some(info) => r.version = info.version,
                None => {
                    let k = kind.as_str();
                    return Err(SecretError::Invalid {
                        field: format!("{}[{i}].name", kind.plural()),
                        message: format!(
                            "no {k} {:?} in the cluster; create it first with `dash {k} create \
                             {} -f FILE`",
                            r.name, r.name
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Opens a `k<id>:…` value with the key it names.
fn open_with(
    keys: &[(u64, DataKey)],
    kind: Kind,
    name: &str,
    sealed: &str,
) -> Result<Vec<u8>, SecretError> {
    let (id, rest) = sealed
        .strip_prefix('k')
        .and_then(|s| s.split_once(':'))
        .and_then(|(id, rest)| Some((id.parse::<u64>().ok()?, rest)))
        .ok_or_else(|| SecretError::Corrupt(format!("{} {name}: no key id", kind.as_str())))?;
    let key = keys
        .iter()
        .find(|(k, _)| *k == id)
        .map(|(_, k)| k)
        .ok_or_else(|| {
            SecretError::Corrupt(format!(
                "{} {name}: sealed with data key {id}, which the state no longer has",
                kind.as_str()
            ))
        })?;
    Ok(key.open(&context(kind, name), rest)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn secrets() -> (tempfile::TempDir, Secrets) {
        let dir = tempfile::tempdir().unwrap();
        let pool = dash_store::open(&dir.path().join("dash.db")).await.unwrap();
        let log = StateLog::new(pool, Default::default());
        let kek = Arc::new(DataKey::from_ca_key("test ca key").unwrap());
        (dir, Secrets::new(log, kek))
    }

    #[tokio::test]
    async fn values_are_sealed_in_the_state_and_open_after_a_key_rotation() {
        let (dir, s) = secrets().await;
        s.put(Kind::Secret, "pw", b"hunter2-value", true)
            .await
            .unwrap();
        s.put(Kind::Config, "pw", b"a config", true).await.unwrap();
        let mut spec = dash_core::config_parser::parse_service(
            "t.toml",
            "name = \"web\"\nimage = \"busybox\"\n[[secrets]]\nname = \"pw\"\n[[configs]]\nname = \"pw\"\ntarget = \"/etc/pw\"\n",
        )
        .unwrap();
        pin(&s.store, &mut spec).await.unwrap();
        assert_eq!((spec.secrets[0].version, spec.configs[0].version), (1, 1));
        let files = s.files_of(&spec).await.unwrap();
        assert_eq!(files[0].data, b"hunter2-value");
        assert_eq!(files[1].data, b"a config");
        // Nothing in the database file says it in clear.
        let db = std::fs::read(dir.path().join("dash.db")).unwrap();
        let wal = std::fs::read(dir.path().join("dash.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(13).any(|w| w == b"hunter2-value"));
        }
        assert_eq!(s.rotate_key().await.unwrap(), 2);
        assert_eq!(s.store.data_keys().await.unwrap().len(), 1);
        let files = s.files_of(&spec).await.unwrap();
        assert_eq!(files[0].data, b"hunter2-value");

        // An unknown one is refused naming the entry; so are bad names and sizes.
        let mut other = spec.clone();
        other.secrets[0].name = "nope".into();
        let e = pin(&s.store, &mut other).await.unwrap_err().to_string();
        assert!(e.starts_with("secrets[0].name: no secret \"nope\""), "{e}");
        let e = s.put(Kind::Secret, "a/b", b"x", true).await.unwrap_err();
        assert!(
            matches!(e, SecretError::Invalid { ref field, .. } if field == "name"),
            "{e}"
        );
        let big = vec![0u8; MAX_BYTES + 1];
        let e = s.put(Kind::Secret, "big", &big, true).await.unwrap_err();
        assert!(
            matches!(e, SecretError::Invalid { ref field, .. } if field == "data"),
            "{e}"
        );
        assert!(Secrets::decode("!!!").is_err());
        assert_eq!(Secrets::decode(&BASE64.encode(b"ok")).unwrap(), b"ok");
    }
}
