//! Secrets and configs end to end on a real cluster (a master and two workers, real
//! containers): the files reach every replica that lists them, on every node, with the owner
//! and mode asked, on a tmpfs; the value is in no data dir, log, event or API answer; an update
//! rolls every replica to the new value and the old version goes; a replica of another service
//! cannot read it; bad input is refused whole.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use dash_e2e::cluster::Cluster;
use serde_json::Value;

/// Running replicas of `service` at spec version `version`, once there are `n` of them and
/// no other.
fn settled(c: &Cluster, service: &str, n: usize, version: u64) -> Vec<Value> {
    c.wait(
        &format!("{n} replicas of {service} at version {version}"),
        Duration::from_secs(90),
        || {
            let all = c.replicas(service);
            dash_e2e::all_running_at(&all, n, version).then_some(all)
        },
    )
}

fn exec(c: &Cluster, id: &str, script: &str) -> (bool, String) {
    let out = c.dash(&["exec", id, "--", "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

const SERVICE: &str = "name = \"vault\"\nimage = \"bb:sec\"\ncommand = [\"sleep\", \"100000\"]\n\
     mode = \"global\"\nstop_grace_period = \"1s\"\n\
     [[secrets]]\nname = \"db-password\"\nuid = 101\nmode = \"0440\"\n\
     [[configs]]\nname = \"app-conf\"\ntarget = \"/etc/app/app.conf\"\n";

#[test]
fn secrets_reach_every_replica_that_lists_them_and_nothing_else() {
    let c = Cluster::start(68, 2);
    c.import_busybox("bb:sec");
    let v1 = format!("e2e-secret-{}", std::process::id());
    let v2 = format!("{v1}-rotated");
    let file = c.write("pw.txt", &v1);
    c.ok(&[
        "secret",
        "create",
        "db-password",
        "-f",
        file.to_str().unwrap(),
    ]);
    let conf = c.write("app.conf", "listen 8080\n");
    c.ok(&["config", "create", "app-conf", "-f", conf.to_str().unwrap()]);
    c.apply("vault.toml", SERVICE);
    c.apply(
        "other.toml",
        "name = \"other\"\nimage = \"bb:sec\"\ncommand = [\"sleep\", \"100000\"]\n\
         mode = \"global\"\nstop_grace_period = \"1s\"\n",
    );

    // Every node runs one replica of each; each vault replica has the files as asked.
    let vault = settled(&c, "vault", 3, 1);
    let nodes: BTreeSet<&str> = vault.iter().map(|r| r["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 3, "{vault:?}");
    for r in &vault {
        let id = r["id"].as_str().unwrap();
        let (ok, out) = exec(
            &c,
            id,
            "cat /run/secrets/db-password; echo; stat -c '%u %a' /run/secrets/db-password; \
             grep ' /run/secrets ' /proc/mounts | cut -d' ' -f3,4; cat /etc/app/app.conf",
        );
        assert!(ok, "{id}: {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], v1, "{id}: {out}");
        assert_eq!(lines[1], "101 440", "{id}: {out}");
        assert!(lines[2].starts_with("tmpfs ro,"), "{id}: {out}");
        assert_eq!(lines[3], "listen 8080", "{id}: {out}");
    }
    // A replica of a service that does not list it cannot read it.
    for r in settled(&c, "other", 3, 1) {
        let id = r["id"].as_str().unwrap();
        let (ok, out) = exec(&c, id, "cat /run/secrets/db-password");
        assert!(!ok && !out.contains(&v1), "{id}: {out}");
    }

    // The value is nowhere but in the replicas: not in any data dir, log, event or answer.
    let nowhere = |value: &str| {
        for n in &c.nodes {
            let found = dash_e2e::files_holding(&n.data_dir, value);
            assert!(found.is_empty(), "{value} in {found:?}");
            assert!(!n.log_text().contains(value), "{value} in {}'s log", n.name);
        }
        let events = serde_json::to_string(&c.events()).unwrap();
        assert!(!events.contains(value), "{value} in the events");
        for args in [
            &["secret", "inspect", "db-password"][..],
            &["secret", "ls"][..],
            &["service", "inspect", "vault"][..],
            &["ps"][..],
            &["audit"][..],
        ] {
            let out = c.ok(args);
            assert!(!out.contains(value), "{value} in dash {args:?}");
        }
    };
    nowhere(&v1);

    // An update rolls every replica to the new value; the old version goes with them.
    let file2 = c.write("pw2.txt", &v2);
    let said = c.ok(&[
        "secret",
        "update",
        "db-password",
        "-f",
        file2.to_str().unwrap(),
    ]);
    assert!(
        said.contains("version 2") && said.contains("vault"),
        "{said}"
    );
    let vault = settled(&c, "vault", 3, 2);
    for r in &vault {
        let id = r["id"].as_str().unwrap();
        let (ok, out) = exec(&c, id, "cat /run/secrets/db-password");
        assert!(ok && out == v2, "{id}: {out}");
    }
    c.wait("the old version to go", Duration::from_secs(30), || {
        let info = c.json(&["secret", "inspect", "db-password"]);
        (info["versions"] == serde_json::json!([2])).then_some(())
    });
    nowhere(&v2);
    // And no node keeps a file of a replica it no longer runs.
    for n in &c.nodes {
        let files = n.run_dir.join("runtime/files");
        let kept: Vec<_> = std::fs::read_dir(&files)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(kept.len() <= 1, "{}: {kept:?}", n.name);
    }

    // Removal is refused while a service lists it.
    let err = c.fails(&["secret", "rm", "db-password"]);
    assert!(err.contains("used by service vault"), "{err}");
}

#[test]
fn bad_secrets_and_configs_are_refused_whole_naming_the_field() {
    let s = dash_e2e::Server::start(69);
    s.import_busybox("bb:bad");
    // Over 500 KiB, a name with a slash: refused before anything is stored.
    let big = s.write("big.bin", &"x".repeat(500 * 1024 + 1));
    let err = s.fails(&["secret", "create", "big", "-f", big.to_str().unwrap()]);
    assert!(err.contains("500 KiB"), "{err}");
    let small = s.write("small.txt", "v");
    let err = s.fails(&[
        "secret",
        "create",
        "db/password",
        "-f",
        small.to_str().unwrap(),
    ]);
    assert!(err.contains("slash"), "{err}");
    // The API says the same to a client that skips the CLI's checks.
    for (secret, field) in [
        (serde_json::json!({"name": "a/b", "data": "eA=="}), "name"),
        (
            serde_json::json!({"name": "big", "data": base64_of(&vec![b'x'; 500 * 1024 + 1])}),
            "data",
        ),
    ] {
        let (status, body) =
            dash_e2e::http_request_json(&s.addr, "POST", "/v1/secrets", &s.token(), &secret)
                .unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(&format!("\"field\":\"{field}\"")), "{body}");
    }
    assert_eq!(s.json(&["secret", "ls"]), serde_json::json!([]));

    // A config target that is a relative path, a secret that does not exist: the service is
    // refused whole, naming the entry.
    s.ok(&["config", "create", "c", "-f", small.to_str().unwrap()]);
    for (body, says) in [
        (
            "[[configs]]\nname = \"c\"\ntarget = \"etc/app.conf\"\n",
            "configs[0].target",
        ),
        ("[[secrets]]\nname = \"nope\"\n", "secrets[0].name"),
    ] {
        let file = s.write(
            "bad.toml",
            &format!("name = \"bad\"\nimage = \"bb:bad\"\ncommand = [\"true\"]\n{body}"),
        );
        let out = s.dash(&["apply", "-f", file.to_str().unwrap()]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && text.contains(says),
            "{body}: {text}"
        );
    }
    assert_eq!(s.json(&["service", "ls"]), serde_json::json!([]));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
