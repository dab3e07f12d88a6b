//! Access to the admin API, end to end against a real server: every route of the OpenAPI
//! document asked with a token of each role, refusals (403 naming the role, 401 for revoked,
//! expired and join tokens), and the audit log of what was done and refused.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use dash_e2e::Server;
use serde_json::Value;

/// The roles, lowest first.
const ROLES: [&str; 3] = ["read", "deploy", "admin"];

/// The routes that need no token: how to log in.
const PUBLIC: [&str; 3] = ["/v1/login", "/v1/login/device", "/v1/login/token"];

/// What the issue says each kind of route needs, written here independently of the server's
/// table: `read` is GETs; `deploy` is shipping services (exec included); `admin` is nodes,
/// tokens, backups and the audit log.
fn needed(method: &str, path: &str) -> &'static str {
    if PUBLIC.contains(&path) {
        return "none";
    }
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let admin_only =
        under("/v1/tokens") || under("/v1/backup") || under("/v1/audit") || under("/v1/data-keys");
    if admin_only || (under("/v1/nodes") && method != "GET") {
        "admin"
    } else if path.ends_with("/exec") {
        "deploy"
    } else if method == "GET" {
        "read"
    } else {
        "deploy"
    }
}

fn rank(role: &str) -> usize {
    // "none" (a public route) ranks below every role.
    ROLES.iter().position(|r| *r == role).map_or(0, |i| i + 1)
}

