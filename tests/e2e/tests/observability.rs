//! Seeing the cluster (issue 14): why a replica died, logs in a time window, events filtered,
//! Prometheus metrics, the history the portal charts, `dash top -o json`; with real
//! containers on one node.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::time::Duration;

use dash_e2e::Server;

/// A replica the kernel kills for going over its memory limit says so, in `dash ps`, in the
/// event and after its restart, instead of only "exit code 137".
#[test]
fn an_oom_kill_is_named_with_the_limit() {
    let s = Server::start_with_busybox(72);
    // dd asks for a 64 MiB buffer in a cgroup that allows 8 MiB (there is no swap to go to).
    s.apply(
        "hog.toml",
        "name = \"hog\"\nimage = \"bb:1\"\n\
         command = [\"dd\", \"if=/dev/zero\", \"of=/dev/null\", \"bs=64M\", \"count=1\"]\n\
         [resources]\nmemory = \"8MiB\"\n\
         [restart]\nbackoff = \"30s\"\nmax_backoff = \"30s\"\n",
    );
    // The first restart is immediate, the second waits 30 s: the replica sits exited with
    // its message in view.
    let rep = s.wait("hog killed twice", Duration::from_secs(30), || {
        let reps = s.replicas("hog");
        let r = reps.first()?;
        (r["restarts"].as_u64()? >= 1 && r["state"] == "exited").then(|| r.clone())
    });
    assert_eq!(rep["exit_code"], 137, "{rep}");
    let message = rep["message"].as_str().unwrap();
    assert!(
        message.starts_with("out of memory (limit 8 MiB)"),
        "dash ps message: {message:?}"
    );
    let ps = s.ok(&["ps"]);
    assert!(ps.contains("out of memory (limit 8 MiB)"), "{ps}");
    // The event of the exit says it too.
    let events = s.ok(&[
        "events",
        "--past",
        "--service",
        "hog",
        "--type",
        "replica_exited",
        "--until",
        "now",
    ]);
    assert!(
        events.contains("exit code 137: out of memory (limit 8 MiB)"),
        "{events}"
    );
    // /metrics says it too: the kills over the replica's life (its restarted container's
    // cgroup counts from 0 again), and how its last run ended.
    let id = rep["id"].as_str().unwrap();
    let me = [("replica", id), ("service", "hog")];
    // (The replica can be seen exited with a restart counted just before its second run
    // starts: the second kill is waited for.)
    let text = s.wait("two OOM kills in /metrics", Duration::from_secs(20), || {
        let (code, text) =
            dash_e2e::http_request(&s.addr, "GET", "/metrics", Some(&s.token())).ok()?;
        (code == 200 && sample(&text, "container_oom_events_total", &me).is_some_and(|n| n >= 2.0))
            .then_some(text)
    });
    assert_eq!(
        sample(
            &text,
            "dash_replica_last_terminated_reason",
            &[("replica", id), ("reason", "OOMKilled")]
        ),
        Some(1.0),
        "{text}"
    );
    s.ok(&["service", "rm", "hog"]);
}

/// `[health] restart = true`: a replica whose check fails is stopped and started again, and
/// `dash ps` and the event say it was its health check.
#[test]
fn a_replica_stopped_by_its_health_check_says_so() {
    let s = Server::start_with_busybox(78);
    // Ready for a second after each start, then not: every run ends by its health check.
    s.apply(
        "flaky.toml",
        "name = \"flaky\"\nimage = \"bb:1\"\n\
         command = \"touch /tmp/ready; sleep 1; rm /tmp/ready; sleep 1000\"\n\
         stop_grace_period = \"1s\"\n\
         [health]\nexec = [\"cat\", \"/tmp/ready\"]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n\
         retries = 1\nrestart = true\n",
    );
    let rep = s.wait(
        "flaky restarted by its health check",
        Duration::from_secs(40),
        || {
            let reps = s.replicas("flaky");
            let r = reps.first()?;
            (r["restarts"].as_u64()? >= 1
                && r["message"]
                    .as_str()?
                    .contains("stopped by its health check"))
            .then(|| r.clone())
        },
    );
    let message = rep["message"].as_str().unwrap();
    let why = message
        .split("stopped by its health check: ")
        .nth(1)
        .unwrap_or("");
    assert!(!why.trim().is_empty(), "the probe's error: {message}");
    let events = s.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "now",
        "--service",
        "flaky",
        "--type",
        "replica_exited",
    ]);
    assert!(events.contains("stopped by its health check"), "{events}");
    s.ok(&["service", "rm", "flaky"]);
}

