//! The web portal at /ui, driven by a real headless Chromium through Debian's chromedriver
//! (`tests/e2e/portal/portal_test.py`, WebDriver over HTTP with Python's standard library):
//! log in, the overview, a service's page, scale to 3 with a confirmation, a replica killed
//! from outside shown without a reload, live logs, a read token's page without buttons, a
//! wrong token and a missing service refused clearly; and the login with OpenID Connect
//! (`oidc_login_test.py`: the device flow through the master, against the test provider).
//! Screenshots of every page go to `target/test-artifacts/portal/` and `…/portal-oidc/`.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::path::Path;
use std::process::Command;

use dash_e2e::Server;

#[test]
fn the_portal_in_a_real_browser() {
    dash_e2e::require(
        "chromium and chromedriver (Debian's chromium, chromium-driver)",
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
    );
    dash_e2e::require("python3", Path::new("/usr/bin/python3").exists());
    let s = Server::start_with_busybox(76);
    s.apply(
        "web.toml",
        "name = \"web\"\nimage = \"bb:1\"\n\
         command = \"i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done\"\n\
         stop_grace_period = \"1s\"\n",
    );
    s.wait_running("web", 1);
    let read = s.json(&["token", "create", "--role", "read"]);
    let read_token = read["token"].as_str().unwrap();
    let artifacts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/portal");
    std::fs::create_dir_all(&artifacts).unwrap();
    let dash = dash_e2e::dash_bin();
    let admin = s.token();
    let text = browser_script(
        &s,
        "portal_test.py",
        &[
            "--dash",
            dash.to_str().unwrap(),
            "--admin-token",
            admin.trim(),
            "--read-token",
            read_token,
            "--service",
            "web",
            "--chromedriver-port",
            "17976",
        ],
        &artifacts,
    );
    // It scaled the service to 3 through the page: the cluster has them.
    assert_eq!(s.running("web"), 3, "{text}");
    for page in ["login", "overview", "service"] {
        assert!(
            std::fs::read_dir(&artifacts).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(page)),
            "no screenshot of the {page} page in {}",
            artifacts.display()
        );
    }
    s.remove_all_services();
}

/// "Log in with <provider>": the code shown, confirmed at the provider, the page logged in as
/// the person with the role of their groups; renewal with the refresh token, a person with no
/// mapped group refused, a reader without write buttons.
#[test]
fn the_portal_logs_people_in_with_openid_connect() {
    dash_e2e::require(
        "chromium and chromedriver (Debian's chromium, chromium-driver)",
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
    );
    let p = dash_e2e::oidc::Provider::start(17794, "k1", 60);
    let s = p.server(77);
    s.import_busybox("bb:1");
    s.apply(
        "web.toml",
        "name = \"web\"\nimage = \"bb:1\"\ncommand = \"while true; do echo tick; sleep 1; done\"\n\
         stop_grace_period = \"1s\"\n",
    );
    s.wait_running("web", 1);
    let artifacts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/portal-oidc");
    std::fs::create_dir_all(&artifacts).unwrap();
    let approve = format!("{}/test/approve", p.issuer());
    let text = browser_script(
        &s,
        "oidc_login_test.py",
        &[
            "--approve-url",
            &approve,
            "--service",
            "web",
            "--chromedriver-port",
            "17978",
        ],
        &artifacts,
    );
    assert!(text.contains("PASS"), "{text}");
    s.remove_all_services();
}

/// Runs a browser script of `tests/e2e/portal` with `args`; its output, or a failed test with
/// the output and the server's log.
fn browser_script(s: &Server, script: &str, args: &[&str], artifacts: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("portal")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(["--addr", &s.addr])
        .args(args)
        .arg("--artifacts")
        .arg(artifacts)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} failed:\n{text}\nserver log:\n{}",
        dash_e2e::tail(&s.log(), 40)
    );
    text
}
