//! masters: what `bench/masters.sh` runs. Dash's replicated masters side by side with a
//! 3-member etcd (Debian's etcd-server 3.4) in one run, under the same writer:
//!
//! - **failover**: one writer sends a stream of distinct writes (Dash: a service apply with a
//!   new env value; etcd: a put of a new value), each acknowledged one logged; at a random
//!   moment (1–2 s into the trial) the leader is killed with SIGKILL; the figure is the time
//!   from the kill to the end of the first acknowledged write that *started* after it. Trials
//!   alternate between the two systems; the killed member is started again and caught up
//!   before the next trial. Afterwards every member of both is checked for every
//!   acknowledged write (the last value acknowledged for each key, or a later one).
//! - **write throughput**: acknowledged writes per second through 1 member and through 3, with
//!   1 client and with 16 (each client its own keys; with 3 members client i writes to member
//!   i mod 3: a follower forwards, as etcd's do).
//! - **idle memory**: each member's resident set size after the run, idle for 5 s.
//!
//! The writer is the same for both: HTTP/1.1 with keep-alive over TCP, a fresh connection
//! after any error, each attempt given ATTEMPT_TIMEOUT (default 1 s); a failed or refused
//! attempt moves to the next member. Dash's masters run in network namespaces on a test
//! bridge (the e2e harness, `--no-worker`), etcd on loopback: both are local sockets.
//!
//! Environment: TRIALS (default 20), SECONDS_PER_RUN (throughput, default 5), ATTEMPT_TIMEOUT
//! (ms, default 1000), ETCD_HEARTBEAT / ETCD_ELECTION (ms, default: etcd's own 100 / 1000);
//! for a look at one part while working on it (never for published figures): PARTS (any of
//! throughput,failover,memory; default all).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dash_e2e::cluster::Cluster;
use serde_json::{Value, json};

// ---- a small HTTP/1.1 client, the same for both systems ----------------------------------

struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.parse().expect("a socket address"),
            stream: None,
        }
    }

    /// One request on the kept-alive connection (opened when needed); any error drops it.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut exchange = || -> Result<(u16, Vec<u8>), String> {
            let e = |e: std::io::Error| e.to_string();
            if self.stream.is_none() {
                let s = TcpStream::connect_timeout(&self.addr, timeout).map_err(e)?;
                s.set_nodelay(true).map_err(e)?;
                self.stream = Some(BufReader::new(s));
            }
            let r = self.stream.as_mut().expect("just set");
            r.get_ref().set_read_timeout(Some(timeout)).map_err(e)?;
            r.get_ref().set_write_timeout(Some(timeout)).map_err(e)?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                body.len()
            );
            let mut msg = head.into_bytes();
            msg.extend_from_slice(body);
            r.get_mut().write_all(&msg).map_err(e)?;
            let mut line = String::new();
            r.read_line(&mut line).map_err(e)?;
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no status line: {line:?}"))?;
            let (mut length, mut chunked) = (None, false);
            loop {
                line.clear();
                r.read_line(&mut line).map_err(e)?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap_or((l, ""));
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                    chunked = true;
                }
            }
            let mut out = Vec::new();
            if chunked {
                loop {
                    line.clear();
                    r.read_line(&mut line).map_err(e)?;
                    let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(|_| format!("bad chunk size {line:?}"))?;
                    let mut chunk = vec![0; n + 2];
                    r.read_exact(&mut chunk).map_err(e)?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
            } else {
                let n = length.ok_or("a response without a length")?;
                out.resize(n, 0);
                r.read_exact(&mut out).map_err(e)?;
            }
            Ok((code, out))
        };
        let r = exchange();
        if r.is_err() {
            self.stream = None;
        }
        r
    }
}

// ---- the two systems ---------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dash,
    Etcd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Dash => "dash",
            Kind::Etcd => "etcd",
        }
    }
}

/// What a writer needs: the members' client addresses and how to write to them.
#[derive(Clone)]
struct Target {
    kind: Kind,
    addrs: Vec<String>,
    token: String,
}