/// The value of the first sample of `name` whose labels hold every `(key, value)` of `with`.
fn sample(text: &str, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        with.iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// `promtool check metrics` (Debian's prometheus package) must accept the text.
fn promtool_accepts(text: &str) {
    dash_e2e::require(
        "promtool (Debian's prometheus package)",
        std::path::Path::new("/usr/bin/promtool").exists(),
    );
    let out = dash_e2e::output_with_input(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        text,
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// /metrics parses with promtool and holds the named series, a CPU-burning replica's CPU
/// seconds rise, the history route charts it, `dash top -o json` streams every running
/// replica, and logs and events answer time windows.
#[test]
fn metrics_history_top_and_time_windows_on_one_node() {
    let s = Server::start_with_busybox(74);
    let token = s.token();
    s.apply(
        "burn.toml",
        "name = \"burn\"\nimage = \"bb:1\"\ncommand = \"while :; do :; done\"\n\
         [resources]\nmemory = \"32MiB\"\n",
    );
    s.apply(
        "talk.toml",
        "name = \"talk\"\nimage = \"bb:1\"\n\
         command = \"i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done\"\n\
         replicas = 2\n",
    );
    s.apply(
        "web.toml",
        "name = \"web\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         [[routes]]\nhost = \"web.local\"\nport = 8080\n",
    );
    let burn = s.wait_running("burn", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_running("talk", 2);
    s.wait_running("web", 1);
    // Traffic through the proxy, for its series.
    s.wait("the route answers", Duration::from_secs(15), || {
        dash_e2e::http_get_host(&s.proxy_addr, "web.local", "/")
            .ok()
            .filter(|(code, _)| *code == 200)
    });
    for _ in 0..5 {
        let _ = dash_e2e::http_get_host(&s.proxy_addr, "web.local", "/");
    }

    let scrape = || {
        let (code, text) =
            dash_e2e::http_request(&s.addr, "GET", "/metrics", Some(&token)).unwrap();
        assert_eq!(code, 200, "{text}");
        text
    };
    let (code, _) = dash_e2e::http_request(&s.addr, "GET", "/metrics", None).unwrap();
    assert_eq!(code, 401, "/metrics needs a token");
    // Made-up methods and paths do not make series of their own.
    let _ = dash_e2e::http_request(&s.addr, "FOOBAR", "/v1/made-up-path", Some(&token));
    let first = scrape();
    assert!(
        !first.contains("FOOBAR") && !first.contains("made-up-path"),
        "{first}"
    );
    assert!(
        sample(
            &first,
            "dash_api_requests_total",
            &[("method", "other"), ("route", "other")]
        )
        .is_some(),
        "{first}"
    );
    promtool_accepts(&first);
    let me = [
        ("service", "burn"),
        ("replica", burn.as_str()),
        ("node", "e2e74"),
    ];
    let cpu1 = sample(&first, "container_cpu_usage_seconds_total", &me)
        .unwrap_or_else(|| panic!("no CPU of {burn}:\n{first}"));
    assert_eq!(
        sample(&first, "container_spec_memory_limit_bytes", &me),
        Some(32.0 * 1024.0 * 1024.0)
    );
    assert!(sample(&first, "container_memory_working_set_bytes", &me).unwrap() > 0.0);
    for name in [
        "container_network_receive_bytes_total",
        "container_network_transmit_packets_total",
        "container_oom_events_total",
        "dash_replica_restarts_total",
    ] {
        assert!(
            sample(&first, name, &me).is_some(),
            "{name} of {burn}:\n{first}"
        );
    }
    assert_eq!(
        sample(
            &first,
            "dash_replicas",
            &[("service", "talk"), ("state", "running")]
        ),
        Some(2.0),
        "{first}"
    );
    assert_eq!(sample(&first, "dash_services", &[]), Some(3.0));
    assert!(
        sample(
            &first,
            "dash_api_requests_total",
            &[
                ("method", "POST"),
                ("route", "/v1/services"),
                ("code", "200")
            ]
        )
        .is_some_and(|n| n >= 3.0),
        "{first}"
    );
    assert!(sample(&first, "dash_reconcile_duration_seconds_count", &[]).is_some_and(|n| n > 0.0));
    let web_route = [("service", "web"), ("host", "web.local"), ("code", "2xx")];
    assert!(
        sample(&first, "dash_proxy_requests_total", &web_route).is_some_and(|n| n >= 5.0),
        "{first}"
    );
    assert!(
        sample(
            &first,
            "dash_proxy_request_duration_seconds_count",
            &[("service", "web"), ("host", "web.local")]
        )
        .is_some_and(|n| n >= 5.0)
    );
    // A replica burning CPU: its CPU seconds rise (about one a second).
    std::thread::sleep(Duration::from_secs(2));
    let second = scrape();
    let cpu2 = sample(&second, "container_cpu_usage_seconds_total", &me).unwrap();
    assert!(cpu2 > cpu1 + 0.5, "CPU seconds {cpu1} then {cpu2}");

    // History: the last hour in 10 s buckets, the burner near one core.
    let history = s.wait("burn's history", Duration::from_secs(20), || {
        let (code, body) = dash_e2e::http_request(
            &s.addr,
            "GET",
            "/v1/services/burn/history?window_s=600",
            Some(&token),
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200
            && v["points"]
                .as_array()?
                .iter()
                .any(|p| p["cpu_percent"].as_f64().is_some_and(|c| c > 50.0)))
        .then_some(v)
    });
    assert_eq!(history["resolution_ms"], 10_000);
    assert_eq!(history["replicas"][0]["replica"], burn.as_str());
    // Bad input: clear errors naming what is wrong.
    let (code, body) = dash_e2e::http_request(
        &s.addr,
        "GET",
        "/v1/services/burn/history?window_s=5",
        Some(&token),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("window_s") && body.contains("10 to 3600"),
        "{body}"
    );
    let (code, body) = dash_e2e::http_request(
        &s.addr,
        "GET",
        "/v1/services/burn/history?window_s=lots",
        Some(&token),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, body) =
        dash_e2e::http_request(&s.addr, "GET", "/v1/services/nosuch/history", Some(&token))
            .unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("nosuch"), "{body}");

    // dash top -o json: rows for every running replica, refresh after refresh.
    let out = s.ok(&["top", "-o", "json", "-n", "2", "--interval", "500ms"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let running: std::collections::BTreeSet<String> = s
        .json(&["ps"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "running")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(running.len(), 4);
    let refreshes: std::collections::BTreeSet<u64> = rows
        .iter()
        .map(|r| r["time_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(refreshes.len(), 2, "{out}");
    for t in &refreshes {
        let ids: std::collections::BTreeSet<String> = rows
            .iter()
            .filter(|r| r["time_ms"].as_u64() == Some(*t))
            .map(|r| r["replica"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, running, "{out}");
    }
    let burn_row = rows
        .iter()
        .rev()
        .find(|r| r["replica"] == burn.as_str())
        .unwrap();
    assert!(
        burn_row["cpu_percent"].as_f64().unwrap() > 50.0,
        "{burn_row}"
    );
    assert_eq!(burn_row["memory_limit_bytes"], 32 << 20);
    // Its CPU trend comes from the masters' history (waited for above).
    assert!(
        burn_row["cpu_trend"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_f64().is_some_and(|c| c > 50.0)),
        "{burn_row}"
    );
    for key in [
        "net_rx_bytes",
        "net_tx_bytes",
        "requests_per_second",
        "restarts",
        "node",
    ] {
        assert!(!burn_row[key].is_null(), "{key}: {burn_row}");
    }
    let err = s.fails(&["top", "--interval", "10ms", "-n", "1"]);
    assert!(err.contains("--interval"), "{err}");

    // Logs in a window: --since 2s gives only lines of the last 2 s, both replicas' merged in
    // time order; --until before the service existed gives none.
    let before_start = dash_core::clock::utc_ms(dash_core::clock::now_ms() - 3_600_000);
    let now = dash_core::clock::now_ms();
    let out = s.ok(&["logs", "--since", "2s", "--timestamps", "talk"]);
    let stamps: Vec<&str> = out
        .lines()
        .map(|l| l.split_once(" | ").unwrap().1.split(' ').next().unwrap())
        .collect();
    assert!(
        stamps.len() >= 10,
        "two replicas, 5 lines a second each, for 2 s:\n{out}"
    );
    let earliest = dash_core::clock::utc_ms(now - 2_000);
    assert!(
        stamps.iter().all(|t| *t >= earliest.as_str()),
        "{earliest}:\n{out}"
    );
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "not in time order:\n{out}"
    );
    let replicas: std::collections::BTreeSet<&str> = out
        .lines()
        .map(|l| l.split_once(" | ").unwrap().0)
        .collect();
    assert_eq!(replicas.len(), 2, "{out}");
    let plain = s.ok(&["logs", "--tail", "1", "talk"]);
    assert!(
        plain
            .lines()
            .all(|l| l.split_once(" | ").unwrap().1.starts_with("stdout tick")),
        "{plain}"
    );
    let none = s.ok(&["logs", "--until", &before_start, "talk"]);
    assert_eq!(none.trim(), "", "{none}");
    let err = s.fails(&["logs", "--since", "yesterday", "talk"]);
    assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");

    // Events filtered by service and type, over a window that ends now.
    let ev = s.ok(&[
        "events",
        "--since",
        "10m",
        "--until",
        "now",
        "--service",
        "talk",
        "--type",
        "replica_running",
        "-o",
        "json",
    ]);
    let events: Vec<serde_json::Value> = ev
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{ev}");
    assert!(
        events
            .iter()
            .all(|e| e["service"] == "talk" && e["kind"] == "replica_running")
    );
    let err = s.fails(&["events", "--type", "replica_exploded", "--until", "now"]);
    assert!(err.contains("type"), "{err}");

    // A stop is not held up by answers that never end (`dash events`, `dash logs -f`, an
    // open portal): they are cut after a short grace.
    let mut s = s;
    let mut followers: Vec<std::process::Child> = [&["events"][..], &["logs", "-f", "talk"][..]]
        .iter()
        .map(|args| {
            std::process::Command::new(dash_e2e::dash_bin())
                .args(*args)
                .env("DASH_ADDR", &s.addr)
                .env("DASH_TOKEN", token.trim())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let stopped = s.terminate(Duration::from_secs(15));
    for f in &mut followers {
        let _ = f.kill();
        let _ = f.wait();
    }
    assert!(
        stopped,
        "dash server did not stop on SIGTERM with streams open:\n{}",
        dash_e2e::tail(&s.log(), 20)
    );
    s.restart();
    s.remove_all_services();
}

/// Across two nodes: `dash logs --since` merges both nodes' replicas in time order and keeps
/// only recent lines; a worker serves its own /metrics on 127.0.0.1:9180 (in its namespace),
/// which promtool accepts and which holds its replica's series labelled with its node.
#[test]
fn logs_merge_across_nodes_and_a_worker_serves_its_metrics() {
    let c = dash_e2e::cluster::Cluster::start(75, 1);
    c.import_busybox("bb:1");
    c.apply(
        "talk.toml",
        "name = \"talk\"\nimage = \"bb:1\"\n\
         command = \"i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done\"\n\
         replicas = 2\n[placement]\nmax_per_node = 1\n",
    );
    let per_node = c.wait("talk on both nodes", Duration::from_secs(60), || {
        let m = c.running_per_node("talk");
        (m.len() == 2).then_some(m)
    });
    assert!(per_node.values().all(|n| *n == 1), "{per_node:?}");
    // Let both write for a while, so that older lines exist to be left out.
    std::thread::sleep(Duration::from_secs(3));
    let now = dash_core::clock::now_ms();
    let out = c.ok(&["logs", "--since", "2s", "--timestamps", "talk"]);
    let lines: Vec<(&str, &str)> = out
        .lines()
        .map(|l| {
            let (replica, rest) = l.split_once(" | ").unwrap();
            (replica, rest.split(' ').next().unwrap())
        })
        .collect();
    let replicas: std::collections::BTreeSet<&str> = lines.iter().map(|(r, _)| *r).collect();
    assert_eq!(replicas.len(), 2, "both nodes' replicas:\n{out}");
    let earliest = dash_core::clock::utc_ms(now - 2_000);
    assert!(
        lines.iter().all(|(_, t)| *t >= earliest.as_str()),
        "a line before {earliest}:\n{out}"
    );
    assert!(
        lines.windows(2).all(|w| w[0].1 <= w[1].1),
        "not in time order across the nodes:\n{out}"
    );
    assert!(lines.len() >= 10, "{out}");

    // The worker's own /metrics, inside its network namespace.
    let worker = &c.nodes[1];
    let replica = c
        .replicas("talk")
        .into_iter()
        .find(|r| r["node"] == worker.name.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let scrape = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", worker.netns))
        .args([
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:9180/metrics",
        ])
        .output()
        .unwrap();
    assert!(scrape.status.success(), "{scrape:?}");
    let text = String::from_utf8(scrape.stdout).unwrap();
    promtool_accepts(&text);
    let me = [
        ("service", "talk"),
        ("replica", replica.as_str()),
        ("node", worker.name.as_str()),
    ];
    assert!(
        sample(&text, "container_cpu_usage_seconds_total", &me).is_some(),
        "{replica} on {}:\n{text}",
        worker.name
    );
    assert!(sample(&text, "container_memory_working_set_bytes", &me).is_some_and(|m| m > 0.0));
    // Only its own replicas: the master's node's replica is not in the worker's answer.
    assert_eq!(
        text.matches("container_cpu_usage_seconds_total{").count(),
        1,
        "{text}"
    );
    assert!(sample(&text, "process_resident_memory_bytes", &[]).is_some_and(|m| m > 0.0));
}
