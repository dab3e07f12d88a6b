//! Secrets and configs: named values the masters keep sealed in the state and hand, as files,
//! to the replicas of services that list them (`[[secrets]]`, `[[configs]]`).

/// The largest value a secret or config may hold.
pub const MAX_BYTES: usize = 500 * 1024;

/// Where a replica finds its secrets.
pub const SECRETS_DIR: &str = "/run/secrets";

/// Secret or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "secret" => Some(Kind::Secret),
            "config" => Some(Kind::Config),
            _ => None,
        }
    }

    /// The API's path segment and the service file's table: `secrets`, `configs`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }
}

/// Why `name` cannot name a secret or config (or a file under /run/secrets), if it cannot:
/// 1 to 64 of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > 64 {
        "is longer than 64 characters"
    } else if name.contains('/') {
        "has a slash"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        "has a character other than letters, digits, '.', '_', '-'"
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        "does not start with a letter or digit"
    } else {
        return Ok(());
    };
    Err(format!(
        "{name:?} {why}; a name is 1 to 64 letters, digits, '.', '_' or '-' (e.g. db-password)"
    ))
}

/// Why `target` cannot be where a config goes in a replica, if it cannot: an absolute path
/// of a file, not under the paths the runtime owns.
pub fn check_config_target(target: &str) -> Result<(), String> {
    let why = if !target.starts_with('/') {
        "is a relative path; give an absolute one, e.g. \"/etc/nginx/nginx.conf\""
    } else if target == "/" || target.ends_with('/') {
        "is a directory; give the path of a file, e.g. \"/etc/app/app.conf\""
    } else if target.split('/').any(|c| c == ".." || c == ".") {
        "has a '.' or '..' component; write the path plainly"
    } else if target.len() > 1024 {
        "is longer than 1024 characters"
    } else if target.contains(['\0', '\n']) {
        "has a NUL or newline"
    } else if ["/proc", "/sys", "/dev", SECRETS_DIR]
        .iter()
        .any(|p| target == *p || target.starts_with(&format!("{p}/")))
    {
        "is under /proc, /sys, /dev or /run/secrets, which the runtime (or the secrets) own"
    } else {
        return Ok(());
    };
    Err(format!("{target:?} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_targets_say_what_is_wrong() {
        assert!(check_name("db-password").is_ok());
        assert!(check_name("TLS.key_2").is_ok());
        for (bad, says) in [
            ("", "empty"),
            ("a/b", "slash"),
            ("-x", "start"),
            ("a b", "character"),
            (&"x".repeat(65), "64"),
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert!(check_config_target("/etc/nginx/nginx.conf").is_ok());
        for (bad, says) in [
            ("etc/nginx.conf", "relative"),
            ("/etc/", "directory"),
            ("/", "directory"),
            ("/etc/../x", ".."),
            ("/proc/x", "runtime"),
            ("/run/secrets/x", "runtime"),
        ] {
            let e = check_config_target(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