impl Target {
    /// Writes `value` under `key` through member `i`.
    fn write(
        &self,
        conn: &mut Conn,
        key: &str,
        value: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let (path, headers, body) = match self.kind {
            Kind::Dash => (
                "/v1/services",
                format!("Authorization: Bearer {}\r\n", self.token),
                json!({
                    "file_name": format!("{key}.toml"),
                    "content": format!(
                        "name = \"{key}\"\nimage = \"bench:1\"\nreplicas = 0\n[env]\nSEQ = \"{value}\"\n"
                    ),
                }),
            ),
            Kind::Etcd => (
                "/v3/kv/put",
                String::new(),
                json!({"key": B64.encode(key), "value": B64.encode(value.to_string())}),
            ),
        };
        let (code, body) =
            conn.request("POST", path, &headers, body.to_string().as_bytes(), timeout)?;
        if code == 200 {
            Ok(())
        } else {
            Err(format!("{code}: {}", String::from_utf8_lossy(&body)))
        }
    }

    /// The value member `i` holds for `key` now (its local state: no read through the leader).
    fn read_local(&self, i: usize, key: &str) -> Option<u64> {
        let mut conn = Conn::new(&self.addrs[i]);
        let t = Duration::from_secs(2);
        match self.kind {
            Kind::Dash => {
                let auth = format!("Authorization: Bearer {}\r\n", self.token);
                let (code, body) = conn
                    .request("GET", &format!("/v1/services/{key}"), &auth, b"", t)
                    .ok()?;
                if code != 200 {
                    return None;
                }
                let v: Value = serde_json::from_slice(&body).ok()?;
                v["spec"]["env"]["SEQ"].as_str()?.parse().ok()
            }
            Kind::Etcd => {
                let req = json!({"key": B64.encode(key), "serializable": true});
                let (_, body) = conn
                    .request("POST", "/v3/kv/range", "", req.to_string().as_bytes(), t)
                    .ok()?;
                let v: Value = serde_json::from_slice(&body).ok()?;
                let raw = B64.decode(v["kvs"][0]["value"].as_str()?).ok()?;
                String::from_utf8(raw).ok()?.parse().ok()
            }
        }
    }
}

// ---- etcd, started and ended by us -------------------------------------------------------

struct Etcd {
    dir: tempfile::TempDir,
    procs: Vec<Option<Child>>,
    args: Vec<Vec<String>>,
    clients: Vec<String>,
}

impl Etcd {
    /// `n` members on loopback, client ports from `client_port`, peer ports 10 above.
    fn start(n: usize, client_port: u16) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let peer = |i: usize| format!("http://127.0.0.1:{}", client_port + 10 + i as u16);
        let clients: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", client_port + i as u16))
            .collect();
        for a in &clients {
            assert!(
                TcpStream::connect(a).is_err(),
                "{a} is in use: another etcd or bench running?"
            );
        }
        let initial = (0..n)
            .map(|i| format!("e{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut timers = Vec::new();
        for (var, flag) in [
            ("ETCD_HEARTBEAT", "--heartbeat-interval"),
            ("ETCD_ELECTION", "--election-timeout"),
        ] {
            if let Ok(v) = std::env::var(var) {
                timers.extend([flag.to_string(), v]);
            }
        }
        let args: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let url = format!("http://{}", clients[i]);
                [
                    "--name".to_string(),
                    format!("e{i}"),
                    "--data-dir".into(),
                    dir.path().join(format!("e{i}")).display().to_string(),
                    "--listen-client-urls".into(),
                    url.clone(),
                    "--advertise-client-urls".into(),
                    url,
                    "--listen-peer-urls".into(),
                    peer(i),
                    "--initial-advertise-peer-urls".into(),
                    peer(i),
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--initial-cluster-token".into(),
                    format!("dash-bench-{client_port}"),
                ]
                .into_iter()
                .chain(timers.iter().cloned())
                .collect()
            })
            .collect();
        let mut e = Etcd {
            dir,
            procs: (0..n).map(|_| None).collect(),
            args,
            clients,
        };
        for i in 0..n {
            e.spawn(i);
        }
        e.wait_healthy(n);
        e
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("e{i}.log")))
            .unwrap();
        let child = Command::new("etcd")
            .args(&self.args[i])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd (apt-get install etcd-server)");
        self.procs[i] = Some(child);
    }

    fn status(&self, i: usize) -> Option<Value> {
        let mut conn = Conn::new(&self.clients[i]);
        let (code, body) = conn
            .request(
                "POST",
                "/v3/maintenance/status",
                "",
                b"{}",
                Duration::from_millis(500),
            )
            .ok()?;
        (code == 200).then(|| serde_json::from_slice(&body).ok())?
    }

    /// The index of the member that leads, as every live member sees it.
    fn leader(&self) -> Option<usize> {
        let st: Vec<Option<Value>> = (0..self.clients.len()).map(|i| self.status(i)).collect();
        let leader = st.iter().flatten().next()?["leader"].as_str()?.to_string();
        st.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s["header"]["member_id"] == leader.as_str())
        })
    }

    /// Every member answers, agrees on a leader and has applied what it committed.
    fn wait_healthy(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st: Vec<Value> = (0..n).filter_map(|i| self.status(i)).collect();
            let leaders: std::collections::BTreeSet<String> = st
                .iter()
                .filter_map(|s| s["leader"].as_str().map(String::from))
                .collect();
            let indexes: std::collections::BTreeSet<String> = st
                .iter()
                .filter_map(|s| s["raftIndex"].as_str().map(String::from))
                .collect();
            if st.len() == n && leaders.len() == 1 && !leaders.contains("0") && indexes.len() == 1 {
                return;
            }
            assert!(Instant::now() < deadline, "etcd not healthy in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self, i: usize) -> u32 {
        self.procs[i].as_ref().map(Child::id).unwrap_or(0)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            if let Some(mut c) = self.procs[i].take() {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let _ = c.wait();
            }
        }
    }
}