/// The status and the first bytes of the body of one request (the answer may be a stream
/// that never ends: only what arrives within a moment is read).
fn ask(addr: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    // A little of the body, for the refusal's message.
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    if let Ok(n) = s.read(&mut chunk) {
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {text:?}"));
    (status, text)
}

fn create_token(s: &Server, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--role", role];
    args.extend(extra);
    s.ok(&args).trim().to_string()
}

/// `dash ARGS` with `token` as DASH_TOKEN.
fn dash_as(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(dash_e2e::dash_bin())
        .args(args)
        .env("DASH_ADDR", &s.addr)
        .env("DASH_TOKEN", token)
        .env("DASH_DATA_DIR", s.dir.path().join("no-such-dir"))
        .output()
        .unwrap()
}

#[test]
fn every_route_is_open_to_the_roles_it_names_and_refused_to_the_others() {
    let s = Server::start_with(
        49,
        &["--advertise-addr", "127.0.0.1", "--cluster-port", "17749"],
    );
    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|r| (*r, create_token(&s, r, &[])))
        .collect();
    let (_, doc) =
        dash_e2e::http_request(&s.addr, "GET", "/openapi.json", Some(&s.token())).unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Path parameters name nothing that exists: nothing found is no harm done.
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "nosuch" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let role = needed(&method, path);
            assert_eq!(
                op["x-dash-role"].as_str(),
                Some(role),
                "{method} {path}: the document's role"
            );
            if role == "none" {
                // Answered without any token (the device login answers 409 here: this
                // server has no OpenID Connect provider; answered all the same).
                let (status, text) = ask(&s.addr, &method, &concrete, "");
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{method} {concrete} without a token: {text}"
                );
            }
            for (held, token) in &tokens {
                let (status, text) = ask(&s.addr, &method, &concrete, token);
                if rank(held) < rank(role) {
                    assert_eq!(status, 403, "{method} {concrete} as {held}: {text}");
                    assert!(
                        text.contains(&format!("needs the {role} role")),
                        "{method} {concrete} as {held}: {text}"
                    );
                } else {
                    assert!(
                        status != 403 && status != 401,
                        "{method} {concrete} as {held}: {status} {text}"
                    );
                }
            }
        }
    }
    assert!(
        operations >= 30,
        "only {operations} operations in the document"
    );

    // Every refusal is in the audit log, with who and the status; reads are not.
    let audit = s.json(&["audit"]);
    let entries = audit.as_array().unwrap();
    let read_id = tokens[0]
        .1
        .rsplit('-')
        .next()
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["who"] == format!("token {read_id}")
                && e["status"] == 403
                && e["method"] == "POST"
                && e["path"] == "/v1/services"
                && e["source"].as_str().unwrap().starts_with("127.0.0.1:")),
        "{audit:#}"
    );
    // Reads are not recorded, refused ones are.
    assert!(entries.iter().all(|e| e["method"] != "GET"
        || e["status"] == 403
        || e["path"].as_str().unwrap().ends_with("/exec")));
    assert!(
        entries
            .iter()
            .any(|e| e["method"] == "GET" && e["path"] == "/v1/backup" && e["status"] == 403),
        "{audit:#}"
    );
    let refused = dash_as(&s, &tokens[1].1, &["audit"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs the admin role"));
}

#[test]
fn revoked_expired_and_join_tokens_are_refused_and_deploy_ships_but_does_not_administer() {
    let s = Server::start_with(
        50,
        &["--advertise-addr", "127.0.0.1", "--cluster-port", "17750"],
    );
    let deploy = create_token(&s, "deploy", &["--ttl", "720h"]);
    let read = create_token(&s, "read", &[]);
    let short = create_token(&s, "read", &["--ttl", "1s"]);
    let join = create_token(&s, "worker", &[]);

    // deploy: applies and scales, but makes no tokens and removes no nodes.
    s.import_busybox("bb:acc");
    let file = s.write(
        "web.toml",
        "name = \"acc\"\nimage = \"bb:acc\"\ncommand = [\"sleep\", \"100000\"]\nstop_grace_period = \"1s\"\n",
    );
    let out = dash_as(&s, &deploy, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    s.wait_running("acc", 1);
    for args in [
        &["token", "create", "--role", "read"][..],
        &["node", "rm", "e2e50"][..],
        &["node", "drain", "e2e50"][..],
    ] {
        let out = dash_as(&s, &deploy, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("needs the admin role"),
            "{args:?}: {err}"
        );
    }
    // read: reads, applies nothing.
    assert!(dash_as(&s, &read, &["ps"]).status.success());
    let out = dash_as(&s, &read, &["apply", "-f", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs the deploy role"),
        "{err}"
    );

    // 401: expired, revoked, a join token, a token of another cluster, garbage.
    std::thread::sleep(Duration::from_millis(1100));
    let id = |t: &str| {
        t.rsplit('-')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_string()
    };
    s.ok(&["token", "revoke", &id(&read)]);
    let other_cluster = {
        let (fp_and_rest, _) = deploy.split_at("DASH1-".len() + 64);
        deploy.replacen(&fp_and_rest["DASH1-".len()..], &"0".repeat(64), 1)
    };
    for (token, why) in [
        (short.as_str(), "expired"),
        (read.as_str(), "revoked"),
        (join.as_str(), "join token"),
        (other_cluster.as_str(), "another cluster"),
        ("0123456789abcdef", "wrong"),
    ] {
        let (status, text) = ask(&s.addr, "GET", "/v1/services", token);
        assert_eq!(status, 401, "{why}: {text}");
        assert!(text.contains(why), "{why}: {text}");
    }

    // The audit log says who applied what, from where, and who was refused.
    let audit = s.json(&["audit", "--since", "10m"]);
    let entries = audit.as_array().unwrap();
    let applied = entries
        .iter()
        .find(|e| e["path"] == "/v1/services" && e["status"] == 200)
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(applied["who"], format!("token {}", id(&deploy)));
    assert_eq!(applied["role"], "deploy");
    assert!(
        applied["target"].as_str().unwrap().contains("service acc"),
        "{applied}"
    );
    assert!(
        applied["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "/v1/nodes/e2e50" && e["status"] == 403)
    );
    let table = s.ok(&["audit"]);
    assert!(
        table.contains("DELETE /v1/nodes/e2e50") && table.contains("403"),
        "{table}"
    );
}
