//! Contexts: the clusters this user talks to, as kubectl's contexts and Nomad's addresses.
//!
//! `~/.config/dash/config.toml` (or `$XDG_CONFIG_HOME/dash`, or `$DASH_CONFIG_DIR`) holds each
//! cluster's addresses and the CA it pinned at the first `dash login`; the tokens are in
//! `credentials.toml` beside it, mode 0600. Which cluster a command talks to, first found:
//!
//! 1. `--addr` or `DASH_ADDR` (`host:port`, `http://…`, `https://…`, comma-separated): the
//!    context is not used (its token is never sent to another address); the token is
//!    `DASH_TOKEN`, else `<data-dir>/admin.token`; an https address trusts `DASH_CA_FINGERPRINT`,
//!    `DASH_CACERT` (a PEM file), or the CA fingerprint inside a `DASH1-` token;
//! 2. the context named by `--context` or `DASH_CONTEXT`, else the current one (`dash context
//!    use`): its addresses, its pinned CA, its token (`DASH_TOKEN` still overrides it);
//! 3. `127.0.0.1:7070` with `<data-dir>/admin.token`: the local server, as on a master.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dash_rpc::https::Trust;
use serde::{Deserialize, Serialize};

/// `config.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The masters' admin API addresses, comma-separated (`https://10.0.0.1:7443,…`).
    pub addr: String,
    /// SHA-256 of the cluster CA (hex), pinned at the first login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// Or the operator's CA (PEM) of a server run with --tls-cert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

impl Context {
    pub fn trust(&self) -> Option<Trust> {
        match (&self.ca_cert, &self.ca_fingerprint) {
            (Some(pem), _) => Some(Trust::CaPem(pem.clone())),
            (None, Some(fp)) => Some(Trust::ClusterCa(fp.clone())),
            (None, None) => None,
        }
    }
}

/// `credentials.toml` (0600): context → token.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(flatten)]
    pub tokens: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// A token of `dash token create`, or the ID token of an OpenID Connect login.
    pub token: String,
    /// An OpenID Connect login's refresh token: a new ID token before the old one expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Where to refresh (the provider's token endpoint) and as which client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Entry {
    pub fn token(token: String) -> Entry {
        Entry {
            token,
            refresh_token: None,
            token_endpoint: None,
            client_id: None,
        }
    }
}

/// Where the files are: `$DASH_CONFIG_DIR`, `$XDG_CONFIG_HOME/dash`, `$HOME/.config/dash`.
pub fn dir() -> Result<PathBuf, String> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("DASH_CONFIG_DIR") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_CONFIG_HOME") {
        return Ok(d.join("dash"));
    }
    var("HOME")
        .map(|h| h.join(".config").join("dash"))
        .ok_or_else(|| "no HOME (or DASH_CONFIG_DIR) to keep contexts in".to_string())
}

/// The config and credentials of `dir` (both empty when the files do not exist).
pub fn load(dir: &Path) -> Result<(Config, Credentials), String> {
    let read = |name: &str| -> Result<Option<String>, String> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    };
    let parse_err = |name: &str, e: toml::de::Error| {
        format!(
            "{}: {e}; fix it or remove it (`dash login` writes it again)",
            dir.join(name).display()
        )
    };
    let config = match read("config.toml")? {
        Some(t) => toml::from_str(&t).map_err(|e| parse_err("config.toml", e))?,
        None => Config::default(),
    };
    let creds = match read("credentials.toml")? {
        Some(t) => toml::from_str(&t).map_err(|e| parse_err("credentials.toml", e))?,
        None => Credentials::default(),
    };
    Ok((config, creds))
}

