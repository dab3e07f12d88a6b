//! Images from a real registry (Debian's docker-registry on 127.0.0.1): pull by tag and
//! digest, pull on apply, one fetch per blob for many replicas, prune with replicas running.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use dash_e2e::Server;
use dash_e2e::registry::{Registry, busybox_layer, oci_layout};
use serde_json::Value;

#[test]
fn pull_by_tag_and_digest_then_run_twenty_replicas_fetching_each_blob_once() {
    let reg = Registry::start(None);
    let s = Server::start(31);
    let layout = s.dir.path().join("layout");
    let layers = oci_layout(&layout, "1.0", &[busybox_layer(s.dir.path())]);
    reg.push(&layout, "1.0", "team/bb", None);
    let reference = format!("{}/team/bb:1.0", reg.addr);

    // A service that names the image before anything pulled it: pulled on apply, once.
    s.apply("many.toml",
        &format!("name = \"many\"\nimage = \"{reference}\"\ncommand = [\"sleep\", \"600\"]\nreplicas = 20\nstop_grace_period = \"100ms\"\n"));
    s.wait_running("many", 20);
    assert_eq!(
        reg.blob_gets(&layers[0]),
        1,
        "the layer was fetched once:\n{}",
        reg.log()
    );
    let images = s.json(&["image", "ls"]);
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    assert_eq!(images[0]["tags"][0], reference.as_str());

    // Pull by tag again: nothing is fetched again; by digest works too.
    let out = s.ok(&["image", "pull", &reference]);
    assert!(out.contains("pulled"), "{out}");
    assert_eq!(reg.blob_gets(&layers[0]), 1);
    let inspect: Value = serde_json::from_str(&s.ok(&["image", "inspect", &reference])).unwrap();
    let digest = inspect["manifest_digest"].as_str().unwrap().to_string();
    let by_digest = format!("{}/team/bb@{digest}", reg.addr);
    s.ok(&["image", "pull", &by_digest]);

    // Prune with replicas running: they keep running and their image stays.
    s.ok(&["image", "prune"]);
    let images = s.json(&["image", "ls"]);
    assert!(
        images.as_array().unwrap().iter().any(|i| i["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == reference.as_str())),
        "{images}"
    );
    assert_eq!(s.running("many"), 20);
    // In use: refused.
    let out = s.dash(&["image", "rm", &reference]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("used by service many"),
        "{out:?}"
    );

    s.remove_last_service("many", Duration::from_secs(60));
    // No longer used: rm works, and prune then finds nothing more of it to free.
    s.ok(&["image", "rm", &reference]);
    s.ok(&["image", "rm", &by_digest]);
    assert_eq!(s.json(&["image", "ls"]), Value::Array(vec![]));
    let report = s.json(&["image", "prune"]);
    assert_eq!(report["images_removed"], 0, "{report}");
}

#[test]
fn missing_image_with_pull_policy_never_fails_clearly() {
    let reg = Registry::start(None);
    let s = Server::start(32);
    s.apply("never.toml",
        &format!("name = \"never\"\nimage = \"{}/nothing:1\"\ncommand = [\"true\"]\npull_policy = \"never\"\n", reg.addr));
    let r = s.wait("a failed replica", Duration::from_secs(20), || {
        let r = s.replicas("never");
        (r.len() == 1 && r[0]["state"] == "failed").then_some(r)
    });
    assert!(
        r[0]["message"]
            .as_str()
            .unwrap()
            .contains("pull_policy is never"),
        "{r:?}"
    );
    // A pull of a tag the registry lacks names it.
    let err = s.fails(&["image", "pull", &format!("{}/nothing:1", reg.addr)]);
    assert!(err.contains("nothing"), "{err}");
}

#[test]
fn registry_login_wrong_then_right_password() {
    let reg = Registry::start(Some(dash_e2e::registry::HTPASSWD));
    let mut s = Server::start(33);
    let layout = s.dir.path().join("layout");
    oci_layout(&layout, "1", &[busybox_layer(s.dir.path())]);
    reg.push(&layout, "1", "private/bb", Some("dash:s3cret-pass"));
    let reference = format!("{}/private/bb:1", reg.addr);

    // Without credentials: refused, saying so.
    let err = s.fails(&["image", "pull", &reference]).to_lowercase();
    assert!(
        err.contains("auth") || err.contains("unauthorized"),
        "{err}"
    );

    let login = |password: &str| s.dash_input(&reg.login_args(), &format!("{password}\n"));
    let out = login("wrong");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("authentication failed") && err.contains(&reg.addr),
        "{err}"
    );
    assert!(
        !s.data_dir.join("registries.json").exists()
            || !std::fs::read_to_string(s.data_dir.join("registries.json"))
                .unwrap()
                .contains("wrong")
    );

    let out = login("s3cret-pass");
    assert!(out.status.success(), "{out:?}");
    // Kept in the state, sealed: no file of the data dir holds the password in clear.
    let clear = dash_e2e::files_holding(&s.data_dir, "s3cret-pass");
    assert!(clear.is_empty(), "the password in clear in {clear:?}");
    s.ok(&["image", "pull", &reference]);
    assert_eq!(s.json(&["image", "ls"])[0]["tags"][0], reference.as_str());

    // Logged out: a pull of another tag is refused again.
    s.ok(&["registry", "logout", &reg.addr]);
    reg.push(&layout, "1", "private/bb2", Some("dash:s3cret-pass"));
    let second = format!("{}/private/bb2:1", reg.addr);
    s.fails(&["image", "pull", &second]);

    // A login an older release stored in <data>/registries.json moves into the state at
    // the next start, and the file forgets it.
    s.kill9();
    let pair = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "dash:s3cret-pass",
    );
    std::fs::write(
        s.data_dir.join("registries.json"),
        format!(
            "{{\"auths\": {{\"{}\": {{\"auth\": \"{pair}\"}}}}}}",
            reg.addr
        ),
    )
    .unwrap();
    s.restart();
    s.wait("registries.json emptied", Duration::from_secs(20), || {
        (!std::fs::read_to_string(s.data_dir.join("registries.json"))
            .unwrap_or_default()
            .contains(&pair))
        .then_some(())
    });
    s.ok(&["image", "pull", &second]);
}
