//! service_scaler with real replicas: requests through the proxy and CPU use measured from
//! cgroups scale services up, quiet scales them back down after `scale_down_delay`, and
//! `dash stats` shows what the scaler sees.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dash_e2e::Server;

fn running(s: &Server, service: &str) -> usize {
    s.replicas(service)
        .iter()
        .filter(|r| {
            matches!(r["state"].as_str(), Some("running" | "healthy")) && r["desired"] == "run"
        })
        .count()
}

/// A server whose scaler looks every second, running the service of `file_text` (named
/// `name`) with its first replica up; also the service file's path.
fn serve(slot: u8, name: &str, file_text: &str) -> (Server, std::path::PathBuf) {
    let s = Server::start_with(slot, &["--autoscale-interval", "1s"]);
    s.import_busybox("bb:1");
    let file = s.write(&format!("{name}.toml"), file_text);
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
    s.wait_running(name, 1);
    (s, file)
}

/// A server running service `name` (`sh -c script` in `bb:1`, with `resource` in its
/// `[resources]`) that autoscales to at most 2 replicas at `percent` % of `metric`, once the
/// scaler has scaled it up to 2 on `metric`, as its event says; also `dash stats name`.
fn scaled_up_on(
    slot: u8,
    name: &str,
    script: &str,
    resource: &str,
    metric: &str,
    percent: u32,
) -> (Server, serde_json::Value) {
    let (s, _) = serve(
        slot,
        name,
        &format!(
            r#"name = "{name}"
image = "bb:1"
command = ["sh", "-c", "{script}"]
stop_grace_period = "1s"

[resources]
{resource}

[autoscale]
max = 2
{metric}_percent = {percent}
"#
        ),
    );
    s.wait(
        &format!("{name} scaled up to 2 on {metric}"),
        Duration::from_secs(60),
        || (running(&s, name) == 2).then_some(()),
    );
    let events = past_events(&s);
    assert!(
        events.contains(&format!("replicas 1 -> 2 (autoscale: {metric}")),
        "{events}"
    );
    let stats = s.json(&["stats", name]);
    (s, stats)
}