/// Writes both files: the directory 0700, the credentials 0600 from their first byte.
pub fn save(dir: &Path, config: &Config, creds: &Credentials) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |what: &Path, e: std::io::Error| format!("writing {}: {e}", what.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for (name, body, private) in [
        ("config.toml", toml_text(config)?, false),
        ("credentials.toml", toml_text(creds)?, true),
    ] {
        let path = dir.join(name);
        if private {
            dash_rpc::pki::write_private(&path, body.as_bytes()).map_err(|e| io(&path, e))?;
        } else {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

fn toml_text(v: &impl Serialize) -> Result<String, String> {
    toml::to_string_pretty(v).map_err(|e| e.to_string())
}

/// A CA fingerprint as people write it (`sha256:AB:CD…`, upper case) in the form pinned:
/// 64 lower-case hex digits.
pub fn normalize_fingerprint(text: &str) -> String {
    let t = text.trim();
    let t = t.strip_prefix("sha256:").unwrap_or(t);
    t.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether `fp` (normalized) is a SHA-256 in hex.
pub fn is_fingerprint(fp: &str) -> bool {
    fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a command talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: String,
    pub token: Option<String>,
    pub trust: Option<Trust>,
    /// The context it came from, if any.
    pub context: Option<String>,
}

/// Where a command goes (the order is in the module's documentation). `addr`: `--addr` or
/// `DASH_ADDR`; `context`: `--context` or `DASH_CONTEXT`; `env_token`: `DASH_TOKEN`;
/// `local_token`: reads `<data-dir>/admin.token`.
pub fn resolve(
    addr: Option<&str>,
    context: Option<&str>,
    env_token: Option<String>,
    local_token: impl Fn() -> Option<String>,
    env_trust: Option<Trust>,
    files: Option<(Config, Credentials)>,
) -> Result<Target, String> {
    let from_token = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| dash_rpc::pki::JoinToken::parse(t).ok())
            .map(|t| Trust::ClusterCa(t.ca_fingerprint))
    };
    if let Some(addr) = addr {
        let token = env_token.or_else(&local_token);
        let trust = env_trust.or_else(|| from_token(&token));
        return Ok(Target {
            addr: addr.to_string(),
            token,
            trust,
            context: None,
        });
    }
    let (config, creds) = files.unwrap_or_default();
    let name = context.map(str::to_string).or(config.current.clone());
    if let Some(name) = name {
        let Some(ctx) = config.contexts.get(&name) else {
            return Err(format!(
                "no context {name:?}; `dash context ls` lists them, `dash login URL --token …` \
                 makes one"
            ));
        };
        let token = env_token.or_else(|| creds.tokens.get(&name).map(|e| e.token.clone()));
        return Ok(Target {
            addr: ctx.addr.clone(),
            token,
            trust: ctx.trust(),
            context: Some(name),
        });
    }
    let token = env_token.or_else(local_token);
    Ok(Target {
        addr: "127.0.0.1:7070".into(),
        trust: env_trust.or_else(|| from_token(&token)),
        token,
        context: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (Config, Credentials) {
        let mut config = Config::default();
        config.contexts.insert(
            "prod".into(),
            Context {
                addr: "https://10.0.0.1:7443".into(),
                ca_fingerprint: Some("ab".repeat(32)),
                ca_cert: None,
            },
        );
        config.current = Some("prod".into());
        let mut creds = Credentials::default();
        creds
            .tokens
            .insert("prod".into(), Entry::token("prod-token".into()));
        (config, creds)
    }

    #[test]
    fn an_address_overrides_the_context_and_never_gets_its_token() {
        let t = resolve(
            Some("https://10.0.0.9:7443"),
            None,
            None,
            || Some("local".into()),
            None,
            Some(files()),
        )
        .unwrap();
        assert_eq!(t.token.as_deref(), Some("local"));
        assert_eq!((t.trust, t.context), (None, None));
    }

    #[test]
    fn the_current_context_gives_address_token_and_pin_and_dash_token_overrides() {
        let t = resolve(None, None, None, || None, None, Some(files())).unwrap();
        assert_eq!(t.addr, "https://10.0.0.1:7443");
        assert_eq!(t.token.as_deref(), Some("prod-token"));
        assert_eq!(t.trust, Some(Trust::ClusterCa("ab".repeat(32))));
        let t = resolve(None, None, Some("env".into()), || None, None, Some(files())).unwrap();
        assert_eq!(t.token.as_deref(), Some("env"));
        let err = resolve(None, Some("dev"), None, || None, None, Some(files())).unwrap_err();
        assert!(err.contains("no context \"dev\""), "{err}");
    }

    #[test]
    fn without_context_the_local_server_and_a_dash1_token_pins_its_ca() {
        let token = format!("DASH1-{}-0123abcd.{}", "cd".repeat(32), "0".repeat(32));
        let t = resolve(None, None, Some(token), || None, None, None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:7070");
        assert_eq!(t.trust, Some(Trust::ClusterCa("cd".repeat(32))));
    }

    #[test]
    fn files_round_trip_and_credentials_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("dash");
        let (config, creds) = files();
        save(&d, &config, &creds).unwrap();
        let (c2, k2) = load(&d).unwrap();
        assert_eq!(c2, config);
        assert_eq!(k2.tokens["prod"].token, "prod-token");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.join("credentials.toml")), 0o600);
        assert_eq!(mode(&d), 0o700);
        std::fs::write(d.join("config.toml"), "current = 3").unwrap();
        let err = load(&d).unwrap_err();
        assert!(
            err.contains("config.toml") && err.contains("dash login"),
            "{err}"
        );
    }
}
