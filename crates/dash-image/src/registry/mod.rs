//! registry: pulls images from OCI registries into the image store (`crate`), with
//! progress, single-flight and resumable downloads; logs in and out of registries.
//!
//! ```text
//!  Puller::pull(ref) ──single-flight by store tag──► pull.rs (one run, every caller awaits it)
//!     │                                                │ session.rs: oci-client, auth (bearer or basic)
//!     │                                                │ manifest.rs: index → platform → manifest
//!     │                                                ▼
//!     │                        each blob: store has it? cache has it? else download.rs,
//!     │                        single-flight by digest, verified while it streams into
//!     │                        <store>/pulls/partial/, renamed to <store>/pulls/blobs/<hex>
//!     │                                                ▼
//!     └── progress events ◄── ImageStore::import_pulled (unpack, diff_ids, refs.json last)
//! ```
//!
//! The registry protocol is `oci-client`'s; this module decides what to fetch, verifies it
//! and hands it to the store. Plain HTTP is used only for loopback registries and the ones
//! configured as insecure. A pull that is cancelled or killed keeps the blobs it completed
//! (verified) for the next attempt; a pull that receives content not matching its digest
//! keeps nothing.

mod credentials;
mod download;
mod error;
mod flight;
mod manifest;
mod progress;
mod pull;
mod reference;
mod session;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use tracing::Instrument as _;

pub use error::PullError;
pub use reference::{DEFAULT_REGISTRY, RegistryRef, check_registry, parse_reference};

use crate::{ImageError, ImageRecord, ImageStore, normalize_reference};
use credentials::Credentials;
use flight::Flights;
use progress::PullEvents;
use session::Session;

/// How to reach registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `host:port` of registries reached over plain HTTP, besides loopback ones (which always
    /// are).
    pub insecure: Vec<String>,
    /// Where `login` stores credentials (mode 0600), e.g. `<data>/registries.json`.
    pub credentials_file: PathBuf,
    /// A docker config directory (`DOCKER_CONFIG` or `~/.docker`) whose `config.json` `auths`
    /// are read too; `None` to use only `credentials_file`.
    pub docker_config: Option<PathBuf>,
    /// `(os, architecture)` in OCI terms that multi-platform indexes are resolved to.
    pub platform: (String, String),
}

impl RegistryConfig {
    /// Defaults: nothing insecure besides loopback, docker's config from
    /// [`RegistryConfig::default_docker_config`], this host's platform.
    pub fn new(credentials_file: PathBuf) -> Self {
        Self {
            insecure: Vec::new(),
            credentials_file,
            docker_config: Self::default_docker_config(),
            platform: Self::default_platform(),
        }
    }

    /// `$DOCKER_CONFIG`, else `$HOME/.docker`, if that directory exists.
    pub fn default_docker_config() -> Option<PathBuf> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
        dir.is_dir().then_some(dir)
    }

    /// `("linux", <this machine's architecture in OCI terms>)`: amd64, arm64, ...
    pub fn default_platform() -> (String, String) {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        ("linux".to_owned(), arch.to_owned())
    }

    fn validate(mut self) -> Result<Self, PullError> {
        self.insecure = self
            .insecure
            .iter()
            .map(|r| reference::check_registry(r))
            .collect::<Result<_, _>>()?;
        if self.platform.0.is_empty() || self.platform.1.is_empty() {
            return Err(PullError::Config {
                problem: format!(
                    "platform {:?}/{:?} needs both an os and an architecture",
                    self.platform.0, self.platform.1
                ),
            });
        }
        if self.credentials_file.as_os_str().is_empty() {
            return Err(PullError::Config {
                problem: "credentials_file is empty".to_owned(),
            });
        }
        Ok(self)
    }
}

/// What a pull reports while it runs. Every caller of a shared pull sees every event; one that
/// joins late first sees the milestones (all but `Blob`) it missed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PullProgress {
    /// The reference was resolved to an image manifest.
    Resolved {
        /// The canonical reference (`registry/repository[:tag][@digest]`).
        reference: String,
        /// `sha256:<hex>` of the image manifest (for a multi-platform index: the chosen one).
        manifest_digest: String,
        /// The layer blobs: digest and size in bytes.
        layers: Vec<(String, u64)>,
    },
    /// Bytes of a blob received so far (layers and the config).
    Blob {
        digest: String,
        done: u64,
        total: u64,
    },
    /// A blob is in place: downloaded and verified, or already there (`cached`).
    BlobDone { digest: String, cached: bool },
    /// All blobs are there; the store is unpacking and committing the image.
    Unpacking,
    /// The image is in the store.
    Done { image_id: String },
}

/// Pulls images into one store. Cheap to clone; clones share the running pulls and downloads.
#[derive(Clone)]
pub struct Puller {
    inner: Arc<Inner>,
}

/// Credentials kept elsewhere than in files (a master's replicated state): asked before
/// Dash's credentials file and docker's config.
pub trait CredentialStore: Send + Sync {
    /// The user name and password stored for `registry` (canonical `host[:port]`); an error
    /// says why they could not be read.
    fn lookup<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, String)>, String>>;
}

pub(crate) struct Inner {
    store: Arc<ImageStore>,
    cfg: RegistryConfig,
    /// Asked first for credentials (see [`Puller::use_credential_store`]).
    credential_store: OnceLock<Arc<dyn CredentialStore>>,
    /// Whole pulls, by the tag they store the image under.
    pulls: Flights<Result<ImageRecord, PullError>, PullEvents>,
    /// Blob downloads, by hex digest, shared by all pulls.
    blobs: Flights<Result<bool, PullError>, tokio::sync::watch::Sender<u64>>,
    /// Serialises rewrites of the credentials file within this process.
    credentials: Mutex<()>,
}

