//! The test OpenID Connect provider (npm's `oidc-provider`, an OpenID Certified
//! implementation; `tests/e2e/oidc/provider.mjs`) on loopback, for the login tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// `npm ci` once (the provider's packages, pinned by package-lock.json).
fn ensure_provider_installed() {
    let dir = oidc_dir();
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    crate::require(
        "node and npm (apt-get install nodejs npm)",
        Command::new("npm")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
    );
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "npm ci in {}: {out:?}", dir.display());
}

/// One provider process: issuer http://127.0.0.1:PORT, signing key KID, ID tokens living
/// ID_TTL seconds.
pub struct Provider {
    child: Child,
    port: u16,
}

impl Provider {
    pub fn start(port: u16, kid: &str, id_ttl: u32) -> Provider {
        ensure_provider_installed();
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .env("PORT", port.to_string())
            .env("KID", kid)
            .env("ID_TTL", id_ttl.to_string())
            .current_dir(oidc_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = crate::first_line(&mut child);
        assert!(line.starts_with("ready"), "the provider said {line:?}");
        Provider { child, port }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `dash server` (see [`crate::Server::start`]) that logs people in with this provider
    /// (client `dash`) and gives the groups devs, readers and ops the roles deploy, read and
    /// admin.
    pub fn server(&self, slot: u8) -> crate::Server {
        crate::Server::start_with(
            slot,
            &[
                "--oidc-issuer",
                &self.issuer(),
                "--oidc-client-id",
                "dash",
                "--oidc-role",
                "devs=deploy",
                "--oidc-role",
                "readers=read",
                "--oidc-role",
                "ops=admin",
            ],
        )
    }

    /// The person `account` confirms `user_code` at the verification page.
    pub fn approve(&self, user_code: &str, account: &str) {
        let out = curl(&[&format!(
            "{}/test/approve?user_code={user_code}&account={account}",
            self.issuer()
        )]);
        assert_eq!(out, "approved");
    }

    /// An ID token of `account`, by the device flow done here (not through dash).
    pub fn id_token(&self, account: &str) -> String {
        let auth: Value = serde_json::from_str(&curl(&[
            "-d",
            "client_id=dash&scope=openid offline_access groups",
            &format!("{}/device/auth", self.issuer()),
        ]))
        .unwrap();
        self.approve(auth["user_code"].as_str().unwrap(), account);
        let answer: Value = serde_json::from_str(&curl(&[
            "-d",
            &format!(
                "grant_type=urn:ietf:params:oauth:grant-type:device_code&client_id=dash&device_code={}",
                auth["device_code"].as_str().unwrap()
            ),
            &format!("{}/token", self.issuer()),
        ]))
        .unwrap();
        answer["id_token"].as_str().unwrap().to_string()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").arg("-s").args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
