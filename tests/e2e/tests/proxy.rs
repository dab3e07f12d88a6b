//! The built-in L7 proxy with real replicas: routing by host and path, and no failed requests
//! while replicas come and go under a steady, bounded load.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dash_e2e::{Server, ws};

/// One HTTP/1.1 GET through the proxy with a Host header: (status, body).
fn get(proxy: &str, host: &str, path: &str) -> anyhow::Result<(u16, String)> {
    dash_e2e::http_get_host(proxy, host, path)
}

/// A steady load of `threads` clients until stopped (at most `limit`): (ok, failed).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: &str, host: &str, threads: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let handles = (0..threads)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (proxy, host) = (proxy.to_string(), host.to_string());
                std::thread::spawn(move || {
                    let end = Instant::now() + limit;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let t = Instant::now();
                        match get(&proxy, &host, "/") {
                            Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                            other => {
                                eprintln!(
                                    "failed after {:?}: {:?}",
                                    t.elapsed(),
                                    other
                                        .map(|(c, b)| (c, b.chars().take(120).collect::<String>()))
                                );
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            handles,
        }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn web(replicas: u32, extra: &str) -> String {
    format!(
        "name = \"web\"\nimage = \"bb:1\"\ncommand = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\nreplicas = {replicas}\n\
         stop_grace_period = \"1s\"\n{extra}\n[[routes]]\nhost = \"web.local\"\nport = 8080\n\
         [[routes]]\nhost = \"*.apps.test\"\npath_prefix = \"/www\"\nstrip_prefix = true\nport = 8080\n"
    )
}

#[test]
fn routes_by_host_and_path_and_survives_scaling_kills_and_updates_under_load() {
    let s = Server::start(41);
    let proxy = s.proxy_addr.clone();
    s.import_busybox("bb:1");
    s.apply("web.toml", &web(3, ""));
    s.wait_running("web", 3);
    s.wait("the route has 3 upstreams", Duration::from_secs(10), || {
        let routes = s.json(&["route", "ls"]);
        (routes[0]["upstreams"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });

    let (code, body) = get(&proxy, "web.local", "/").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("hello from dash"), "{body}");
    // Wildcard host with a stripped prefix: /www/index.html → /index.html.
    let (code, body) = get(&proxy, "a.apps.test", "/www/index.html").unwrap();
    assert_eq!(
        (code, body.contains("hello from dash")),
        (200, true),
        "{body}"
    );
    let (code, _) = get(&proxy, "nobody.local", "/").unwrap();
    assert_eq!(code, 404);

    // Scale 3 → 1 under load: no failed request.
    let load = Load::start(&proxy, "web.local", 4, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    s.ok(&["scale", "web", "1"]);
    s.wait_running("web", 1);
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, failed) = load.finish();
    assert!(ok > 100, "load ran: {ok}");
    assert_eq!(failed, 0, "failed requests while scaling 3 → 1 ({ok} ok)");

    // A rolling update under load: no failed request.
    s.ok(&["scale", "web", "3"]);
    s.wait_running("web", 3);
    let load = Load::start(&proxy, "web.local", 4, Duration::from_secs(90));
    let f2 = s.write("web2.toml", &web(3, "[env]\nV = \"2\"\n"));
    s.ok(&["apply", "-f", f2.to_str().unwrap()]);
    s.wait("all at version 2", Duration::from_secs(60), || {
        dash_e2e::all_running_at(&s.replicas("web"), 3, 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, failed) = load.finish();
    assert_eq!(
        failed, 0,
        "failed requests during the rolling update ({ok} ok)"
    );

    // kill -9 of a replica under load: only requests in flight may fail, none after.
    let victim = s.replicas("web")[0]["id"].as_str().unwrap().to_string();
    let pid = s.replica_pid(&victim);
    let load = Load::start(&proxy, "web.local", 4, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    dash_e2e::sigkill(pid);
    s.wait("the victim running again", Duration::from_secs(10), || {
        let r = s.replicas("web");
        r.iter()
            .any(|x| x["id"] == victim.as_str() && x["restarts"] == 1 && x["state"] == "running")
            .then_some(())
    });
    let (ok_during, failed_during) = load.finish();
    assert!(
        failed_during <= 4,
        "more failures than requests in flight: {failed_during} ({ok_during} ok)"
    );
    let load = Load::start(&proxy, "web.local", 4, Duration::from_secs(3));
    let (ok, failed) = load.finish_after(Duration::from_secs(2));
    assert_eq!(failed, 0, "failures after the restart ({ok} ok)");

    // Counters show in `dash route ls`.
    let routes = s.json(&["route", "ls"]);
    assert!(routes[0]["requests"].as_u64().unwrap() > 100, "{routes}");
}

impl Load {
    fn finish_after(self, d: Duration) -> (u64, u64) {
        std::thread::sleep(d);
        self.finish()
    }
}

#[test]
fn websocket_echo_reaches_a_replica_through_the_proxy() {
    let s = Server::start(42);
    let echo = std::path::PathBuf::from(env!("CARGO_BIN_EXE_ws-echo"));
    s.import_busybox_with("wsecho:1", &[&echo]);
    s.apply("ws.toml",
        "name = \"ws\"\nimage = \"wsecho:1\"\ncommand = [\"/bin/ws-echo\", \"9000\"]\nreplicas = 2\n\
         stop_grace_period = \"1s\"\n[health]\nhttp = \"/\"\nport = 9000\ninterval = \"200ms\"\ntimeout = \"200ms\"\n\
         [[routes]]\nhost = \"ws.local\"\nport = 9000\n");
    s.wait_running("ws", 2);
    s.wait("both replicas routed", Duration::from_secs(15), || {
        let routes = s.json(&["route", "ls"]);
        (routes[0]["upstreams"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    let replicas: Vec<String> = s
        .replicas("ws")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();

    // Connections until both replicas have answered an upgrade (the balancer is per proxy
    // thread, so two in a row may land on the same one); every one echoes.
    let mut seen: Vec<String> = Vec::new();
    for i in 0..20 {
        if seen.len() == 2 {
            break;
        }
        let mut c = ws::Client::connect(&s.proxy_addr, "ws.local", "/chat").unwrap();
        let replica = ws::header(&c.head, "x-replica").unwrap_or("").to_string();
        assert!(
            replicas.contains(&replica),
            "upgrade answered by {replica:?}, not one of {replicas:?}"
        );
        if !seen.contains(&replica) {
            seen.push(replica);
        }
        let text = format!("hello {i} through the proxy");
        c.send(ws::TEXT, text.as_bytes()).unwrap();
        assert_eq!(c.recv().unwrap(), (ws::TEXT, text.into_bytes()));
        let big: Vec<u8> = (0..100_000u32).map(|x| (x % 251) as u8).collect();
        c.send(ws::BINARY, &big).unwrap();
        assert_eq!(c.recv().unwrap(), (ws::BINARY, big));
        c.send(ws::PING, b"p").unwrap();
        assert_eq!(c.recv().unwrap(), (ws::PONG, b"p".to_vec()));
        c.send(ws::CLOSE, &1000u16.to_be_bytes()).unwrap();
        assert_eq!(c.recv().unwrap().0, ws::CLOSE);
    }
    assert_eq!(seen.len(), 2, "both replicas served an upgrade: {seen:?}");
}

#[test]
fn replicas_that_exit_at_once_on_sigterm_fail_no_request_when_scaled_down() {
    // sh as PID 1 with a TERM trap: the whole replica is gone the moment SIGTERM arrives
    // (busybox httpd alone, as PID 1, ignores it and waits for the SIGKILL).
    let s = Server::start(43);
    let proxy = s.proxy_addr.clone();
    s.import_busybox("bb:1");
    s.apply("quick.toml",
        "name = \"quick\"\nimage = \"bb:1\"\n\
         command = [\"sh\", \"-c\", \"trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait\"]\n\
         replicas = 3\nstop_grace_period = \"10s\"\n[[routes]]\nhost = \"quick.local\"\nport = 8080\n");
    s.wait_running("quick", 3);
    s.wait("the route has 3 upstreams", Duration::from_secs(10), || {
        let routes = s.json(&["route", "ls"]);
        (routes[0]["upstreams"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    let load = Load::start(&proxy, "quick.local", 4, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    s.ok(&["scale", "quick", "1"]);
    s.wait("2 replicas gone", Duration::from_secs(30), || {
        (s.replicas("quick").len() == 1).then_some(())
    });
    // They exited on SIGTERM, long before their 10 s grace period.
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, failed) = load.finish();
    assert!(ok > 100, "load ran: {ok}");
    assert_eq!(failed, 0, "failed requests while scaling 3 → 1 ({ok} ok)");
}