impl Puller {
    /// A puller for `store`. Checks the config; contacts no registry.
    pub fn new(store: Arc<ImageStore>, cfg: RegistryConfig) -> Result<Self, PullError> {
        let cfg = cfg.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                cfg,
                pulls: Flights::default(),
                blobs: Flights::default(),
                credential_store: OnceLock::new(),
                credentials: Mutex::new(()),
            }),
        })
    }

    /// The store images are pulled into.
    pub fn store(&self) -> &Arc<ImageStore> {
        &self.inner.store
    }

    /// Pulls `reference` (by tag or `@sha256:` digest) and tags it in the store as
    /// [`normalize_reference`]`(reference)`, so `ImageStore::resolve(reference)` finds it.
    ///
    /// Calls for the same reference while one runs share it: one download, one import, and
    /// every caller gets its result (an error too) and its progress. Concurrent pulls of
    /// different images download a blob they share once. Dropping the returned future leaves
    /// a shared pull running for the others; the last caller's drop cancels it, keeping the
    /// blobs it completed for the next attempt.
    pub async fn pull(
        &self,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<ImageRecord, PullError> {
        let rref = parse_reference(reference)?;
        let tag = normalize_reference(reference).map_err(|e| invalid_reference(reference, e))?;
        let inner = self.inner.clone();
        let job_tag = tag.clone();
        let span = tracing::info_span!("pull", reference = %tag);
        let (flight, events, joined) = self.inner.pulls.join(&tag, PullEvents::default, |events| {
            pull::run(inner, rref, job_tag, events)
                .instrument(span)
                .boxed()
        });
        if joined {
            tracing::debug!(reference, "joining a pull already running");
        }
        events.follow(flight, progress).await
    }

    /// From now on, credentials are looked up in `store` before the files (set once: later
    /// calls are ignored).
    pub fn use_credential_store(&self, store: Arc<dyn CredentialStore>) {
        let _ = self.inner.credential_store.set(store);
    }

    /// Checks `username` and `password` against `registry` (`host[:port]`) with a real
    /// authenticated request; returns the registry's canonical name. Stores nothing.
    pub async fn verify_login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<String, PullError> {
        let registry = reference::check_registry(registry)?;
        if username.is_empty() || username.contains(':') {
            return Err(PullError::AuthenticationFailed {
                registry,
                reason: "the user name must be non-empty and must not contain ':'".to_owned(),
            });
        }
        let credentials = Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        Session::new(&self.inner.cfg, &registry, Some(credentials))?
            .verify_login()
            .await?;
        Ok(registry)
    }

    /// The credentials in Dash's own file: `(registry, username, password)` each.
    pub fn stored_logins(&self) -> Result<Vec<(String, String, String)>, PullError> {
        credentials::stored(&self.inner.cfg.credentials_file)
    }

    /// Checks `username` and `password` against `registry` (`host[:port]`) with a real
    /// authenticated request, then stores them in the credentials file (mode 0600), replacing
    /// earlier ones for that registry.
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), PullError> {
        let registry = self.verify_login(registry, username, password).await?;
        let credentials = Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let _guard = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        credentials::store(&self.inner.cfg.credentials_file, &registry, &credentials)?;
        tracing::info!(registry, user = username, "logged in");
        Ok(())
    }

    /// Forgets the stored credentials for `registry`. Not being logged in is not an error.
    /// Credentials in docker's config are not touched.
    pub fn logout(&self, registry: &str) -> Result<(), PullError> {
        let registry = reference::check_registry(registry)?;
        let _guard = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if credentials::remove(&self.inner.cfg.credentials_file, &registry)? {
            tracing::info!(registry, "logged out");
        } else {
            tracing::info!(registry, "logout: no credentials were stored");
        }
        Ok(())
    }
}

fn invalid_reference(reference: &str, e: ImageError) -> PullError {
    match e {
        ImageError::InvalidReference { reference, reason } => {
            PullError::InvalidReference { reference, reason }
        }
        other => PullError::InvalidReference {
            reference: reference.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puller_is_send_sync_and_its_pull_future_is_send() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Puller>();
        fn send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(&dir.path().join("store")).unwrap());
        let puller = Puller::new(store, RegistryConfig::new(dir.path().join("r.json"))).unwrap();
        let callback = |_: PullProgress| {};
        let fut = puller.pull("127.0.0.1:1/x:1", &callback);
        send(&fut);
    }

    #[test]
    fn bad_configs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(&dir.path().join("store")).unwrap());
        let mut cfg = RegistryConfig::new(dir.path().join("r.json"));
        cfg.insecure = vec!["not a host".to_owned()];
        let err = Puller::new(store.clone(), cfg).err().unwrap().to_string();
        assert!(err.contains("not a host"), "{err}");
        let mut cfg = RegistryConfig::new(dir.path().join("r.json"));
        cfg.platform.1.clear();
        assert!(Puller::new(store, cfg).is_err());
    }

    #[test]
    fn the_default_platform_is_in_oci_terms() {
        let (os, arch) = RegistryConfig::default_platform();
        assert_eq!(os, "linux");
        assert_ne!(arch, "x86_64");
        assert_ne!(arch, "aarch64");
    }
}