fn past_events(s: &Server) -> String {
    let out = std::process::Command::new("timeout")
        .arg("2")
        .arg(dash_e2e::dash_bin())
        .args(["events", "--past"])
        .env("DASH_ADDR", &s.addr)
        .env("DASH_TOKEN", s.token())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn requests_through_the_proxy_scale_a_service_up_and_quiet_scales_it_down() {
    let (s, file) = serve(
        71,
        "aweb",
        r#"name = "aweb"
image = "bb:1"
command = ["httpd", "-f", "-p", "8080", "-h", "/www"]
stop_grace_period = "1s"

[[routes]]
host = "aweb.local"
port = 8080

[autoscale]
max = 3
requests_per_second = 4
scale_down_delay = "8s"
"#,
    );
    // By hand only within the bounds.
    let err = s.fails(&["scale", "aweb", "5"]);
    assert!(err.contains("autoscales between 1 and 3"), "{err}");

    // About 40 requests per second, ten times the target of one replica.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, served, proxy) = (stop.clone(), served.clone(), s.proxy_addr.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((200, _)) = dash_e2e::http_get_host(&proxy, "aweb.local", "/") {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let started = Instant::now();
    s.wait(
        "aweb scaled up to its max of 3",
        Duration::from_secs(60),
        || (running(&s, "aweb") == 3).then_some(()),
    );
    eprintln!(
        "scaled 1 -> 3 in {:?} under load ({} requests served)",
        started.elapsed(),
        served.load(Ordering::Relaxed)
    );
    let events = past_events(&s);
    assert!(
        events.contains("replicas 1 -> ") && events.contains("req/s per replica, target 4"),
        "{events}"
    );
    // What the scaler saw, per replica.
    let stats = s.json(&["stats", "aweb"]);
    let stats = stats.as_array().unwrap();
    assert_eq!(stats.len(), 3, "{stats:?}");
    s.wait(
        "every aweb replica measured",
        Duration::from_secs(10),
        || {
            let stats = s.json(&["stats", "aweb"]);
            let stats = stats.as_array().unwrap();
            (!stats.is_empty()
                && stats
                    .iter()
                    .all(|r| r["memory_bytes"].as_u64().is_some_and(|m| m > 0)))
            .then_some(())
        },
    );
    // Applying the same file again keeps the scaler's count.
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        s.json(&["service", "inspect", "aweb"])["spec"]["replicas"],
        3
    );

    // Quiet: back to the minimum once the delay has passed, and not before. The proxy's rate
    // (`dash route ls`, live) says when the load first calls for fewer than 3 replicas (at
    // most 8 req/s: 3 × 8 / 3 / 4 rounds up to 2); the scaler sees the same rate up to 2 s
    // later (nodes report every 2 s), so it may shrink no earlier than the 8 s delay after
    // that. Without the delay it would shrink within its 1 s interval of seeing it.
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let quiet = Instant::now();
    let mut fewer_wanted: Option<Instant> = None;
    let shrunk = s.wait("aweb scales down", Duration::from_secs(60), || {
        let rps = s
            .json(&["route", "ls"])
            .as_array()
            .and_then(|r| r.iter().find(|r| r["host"] == "aweb.local").cloned())
            .and_then(|r| r["requests_per_second"].as_f64());
        if fewer_wanted.is_none() && rps.is_some_and(|rps| rps <= 8.0) {
            fewer_wanted = Some(Instant::now());
        }
        (running(&s, "aweb") < 3).then(Instant::now)
    });
    let fewer_wanted = fewer_wanted.expect("the rate fell below the target before the scale-down");
    let held = shrunk.duration_since(fewer_wanted);
    assert!(
        held >= Duration::from_secs(6),
        "scaled down {held:?} after the load called for it: the 8 s scale_down_delay was not kept"
    );
    s.wait("aweb back to 1 replica", Duration::from_secs(60), || {
        (running(&s, "aweb") == 1).then_some(())
    });
    let waited = quiet.elapsed();
    eprintln!(
        "scaled back to 1 in {waited:?} after the load stopped (held {held:?} after fewer were wanted)"
    );
    assert!(
        past_events(&s).contains("-> 1 (autoscale:"),
        "the scaler, not something else, scaled it down"
    );
}

#[test]
fn cpu_use_against_the_replicas_share_scales_a_service_up() {
    // A busy loop capped at a fifth of a core: 100 % of its share, twice the target.
    let (s, stats) = scaled_up_on(72, "hog", "while :; do :; done", "cpu = 0.2", "cpu", 50);
    let first = &stats.as_array().unwrap()[0];
    assert!(
        first["cpu_percent_of_limit"].as_f64().unwrap_or(0.0) > 50.0,
        "{stats}"
    );
    // The table names what it shows.
    let table = s.ok(&["stats"]);
    assert!(table.contains("CPU %") && table.contains("hog-"), "{table}");
}

#[test]
fn memory_use_against_the_replicas_limit_scales_a_service_up() {
    // About 24 MiB held in a shell variable (the loop keeps the shell from exec-ing away),
    // against a 64 MiB limit: ≈ 38 %, about twice the target.
    let (_s, stats) = scaled_up_on(
        76,
        "mem",
        "x=$(yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | head -c 25000000); while :; do sleep 1000; done",
        "memory = \"64MiB\"",
        "memory",
        20,
    );
    let first = &stats.as_array().unwrap()[0];
    assert_eq!(first["memory_limit_bytes"], 64 << 20, "{stats}");
}

#[test]
fn bad_autoscale_sections_are_refused_naming_the_field() {
    let s = Server::start_with(73, &[]);
    let file = s.write(
        "bad.toml",
        "name = \"bad\"\nimage = \"bb:1\"\n[autoscale]\nmin = 4\nmax = 2\n",
    );
    let err = s.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        err.contains("autoscale.max = 2: less than autoscale.min = 4"),
        "{err}"
    );
    assert!(err.contains("has no target"), "{err}");
    assert!(
        !s.ok(&["service", "ls"]).contains("bad"),
        "nothing half-made"
    );
    let out = s.dash(&["stats", "nope"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{out:?}"
    );
}
