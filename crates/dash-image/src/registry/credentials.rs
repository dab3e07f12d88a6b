//! Registry credentials: Dash's own file (written by `login`, mode 0600) and, read only,
//! docker's `config.json`. Both use docker's format:
//!
//! ```text
//! { "auths": { "127.0.0.1:5000": { "auth": "<base64 of user:password>" } } }
//! ```
//!
//! Dash's file wins over docker's. Credential helpers (`credsStore`, `credHelpers`) are not
//! run: only inline `auth` (or `username` + `password`) entries are used.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::reference::canonical_registry;
use super::{PullError, RegistryConfig};

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    /// Whatever else a docker config holds; kept when Dash rewrites its own file.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

impl AuthEntry {
    fn credentials(&self, path: &Path, key: &str) -> Result<Option<Credentials>, PullError> {
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = |problem: &str| PullError::Credentials {
                path: path.to_path_buf(),
                problem: format!("the auth of {key}: {problem}"),
            };
            let decoded = BASE64
                .decode(auth.trim())
                .map_err(|_| bad("is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| bad("is not base64 of user:password"))?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            })),
            _ => Ok(None),
        }
    }
}

/// The credentials for `registry` (canonical name): Dash's file first, then docker's config.
pub(crate) fn lookup(
    cfg: &RegistryConfig,
    registry: &str,
) -> Result<Option<Credentials>, PullError> {
    let mut files = vec![cfg.credentials_file.clone()];
    if let Some(dir) = &cfg.docker_config {
        files.push(dir.join("config.json"));
    }
    for path in files {
        let file = read(&path)?;
        for (key, entry) in &file.auths {
            if canonical_registry(key) == registry
                && let Some(credentials) = entry.credentials(&path, key)?
            {
                tracing::debug!(registry, file = %path.display(), user = %credentials.username, "using stored credentials");
                return Ok(Some(credentials));
            }
        }
    }
    Ok(None)
}

/// Every entry of Dash's file with credentials: `(registry, username, password)`.
pub(crate) fn stored(path: &Path) -> Result<Vec<(String, String, String)>, PullError> {
    let file = read(path)?;
    let mut out = Vec::new();
    for (key, entry) in &file.auths {
        if let Some(c) = entry.credentials(path, key)? {
            out.push((canonical_registry(key), c.username, c.password));
        }
    }
    Ok(out)
}

/// Stores `credentials` for `registry` in Dash's file (created with mode 0600, replaced
/// atomically).
pub(crate) fn store(
    path: &Path,
    registry: &str,
    credentials: &Credentials,
) -> Result<(), PullError> {
    let mut file = read(path)?;
    file.auths
        .retain(|key, _| canonical_registry(key) != registry);
    let pair = format!("{}:{}", credentials.username, credentials.password);
    file.auths.insert(
        registry.to_owned(),
        AuthEntry {
            auth: Some(BASE64.encode(pair)),
            ..AuthEntry::default()
        },
    );
    write(path, &file)
}

/// Removes the credentials for `registry` from Dash's file. Returns whether there were any.
pub(crate) fn remove(path: &Path, registry: &str) -> Result<bool, PullError> {
    let mut file = read(path)?;
    let before = file.auths.len();
    file.auths
        .retain(|key, _| canonical_registry(key) != registry);
    if file.auths.len() == before {
        return Ok(false);
    }
    write(path, &file)?;
    Ok(true)
}

fn read(path: &Path) -> Result<AuthFile, PullError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AuthFile::default()),
        Err(e) => return Err(PullError::io("reading", path, e)),
    };
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "credentials file is readable by others");
    }
    serde_json::from_slice(&bytes).map_err(|e| PullError::Credentials {
        path: path.to_path_buf(),
        problem: format!("invalid json: {e}"),
    })
}

fn write(path: &Path, file: &AuthFile) -> Result<(), PullError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| PullError::io("creating directory", dir, e))?;
    let bytes = serde_json::to_vec_pretty(file).expect("credentials always serialise");
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}",
        path.file_name()
            .map_or("credentials".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = (|| -> io::Result<()> {
        let mut out = fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // The mode only applies to a new file: a leftover temp file keeps its own.
        out.set_permissions(fs::Permissions::from_mode(0o600))?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        PullError::io("writing", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, docker: Option<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            insecure: Vec::new(),
            credentials_file: dir.join("registries.json"),
            docker_config: docker,
            platform: RegistryConfig::default_platform(),
        }
    }

    #[test]
    fn stored_credentials_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), None);
        assert_eq!(lookup(&cfg, "127.0.0.1:5000").unwrap(), None);
        let creds = Credentials {
            username: "user".into(),
            password: "pa:ss".into(),
        };
        store(&cfg.credentials_file, "127.0.0.1:5000", &creds).unwrap();
        let mode = fs::metadata(&cfg.credentials_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(lookup(&cfg, "127.0.0.1:5000").unwrap(), Some(creds));
        assert_eq!(lookup(&cfg, "127.0.0.1:5001").unwrap(), None);
        assert!(remove(&cfg.credentials_file, "127.0.0.1:5000").unwrap());
        assert!(!remove(&cfg.credentials_file, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&cfg, "127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn docker_config_auths_are_read_and_ours_win() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker");
        fs::create_dir(&docker).unwrap();
        fs::write(
            docker.join("config.json"),
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}},
                               "reg.example:5000": {{"auth": "{}"}}}},
                    "credsStore": "desktop"}}"#,
                BASE64.encode("hub:hubpw"),
                BASE64.encode("d:dpw")
            ),
        )
        .unwrap();
        let cfg = config(dir.path(), Some(docker));
        let hub = lookup(&cfg, "docker.io").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "hubpw")
        );
        let ours = Credentials {
            username: "mine".into(),
            password: "x".into(),
        };
        store(&cfg.credentials_file, "reg.example:5000", &ours).unwrap();
        assert_eq!(lookup(&cfg, "reg.example:5000").unwrap(), Some(ours));
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), None);
        fs::write(
            &cfg.credentials_file,
            r#"{"auths": {"h:1": {"auth": "%%%"}}}"#,
        )
        .unwrap();
        let err = lookup(&cfg, "h:1").unwrap_err().to_string();
        assert!(
            err.contains("registries.json") && err.contains("base64"),
            "{err}"
        );
        fs::write(&cfg.credentials_file, "{").unwrap();
        let err = lookup(&cfg, "h:1").unwrap_err().to_string();
        assert!(err.contains("invalid json"), "{err}");
    }
}
