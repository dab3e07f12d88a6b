//! The web portal at /ui, driven by a real headless Chromium through Debian's chromedriver
//! (`tests/e2e/portal/portal_test.py`, WebDriver over HTTP with Python's standard library):
//! log in, the overview, a service's page, scale to 3 with a confirmation, a replica killed
//! from outside shown without a reload, live logs, a read token's page without buttons, a
//! wrong token and a missing service refused clearly. Screenshots of every page go to
//! `target/test-artifacts/portal/`.

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
    let s = Server::start(76);
    s.import_busybox("bb:1");
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("portal/portal_test.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--addr", &s.addr])
        .arg("--dash")
        .arg(dash_e2e::dash_bin())
        .args(["--admin-token", s.token().trim()])
        .args(["--read-token", read_token])
        .args(["--service", "web"])
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--chromedriver-port", "17976"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the portal test failed:\n{text}\nserver log:\n{}",
        dash_e2e::tail(&s.log(), 40)
    );
    // It scaled the service to 3 through the page: the cluster has them.
    let running = s
        .replicas("web")
        .iter()
        .filter(|r| r["state"] == "running")
        .count();
    assert_eq!(running, 3, "{text}");
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