// ---- a cluster of either kind --------------------------------------------------------------

enum Members {
    Dash(Cluster),
    Etcd(Etcd),
}

impl Members {
    fn target(&self) -> Target {
        match self {
            Members::Dash(c) => Target {
                kind: Kind::Dash,
                addrs: c.nodes.iter().map(|n| format!("{}:7070", n.ip)).collect(),
                token: std::fs::read_to_string(c.nodes[0].data_dir.join("admin.token"))
                    .unwrap()
                    .trim()
                    .to_string(),
            },
            Members::Etcd(e) => Target {
                kind: Kind::Etcd,
                addrs: e.clients.clone(),
                token: String::new(),
            },
        }
    }

    fn leader(&self) -> Option<usize> {
        match self {
            Members::Dash(c) => c.leader(),
            Members::Etcd(e) => e.leader(),
        }
    }

    fn kill(&mut self, i: usize) {
        match self {
            Members::Dash(c) => c.nodes[i].kill_node(),
            Members::Etcd(e) => e.kill(i),
        }
    }

    fn restart(&mut self, i: usize) {
        match self {
            Members::Dash(c) => c.nodes[i].restart(),
            Members::Etcd(e) => e.spawn(i),
        }
    }

    /// Every member back, one leader, the restarted one caught up.
    fn wait_healthy(&self) {
        match self {
            Members::Dash(c) => c.wait("3 masters caught up", Duration::from_secs(60), || {
                let s = c.cluster_status()?;
                let ms = s["masters"].as_array()?;
                let ok = ms.len() == c.nodes.len()
                    && ms.iter().all(|m| {
                        (m["role"] == "leader" || m["role"] == "follower")
                            && m["lag"].as_u64() == Some(0)
                    });
                ok.then_some(())
            }),
            Members::Etcd(e) => e.wait_healthy(e.clients.len()),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Members::Dash(c) => c.nodes.iter().filter_map(|n| n.pid()).collect(),
            Members::Etcd(e) => (0..e.clients.len()).map(|i| e.pid(i)).collect(),
        }
    }
}

/// (VmRSS, RssAnon, RssFile) of `pid` in MB.
fn rss_mb(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// Each system's members' (VmRSS, RssAnon, RssFile).
type Memory = Vec<(Kind, Vec<(f64, f64, f64)>)>;

fn memory(systems: &[Members]) -> Memory {
    systems
        .iter()
        .map(|s| (s.target().kind, s.pids().into_iter().map(rss_mb).collect()))
        .collect()
}

// ---- the writer ------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Attempt {
    start: Instant,
    end: Instant,
    ok: bool,
}

/// Acknowledged writes: (key, value).
type Acked = Vec<(String, u64)>;

