//! OpenID Connect end to end against a real provider on loopback (npm's `oidc-provider`, an
//! OpenID Certified implementation; tests/e2e/oidc/provider.mjs): `dash login --oidc` through
//! the device flow, groups mapped to roles, an expired token refused and the login refreshed,
//! a token of another provider refused, and the provider's key rotation picked up.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dash_e2e::Server;
use dash_e2e::oidc::Provider;

/// `METHOD path` with a bearer token: (status, body).
fn ask(s: &Server, method: &str, path: &str, token: &str) -> (u16, String) {
    dash_e2e::http_request(&s.addr, method, path, Some(token)).unwrap()
}

/// `dash login … --oidc` as a person would: it shows a code; `account` confirms it.
fn login(s: &Server, home: &Path, p: &Provider, account: &str) -> std::process::Output {
    let mut child = Command::new(dash_e2e::dash_bin())
        .args([
            "login",
            &format!("http://{}", s.addr),
            "--oidc",
            "--name",
            "corp",
        ])
        .env("HOME", home)
        .env_remove("DASH_ADDR")
        .env_remove("DASH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let code = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no code shown: {seen}"
        );
        seen.push_str(&line);
        if let Some(c) = line.strip_prefix("code: ") {
            break c.trim().to_string();
        }
    };
    p.approve(&code, account);
    child.wait_with_output().unwrap()
}

fn user(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(dash_e2e::dash_bin())
        .args(args)
        .env("HOME", home)
        .env_remove("DASH_ADDR")
        .env_remove("DASH_TOKEN")
        .env("DASH_DATA_DIR", home.join("none"))
        .output()
        .unwrap()
}

#[test]
fn people_log_in_with_the_provider_and_get_the_role_of_their_groups() {
    let p = Provider::start(17791, "k1", 3);
    let s = p.server(71);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // The device flow through the CLI: alice (devs) deploys, administers nothing.
    let out = login(&s, h, &p, "alice");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains("oidc alice") && said.contains("role deploy"),
        "{said}"
    );
    assert!(user(h, &["service", "ls"]).status.success());
    let refused = user(h, &["token", "create", "--role", "read"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs the admin role"));
    let audit = s.json(&["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["who"] == "oidc alice" && e["status"] == 403),
        "{audit:#}"
    );

    // Her ID token expires (3 s, and 5 s of allowed skew): refused as such; the CLI refreshes
    // the login before the next command.
    let creds = std::fs::read_to_string(h.join(".config/dash/credentials.toml")).unwrap();
    let first: toml_token::Token = toml_token::parse(&creds);
    std::thread::sleep(Duration::from_secs(9));
    let (status, body) = ask(&s, "GET", "/v1/services", &first.0);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    let out = user(h, &["service", "ls"]);
    assert!(out.status.success(), "{out:?}");
    let again = toml_token::parse(
        &std::fs::read_to_string(h.join(".config/dash/credentials.toml")).unwrap(),
    );
    assert_ne!(again.0, first.0, "the ID token was refreshed");

    // Groups → roles: bob reads, olga (ops and devs) administers, carol has no mapped group.
    let bob = p.id_token("bob");
    assert_eq!(ask(&s, "GET", "/v1/services", &bob).0, 200);
    assert_eq!(ask(&s, "POST", "/v1/services", &bob).0, 403);
    assert_eq!(ask(&s, "GET", "/v1/tokens", &p.id_token("olga")).0, 200);
    let (status, body) = ask(&s, "GET", "/v1/services", &p.id_token("carol"));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no group that maps to a role"), "{body}");

    // A token of another provider is refused.
    let other = Provider::start(17792, "k9", 60);
    let (status, body) = ask(&s, "GET", "/v1/services", &other.id_token("olga"));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("refused"), "{body}");
    drop(other);

    // The provider rotates its signing key (restarted with a new one under the same issuer):
    // Dash fetches its keys again for the new key id.
    drop(p);
    let p = Provider::start(17791, "k2", 60);
    let olga = p.id_token("olga");
    // At most one fetch of the keys a second: the new key is picked up within it.
    let t0 = std::time::Instant::now();
    let (status, body) = loop {
        let (status, body) = ask(&s, "GET", "/v1/tokens", &olga);
        if status == 200 || t0.elapsed() > Duration::from_secs(3) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(status, 200, "{body}");

    // The device flow through the master, for a browser that cannot reach the provider:
    // start, not confirmed yet, confirmed, refreshed; bad grants refused clearly.
    let public = |path: &str, body: serde_json::Value| {
        dash_e2e::http_request_json(&s.addr, "POST", path, "none", &body).unwrap()
    };
    let (status, body) = public("/v1/login/device", serde_json::json!({}));
    assert_eq!(status, 200, "{body}");
    let start: serde_json::Value = serde_json::from_str(&body).unwrap();
    let code = start["device_code"].as_str().unwrap();
    assert!(
        start["verification_uri"]
            .as_str()
            .unwrap()
            .starts_with(&p.issuer())
    );
    let (status, body) = public("/v1/login/token", serde_json::json!({"device_code": code}));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("authorization_pending"), "{body}");
    p.approve(start["user_code"].as_str().unwrap(), "alice");
    let (status, body) = public("/v1/login/token", serde_json::json!({"device_code": code}));
    assert_eq!(status, 200, "{body}");
    let tokens: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (status, me) = ask(
        &s,
        "GET",
        "/v1/whoami",
        tokens["id_token"].as_str().unwrap(),
    );
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("oidc alice") && me.contains("deploy"), "{me}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = public(
        "/v1/login/token",
        serde_json::json!({"refresh_token": refresh}),
    );
    assert_eq!(status, 200, "{body}");
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ask(
            &s,
            "GET",
            "/v1/services",
            again["id_token"].as_str().unwrap()
        )
        .0,
        200
    );
    let (status, body) = public("/v1/login/token", serde_json::json!({}));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("device_code"), "{body}");
    let (status, body) = public(
        "/v1/login/token",
        serde_json::json!({"device_code": "forged"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("refused the login"), "{body}");
}

/// The ID token in credentials.toml, without a TOML dependency for one field.
mod toml_token {
    pub struct Token(pub String);

    pub fn parse(text: &str) -> Token {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("token ="))
            .unwrap();
        Token(line.split('"').nth(1).unwrap().to_string())
    }
}
