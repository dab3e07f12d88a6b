//! The cluster's DNS, from inside real replicas: services by name, `tasks.<service>`, names
//! kept to the networks a replica shares, names outside the cluster forwarded to an upstream
//! resolver the test runs on loopback (Debian's dnsmasq: no outside resolver is ever asked).

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dash_e2e::{Server, require};
use serde_json::Value;

/// dnsmasq on 127.0.0.1:`port`, answering `outside.test` with 192.0.2.7 and nothing else
/// (no upstream of its own: it never asks anyone).
struct Upstream(Child);

impl Upstream {
    fn start(port: u16) -> Upstream {
        require(
            "/usr/sbin/dnsmasq (Debian dnsmasq-base)",
            std::path::Path::new("/usr/sbin/dnsmasq").exists(),
        );
        let child = Command::new("/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--user=root",
                "--address=/outside.test/192.0.2.7",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Upstream(child)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lookup(s: &Server, replica: &str, name: &str) -> String {
    let out = s.exec_in(replica, &["nslookup", name]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The addresses an nslookup output lists after its `Name:` line.
fn addresses(out: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut after_name = false;
    for line in out.lines() {
        if line.starts_with("Name:") {
            after_name = true;
        } else if after_name && let Some(a) = line.strip_prefix("Address:") {
            found.push(a.trim().to_string());
        }
    }
    found.sort();
    found
}

/// Sends `n` queries for `api.dash` (A) at once to `server`:53 from `n` UDP sockets inside the
/// network namespace `netns`; returns the slowest answer's time. Panics if one is not answered
/// within 3 s.
fn burst_from(netns: &std::path::Path, server: &str, n: usize) -> Duration {
    let ns = std::fs::File::open(netns).unwrap();
    let server: std::net::SocketAddr = format!("{server}:53").parse().unwrap();
    std::thread::spawn(move || {
        // This thread's network namespace changes for good; it ends here.
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let query = |id: u16| {
            let mut q = id.to_be_bytes().to_vec();
            q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
            q.extend_from_slice(b"\x03api\x04dash\x00\x00\x01\x00\x01"); // api.dash A IN
            q
        };
        let socks: Vec<std::net::UdpSocket> = (0..n)
            .map(|_| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                s.connect(server).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let start = std::time::Instant::now();
        for (i, s) in socks.iter().enumerate() {
            s.send(&query(i as u16)).unwrap();
        }
        let mut took: Vec<Option<Duration>> = vec![None; n];
        let mut buf = [0u8; 512];
        while took.iter().any(Option::is_none) {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{} of {n} lookups unanswered after 3 s",
                took.iter().filter(|t| t.is_none()).count()
            );
            for (i, s) in socks.iter().enumerate() {
                if took[i].is_none() && s.recv(&mut buf).is_ok() {
                    took[i] = Some(start.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        took.into_iter().flatten().max().unwrap_or_default()
    })
    .join()
    .unwrap()
}

fn replica_ips(s: &Server, service: &str) -> Vec<String> {
    let mut ips: Vec<String> = s
        .replicas(service)
        .iter()
        .filter(|r| r["state"] == "running")
        .filter_map(|r| r["ip"].as_str().map(String::from))
        .collect();
    ips.sort();
    ips
}

/// api: HTTP on 8080 (busybox httpd) and a TCP echo on 9000 that keeps idle connections
/// (busybox nc), on the network `backend`; `extra` is more of the file (before its ports).
fn api_toml(extra: &str) -> String {
    format!(
        "name = \"api\"\nimage = \"busybox:dns\"\n\
         command = [\"sh\", \"-c\", \"nc -ll -p 9000 -e cat & exec httpd -f -p 8080 -h /www\"]\n\
         replicas = 2\nnetworks = [\"backend\"]\nstop_grace_period = \"1s\"\n{extra}\
         [[ports]]\ncontainer = 8080\n[[ports]]\ncontainer = 9000\n\
         [[routes]]\nhost = \"api.test\"\nport = 8080\n"
    )
}

#[test]
fn replicas_find_services_by_name_within_their_networks_and_other_names_go_upstream() {
    let port = 15344;
    let _upstream = Upstream::start(port);
    let upstream = format!("127.0.0.1:{port}");
    let s = Server::start_with(44, &["--dns-upstream", &upstream]);
    s.import_busybox("busybox:dns");
    s.apply("api.toml", &api_toml(""));
    for (name, networks) in [
        ("web", "[\"backend\", \"frontend\"]"),
        ("ui", "[\"frontend\"]"),
    ] {
        s.apply(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nimage = \"busybox:dns\"\ncommand = [\"sleep\", \"100000\"]\n\
                 networks = {networks}\nstop_grace_period = \"1s\"\n"
            ),
        );
    }
    s.wait_running("api", 2);
    let web = s.wait_running("web", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ui = s.wait_running("ui", 1)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The service's virtual IP and names, as inspect shows them.
    let api: Value = s.json(&["service", "inspect", "api"]);
    let vip = api["vip"]
        .as_str()
        .expect("api has a virtual IP")
        .to_string();
    assert!(vip.starts_with("10.96."), "{api}");
    let names: Vec<&str> = api["dns_names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, ["api", "api.backend", "api.dash", "tasks.api"]);

    // The replica's resolver is the node's gateway, with the search domain.
    let gateway = s.subnet.replace(".0/24", ".1");
    let resolv = s.exec_in(&web, &["cat", "/etc/resolv.conf"]);
    let resolv = String::from_utf8_lossy(&resolv.stdout);
    assert!(
        resolv.contains(&format!("nameserver {gateway}")) && resolv.contains("search dash"),
        "{resolv}"
    );

    for name in ["api", "api.backend", "api.dash"] {
        let out = lookup(&s, &web, name);
        assert_eq!(addresses(&out), [vip.as_str()], "{name}: {out}");
    }
    let out = lookup(&s, &web, "tasks.api");
    assert_eq!(addresses(&out), replica_ips(&s, "api"), "{out}");
    // A service without ports has no virtual IP: its name is its replicas.
    let out = lookup(&s, &ui, "web");
    assert_eq!(addresses(&out), replica_ips(&s, "web"), "{out}");

    // Not a network ui is on: api does not exist for it.
    let out = lookup(&s, &ui, "api");
    assert!(
        out.contains("NXDOMAIN") && addresses(&out).is_empty(),
        "{out}"
    );
    // Unknown in the cluster: NXDOMAIN; outside it: the upstream's answer.
    let out = lookup(&s, &web, "nothing.dash");
    assert!(out.contains("NXDOMAIN"), "{out}");
    let out = lookup(&s, &web, "www.outside.test");
    assert_eq!(addresses(&out), ["192.0.2.7"], "{out}");

    // Kept to their networks: web (backend and frontend) reaches an api replica, ui
    // (frontend only) does not; both are reached by the node (the proxy's path).
    let api_ip = replica_ips(&s, "api")[0].clone();
    let get = |from: &str| {
        s.exec_in(
            from,
            // Not wget's -T: Debian's busybox 1.35 wget crashes with it.
            &[
                "timeout",
                "3",
                "wget",
                "-q",
                "-O-",
                &format!("http://{api_ip}:8080/"),
            ],
        )
    };
    let out = get(&web);
    assert!(out.status.success(), "web → api: {out:?}");
    assert!(!get(&ui).status.success(), "ui reached api across networks");
    // The proxy is not a replica: it reaches api whatever the networks.
    let (code, body) = s.wait("api through the proxy", Duration::from_secs(10), || {
        dash_e2e::http_get_host(&s.proxy_addr, "api.test", "/")
            .ok()
            .filter(|(code, _)| *code == 200)
    });
    assert!(code == 200 && body.contains("hello"), "{code} {body}");
    let out = std::process::Command::new("curl")
        .args(["-sf", "-m", "2", &format!("http://{api_ip}:8080/")])
        .output()
        .unwrap();
    assert!(out.status.success(), "node → api: {out:?}");

    // Through the virtual IP (by name, or by address): web reaches api, ui does not.
    let fetch =
        |from: &str, url: &str| s.exec_in(from, &["timeout", "3", "wget", "-q", "-O-", url]);
    // The standard output of `sh -c script` in web.
    let sh_in_web = |script: &str| {
        String::from_utf8_lossy(&s.exec_in(&web, &["sh", "-c", script]).stdout).to_string()
    };
    let out = fetch(&web, "http://api:8080/");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("hello"),
        "web → http://api:8080/: {out:?}"
    );
    let by_vip = format!("http://{vip}:8080/");
    assert!(fetch(&web, &by_vip).status.success());
    assert!(
        !fetch(&ui, &by_vip).status.success(),
        "ui reached api's virtual IP across networks"
    );
    // The callee sees the caller's own address through the virtual IP, on the same node too
    // (the reply is switched inside the bridge, rewritten by bridged conntrack; a host without
    // br_netfilter masquerades it, and the callee sees the node's gateway).
    let web_ip = replica_ips(&s, "web")[0].clone();
    let bridged = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    let seen = fetch(&web, "http://api:8080/cgi-bin/ip");
    // busybox httpd writes an IPv4 caller as `[::ffff:a.b.c.d]`.
    let seen = String::from_utf8_lossy(&seen.stdout)
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .to_string();
    let want = if bridged { &web_ip } else { &gateway };
    assert_eq!(&seen, want, "bridged conntrack: {bridged}");
    // A replica reaching its own service's virtual IP (hairpin): with two replicas, eight
    // requests lead it back to itself at least once but for 1 time in 256; all answer.
    let api_replica = s.replicas("api")[0]["id"].as_str().unwrap().to_string();
    for i in 0..8 {
        let out = fetch(&api_replica, "http://api:8080/");
        assert!(
            out.status.success(),
            "api → its own virtual IP, try {i}: {out:?}"
        );
    }
    // An idle connection through the virtual IP is not timed out by Dash: the path is
    // conntrack's (established: 5 days by default), not a balancer with an idle timeout of
    // its own (Swarm's IPVS drops them after 900 s, moby#31208). A connection held open shows
    // its entry's time left, and still echoes after an idle pause. (The 20-minute pause
    // itself: bench/vip-idle.sh.)
    let held = std::thread::scope(|scope| {
        let client = scope
            .spawn(|| sh_in_web("(echo ping1; sleep 4; echo ping2; sleep 1) | nc -w 3 api 9000"));
        let entry = s.wait(
            "the held connection's entry",
            Duration::from_secs(10),
            || {
                let table = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap();
                table
                    .lines()
                    .find(|l| {
                        l.contains(" ESTABLISHED ")
                            && l.contains(&format!("dst={vip} "))
                            && l.contains("dport=9000 ")
                    })
                    .map(str::to_string)
            },
        );
        (client.join().unwrap(), entry)
    });
    let (echoed, entry) = held;
    assert_eq!(
        echoed.lines().collect::<Vec<_>>(),
        ["ping1", "ping2"],
        "{echoed}"
    );
    let left_s: u64 = entry.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(left_s > 20 * 60, "idle timeout of {left_s} s: {entry}");

    // A port the service lacks leads nowhere (not routed out).
    assert!(!fetch(&web, &format!("http://{vip}:9999/")).status.success());

    // 1,000 lookups at once from one replica (kubernetes#56903: a conntrack race made such
    // bursts lose answers): every one is answered with the virtual IP.
    let burst = sh_in_web(
        &"for i in $(seq 1000); do (nslookup api > /tmp/l.$i 2>&1 &); done; sleep 5; \
          ok=0; for i in $(seq 1000); do grep -q \"Address: $VIP\" /tmp/l.$i && ok=$((ok+1)); done; \
          rm -f /tmp/l.*; echo answered=$ok"
            .replace("$VIP", &vip),
    );
    assert!(burst.contains("answered=1000"), "{burst}");
    // And timed: 1,000 queries sent at once from 1,000 sockets in web's network namespace
    // (no process per lookup to blur the clock): every one answered, none after a second
    // (the conntrack race of kubernetes#56903 showed as 5 s stalls).
    let netns = s.run_dir.join("netns").join(&web);
    let slowest = burst_from(&netns, &gateway, 1000);
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest of 1,000 lookups took {slowest:?}"
    );

    // The networks, their services and rules.
    let table = s.ok(&["network", "ls"]);
    assert!(
        table.contains("backend") && table.contains("api,web") && table.contains("frontend"),
        "{table}"
    );
    let backend = s.json(&["network", "inspect", "backend"]);
    let services: Vec<&str> = backend["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(services, ["api", "web"], "{backend}");
    assert_eq!(backend["services"][0]["vip"], vip.as_str());
    let out = s.dash(&["network", "inspect", "nope"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{out:?}"
    );

    // A rolling update of api under a loop of requests from web through its name: replicas
    // leave the virtual IP before they stop, so no request fails.
    let failures = std::thread::scope(|scope| {
        let looping = scope.spawn(|| {
            sh_in_web(
                "i=0; f=0; while [ $i -lt 200 ]; do                      timeout 3 wget -q -O /dev/null http://api:8080/ || f=$((f+1));                      i=$((i+1)); sleep 0.05; done; echo failed=$f",
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        s.apply("api.toml", &api_toml("[env]\nV = \"2\"\n"));
        looping.join().unwrap()
    });
    assert!(failures.contains("failed=0"), "{failures}");
    s.wait("api updated", Duration::from_secs(60), || {
        dash_e2e::all_running_at(&s.replicas("api"), 2, 2).then_some(())
    });

    // Scaled: tasks.api follows within a second of the replicas running.
    s.ok(&["scale", "api", "3"]);
    s.wait_running("api", 3);
    let want = replica_ips(&s, "api");
    s.wait("tasks.api lists 3 replicas", Duration::from_secs(3), || {
        (addresses(&lookup(&s, &web, "tasks.api")) == want).then_some(())
    });
    s.remove_all_services();
    // The last service of each network gone: no network, no rule of theirs on the node.
    s.wait("no networks left", Duration::from_secs(5), || {
        let rules = std::process::Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout).to_string();
        let ours = rules.contains("network backend")
            || rules.contains("network frontend")
            || rules.contains(&format!("ip daddr {vip}"));
        (s.json(&["network", "ls"]) == serde_json::json!([]) && !ours).then_some(())
    });
    // Nor a conntrack entry of the virtual IP or of a replica's address (each replica's are
    // deleted when it is detached); the node's own gateway address is not a replica's.
    let prefix = s.subnet.trim_end_matches("0/24").to_string();
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap();
    let left: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .filter_map(|w| w.strip_prefix("src=").or_else(|| w.strip_prefix("dst=")))
                .any(|a| a == vip || (a.starts_with(&prefix) && a != gateway))
        })
        .collect();
    assert!(left.is_empty(), "conntrack entries left: {left:#?}");
}