/// One client: writes `prefix-k` (k in 0..keys, in turn) with increasing values, starting at
/// member `first` and moving to the next after any failure, until `stop`.
fn writer(
    target: Target,
    first: usize,
    prefix: String,
    keys: u64,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
) -> (Acked, usize) {
    let mut conns: Vec<Conn> = target.addrs.iter().map(|a| Conn::new(a)).collect();
    let (mut at, mut seq, mut acked, mut failed) = (first, 0u64, Vec::new(), 0usize);
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("{prefix}-{}", seq % keys);
        let start = Instant::now();
        let r = target.write(&mut conns[at], &key, seq, timeout);
        let end = Instant::now();
        log.lock().unwrap().push(Attempt {
            start,
            end,
            ok: r.is_ok(),
        });
        match r {
            Ok(()) => acked.push((key, seq)),
            Err(_) => {
                failed += 1;
                at = (at + 1) % conns.len();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    (acked, failed)
}

/// Every member holds, for each key, the last acknowledged value or a later one (waiting up to
/// 10 s for followers to apply). Returns how many (member, key) pairs miss it.
fn lost(target: &Target, members: &[usize], acked: &Acked) -> usize {
    let mut last = std::collections::BTreeMap::new();
    for (k, v) in acked {
        last.insert(k.clone(), *v);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = members
            .iter()
            .flat_map(|&i| last.iter().map(move |(k, v)| (i, k, *v)))
            .filter(|(i, k, v)| target.read_local(*i, k).is_none_or(|got| got < *v))
            .count();
        if missing == 0 || Instant::now() > deadline {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One failover trial: the failover time in ms, and acknowledged writes lost (0 expected).
fn trial(m: &mut Members, rng: &mut Rng, timeout: Duration, round: usize) -> (f64, usize) {
    let target = m.target();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let w = {
        let (t, s, l) = (target.clone(), stop.clone(), log.clone());
        let prefix = format!("fo{round}");
        std::thread::spawn(move || writer(t, 0, prefix, 8, timeout, s, l))
    };
    std::thread::sleep(Duration::from_millis(1000 + rng.next() % 1000));
    let leader = m.leader().expect("a leader before the kill");
    let kill = Instant::now();
    m.kill(leader);
    let deadline = kill + Duration::from_secs(60);
    let ms = loop {
        let first = log
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.ok && a.start >= kill)
            .map(|a| a.end.duration_since(kill));
        if let Some(d) = first {
            break d.as_secs_f64() * 1000.0;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged 60 s after the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (acked, _) = w.join().unwrap();
    let alive: Vec<usize> = (0..target.addrs.len()).filter(|&i| i != leader).collect();
    let lost_now = lost(&target, &alive, &acked);
    m.restart(leader);
    m.wait_healthy();
    // The restarted member too has every acknowledged write.
    let lost_all = lost(
        &target,
        &(0..target.addrs.len()).collect::<Vec<_>>(),
        &acked,
    );
    (ms, lost_now.max(lost_all))
}

/// Acknowledged writes per second with `clients` clients for `secs` seconds.
fn throughput(
    m: &Members,
    clients: usize,
    secs: u64,
    timeout: Duration,
    tag: &str,
) -> (f64, usize) {
    let target = m.target();
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let ws: Vec<_> = (0..clients)
        .map(|c| {
            let (t, s, l) = (target.clone(), stop.clone(), log.clone());
            let first = c % t.addrs.len();
            let prefix = format!("{tag}c{c}");
            std::thread::spawn(move || writer(t, first, prefix, 4, timeout, s, l))
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let (mut n, mut failed) = (0, 0);
    for w in ws {
        let (a, f) = w.join().unwrap();
        n += a.len();
        failed += f;
    }
    (n as f64 / elapsed, failed)
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], mid, v[v.len() - 1])
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn etcd_version() -> String {
    Command::new("etcd")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn main() {
    let trials: usize = env("TRIALS", 20);
    let secs: u64 = env("SECONDS_PER_RUN", 5);
    let timeout = Duration::from_millis(env("ATTEMPT_TIMEOUT", 1000));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    println!(
        "peer: {} (timers: heartbeat {} ms, election {} ms)",
        etcd_version(),
        std::env::var("ETCD_HEARTBEAT").unwrap_or_else(|_| "100 (default)".into()),
        std::env::var("ETCD_ELECTION").unwrap_or_else(|_| "1000 (default)".into()),
    );
    println!(
        "writer: one attempt ≤ {} ms, then the next member; kill at 1–2 s into a trial (seed {seed})",
        timeout.as_millis()
    );

    // Three members of each, up side by side.
    let mut systems = [
        Members::Dash(Cluster::start_ha(56, 3, 0)),
        Members::Etcd(Etcd::start(3, 23791)),
    ];

    // Idle memory of the fresh 3-member clusters (started, joined, 5 s idle).
    std::thread::sleep(Duration::from_secs(5));
    let fresh = memory(&systems);

    let parts = std::env::var("PARTS").unwrap_or_else(|_| "throughput,failover,memory".into());
    let part = |p: &str| parts.split(',').any(|x| x == p);
    if parts != "throughput,failover,memory" {
        println!("parts: {parts} only (not for publishing)");
    }

    // Throughput through 3 members, 1 and 16 clients: (kind, members, clients, rate, failed).
    let mut tput: Vec<(Kind, usize, usize, f64, usize)> = Vec::new();
    let mut measure = |systems: &[Members], members: usize| {
        for clients in [1, 16] {
            for s in systems {
                let kind = s.target().kind;
                let tag = format!("t{members}x{clients}");
                let (r, failed) = throughput(s, clients, secs, timeout, &tag);
                eprintln!(
                    "{} {members} member(s), {clients} clients: {r:.0}/s",
                    kind.name()
                );
                tput.push((kind, members, clients, r, failed));
            }
        }
    };
    if part("throughput") {
        measure(&systems, 3);
    }

    // Failover, alternating.
    let mut fo: [(Vec<f64>, usize); 2] = [(Vec::new(), 0), (Vec::new(), 0)];
    for t in (0..trials).filter(|_| part("failover")) {
        for (k, s) in systems.iter_mut().enumerate() {
            let (ms, lost) = trial(s, &mut rng, timeout, t);
            eprintln!(
                "{} trial {}: {ms:.0} ms, {lost} lost",
                s.target().kind.name(),
                t + 1
            );
            fo[k].0.push(ms);
            fo[k].1 += lost;
        }
    }

    // Idle memory after the writes: 35 s idle (Dash closes idle SQLite connections after
    // 30 s and hands freed heap back every 30 s).
    let after = if part("memory") {
        std::thread::sleep(Duration::from_secs(35));
        memory(&systems)
    } else {
        Vec::new()
    };
    drop(systems);

    // Throughput through one member.
    if part("throughput") {
        let singles = [
            Members::Dash(Cluster::start_ha(57, 1, 0)),
            Members::Etcd(Etcd::start(1, 23795)),
        ];
        measure(&singles, 1);
    }

    println!();
    println!(
        "failover: SIGKILL of the leader → first acknowledged write started after it ({trials} trials each, alternating)"
    );
    let (dmin, dmed, dmax) = stats(&fo[0].0);
    let (emin, emed, emax) = stats(&fo[1].0);
    println!(
        "  dash  min {dmin:.0} ms  median {dmed:.0} ms  max {dmax:.0} ms  acknowledged writes lost: {}",
        fo[0].1
    );
    println!(
        "  etcd  min {emin:.0} ms  median {emed:.0} ms  max {emax:.0} ms  acknowledged writes lost: {}",
        fo[1].1
    );
    println!("  etcd ÷ dash (medians): {:.2}", emed / dmed);
    for (name, (v, _)) in ["dash", "etcd"].iter().zip(&fo) {
        let ms: Vec<String> = v.iter().map(|v| format!("{v:.0}")).collect();
        println!("  {name} trials (ms): {}", ms.join(" "));
    }
    println!();
    println!(
        "write throughput: acknowledged writes/s over {secs} s (dash: service apply; etcd: put)"
    );
    for members in [1, 3] {
        for clients in [1, 16] {
            let get = |k: Kind| {
                tput.iter()
                    .find(|t| t.0 == k && t.1 == members && t.2 == clients)
                    .map(|t| (t.3, t.4))
                    .unwrap_or((0.0, 0))
            };
            let (d, df) = get(Kind::Dash);
            let (e, ef) = get(Kind::Etcd);
            println!(
                "  {members} member(s), {clients:>2} client(s): dash {d:>7.0}/s  etcd {e:>7.0}/s  dash ÷ etcd {:.2}  (failed attempts: dash {df}, etcd {ef})",
                d / e
            );
        }
    }
    println!();
    println!(
        "idle memory per member of the 3-member clusters: VmRSS (anonymous + file-backed: the binary's pages), MB"
    );
    for (when, m) in [
        ("fresh (started, 5 s idle)", &fresh),
        ("after the writes, 35 s idle", &after),
    ] {
        println!("  {when}");
        for (kind, v) in m {
            println!(
                "    {}  {}",
                kind.name(),
                v.iter()
                    .map(|(rss, anon, file)| format!("{rss:.1} ({anon:.1} + {file:.1})"))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
}
