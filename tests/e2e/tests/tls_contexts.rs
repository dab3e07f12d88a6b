//! The admin API for a team, end to end: HTTPS beyond loopback (plain HTTP refused there),
//! `dash login` pinning the cluster CA, contexts in a private config dir, and a server with
//! another CA refused by the pinned context.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::path::Path;
use std::process::{Command, Output};

use dash_e2e::Server;

/// `dash ARGS` as a user with `home` and `env`, and nothing of the test's environment.
fn user(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(dash_e2e::dash_bin());
    c.args(args)
        .env("HOME", home)
        .env_remove("DASH_ADDR")
        .env_remove("DASH_TOKEN")
        .env_remove("DASH_CONTEXT")
        .env_remove("DASH_CONFIG_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env("DASH_DATA_DIR", home.join("no-data-dir"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn login_pins_the_cluster_ca_and_contexts_refuse_another() {
    // A: loopback plain (the harness's --listen) and every address HTTPS only.
    let a = Server::start_with(64, &["--listen", "0.0.0.0:17764"]);
    let a_https = "https://127.0.0.1:17764";
    let (status, body) =
        dash_e2e::http_request("127.0.0.1:17764", "GET", "/v1/services", Some(&a.token())).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("tls_required") && body.contains(a_https),
        "{body}"
    );

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let deploy = a
        .ok(&["token", "create", "--role", "deploy"])
        .trim()
        .to_string();
    let said = ok(user(
        h,
        &[],
        &["login", a_https, "--token", &deploy, "--name", "team"],
    ));
    assert!(
        said.contains("role deploy") && said.contains("context team is current"),
        "{said}"
    );
    // The context works without any DASH_ variable, over TLS.
    ok(user(h, &[], &["service", "ls"]));
    let ls = ok(user(h, &[], &["context", "ls"]));
    assert!(
        ls.contains("team") && ls.contains(a_https) && ls.contains('*'),
        "{ls}"
    );
    let dir = h.join(".config/dash");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&dir.join("credentials.toml")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        !config.contains(&deploy),
        "the token is kept out of config.toml"
    );

    // B: another cluster (another CA) on HTTPS.
    let b = Server::start_with(65, &["--listen", "https://127.0.0.1:17765"]);
    let b_https = "https://127.0.0.1:17765";
    let b_token = b
        .ok(&["token", "create", "--role", "admin"])
        .trim()
        .to_string();
    // The context's address now leads to B (a DNS change, someone in between): refused.
    std::fs::write(dir.join("config.toml"), config.replace(a_https, b_https)).unwrap();
    let e = err(user(h, &[], &["service", "ls"]));
    assert!(e.contains("does not match the pinned fingerprint"), "{e}");
    std::fs::write(dir.join("config.toml"), &config).unwrap();
    let e = err(user(
        h,
        &[],
        &["login", b_https, "--token", &b_token, "--name", "team"],
    ));
    assert!(e.contains("pinned CA"), "{e}");
    // A login of its own to B is fine, and `context use` switches.
    ok(user(
        h,
        &[],
        &["login", b_https, "--token", &b_token, "--name", "other"],
    ));
    let who = ok(user(h, &[], &["token", "ls"]));
    assert!(who.contains("admin"), "{who}");
    ok(user(h, &[], &["context", "use", "team"]));
    let e = err(user(h, &[], &["token", "ls"]));
    assert!(e.contains("needs the admin role"), "{e}");
    let e = err(user(h, &[], &["context", "use", "nosuch"]));
    assert!(e.contains("no context"), "{e}");

    // DASH_ADDR overrides the context, as a URL too; a DASH1- token pins its own CA.
    let plain = format!("http://{}", a.addr);
    ok(user(
        h,
        &[("DASH_ADDR", &plain), ("DASH_TOKEN", &a.token())],
        &["service", "ls"],
    ));
    ok(user(
        h,
        &[("DASH_ADDR", a_https), ("DASH_TOKEN", &deploy)],
        &["service", "ls"],
    ));
    let e = err(user(
        h,
        &[("DASH_ADDR", b_https), ("DASH_TOKEN", &deploy)],
        &["service", "ls"],
    ));
    assert!(e.contains("does not match the pinned fingerprint"), "{e}");
    // https with nothing to trust: refused, saying how.
    let e = err(user(
        h,
        &[("DASH_ADDR", a_https), ("DASH_TOKEN", &a.token())],
        &["service", "ls"],
    ));
    assert!(e.contains("no CA to check the server against"), "{e}");
    // With the CA's fingerprint given, the bootstrap token works over HTTPS too.
    let fp = deploy["DASH1-".len().."DASH1-".len() + 64].to_string();
    ok(user(
        h,
        &[
            ("DASH_ADDR", a_https),
            ("DASH_TOKEN", &a.token()),
            ("DASH_CA_FINGERPRINT", &fp),
        ],
        &["service", "ls"],
    ));
    // And curl with the CA file checks the certificate's names for the address dialled.
    let curl = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(a.data_dir.join("pki/ca.crt"))
        .args([&format!("{a_https}/healthz")])
        .output()
        .unwrap();
    assert!(curl.status.success(), "{curl:?}");
    // The audit log saw the HTTPS caller.
    let audit = a.json(&["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/v1/tokens"),
        "{audit:#}"
    );
}
