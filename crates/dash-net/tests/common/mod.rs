//! Fixture for the sysnet integration tests: real netns, veth, bridge and nft, cleaned up by a
//! guard even when a test fails.
//!
//! Every test gets its own bridge `dnt<N>`, table `dnt<N>`, subnet `10.201.<N>.0/24`, published
//! ports `270<N><k>` and netns dir, so the tests of this binary run in parallel (and beside other
//! Dash test suites: nft tables of two Dash networks on one host share the host's ports). Traffic only goes to loopback and to the
//! namespaces the tests create.
#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dash_net::{NetConfig, host_veth_name};

/// Fails (naming the missing thing) unless the test can do real networking here.
pub fn require_prerequisites() {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        uid, 0,
        "sysnet tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    );
    for tool in ["nft", "busybox", "nsenter", "ip", "timeout"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "sysnet tests need `{tool}` on PATH");
    }
}

/// Keeps net.ipv4.ip_forward as found: the first fixture alive records it, the last one to go
/// writes it back, so parallel tests never pull it from under each other. It stays 1 if another
/// Dash network (a `dash*` nft table: a daemon or an e2e run) is live on the host then.
struct ForwardGuard;

static FORWARD: Mutex<(usize, Option<String>)> = Mutex::new((0, None));
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl ForwardGuard {
    fn acquire() -> ForwardGuard {
        let mut state = FORWARD.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            state.1 = Some(
                std::fs::read_to_string(IP_FORWARD)
                    .unwrap()
                    .trim()
                    .to_string(),
            );
        }
        state.0 += 1;
        ForwardGuard
    }
}

impl Drop for ForwardGuard {
    fn drop(&mut self) {
        let mut state = FORWARD.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0
            && let Some(original) = state.1.take()
        {
            let tables = Command::new("nft").args(["list", "tables"]).output();
            let other_dash = tables.is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.starts_with("table ip dash"))
            });
            if original != "1" && other_dash {
                eprintln!("leaving ip_forward=1: another Dash network is live");
            } else {
                let _ = std::fs::write(IP_FORWARD, original);
            }
        }
    }
}

pub struct Fixture {
    pub cfg: NetConfig,
    pub dir: tempfile::TempDir,
    replicas: Vec<String>,
    listeners: Vec<Child>,
    udp_stop: Vec<std::sync::mpsc::Sender<()>>,
    outside: Option<Outside>,
    _forward: ForwardGuard,
}

/// A netns standing for another machine, on its own link to the host (not the bridge).
pub struct Outside {
    pub netns: PathBuf,
    pub host_link: String,
    /// The host's address on that link.
    pub host_ip: Ipv4Addr,
    /// The other machine's address.
    pub ip: Ipv4Addr,
}

impl Fixture {
    /// Names and addresses for test number `n` (unique per test in this binary).
    pub fn new(n: u8) -> Fixture {
        require_prerequisites();
        let dir = tempfile::tempdir().unwrap();
        let cfg = NetConfig {
            bridge: format!("dnt{n}"),
            subnet: format!("10.201.{n}.0/24").parse().unwrap(),
            nft_table: format!("dnt{n}"),
            netns_dir: dir.path().join("netns"),
        };
        let forward = ForwardGuard::acquire();
        let fx = Fixture {
            cfg,
            dir,
            replicas: Vec::new(),
            listeners: Vec::new(),
            udp_stop: Vec::new(),
            outside: None,
            _forward: forward,
        };
        // A previous run that was killed may have left things behind.
        fx.cleanup();
        fx
    }

    /// Address `10.201.<n>.<host>`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        let o = self.cfg.subnet.addr().octets();
        Ipv4Addr::new(o[0], o[1], o[2], host)
    }

    /// Remembers a replica so the guard can clean its veth up.
    pub fn replica(&mut self, name: &str) -> String {
        self.replicas.push(name.to_string());
        name.to_string()
    }

    /// Runs `busybox httpd` on port 8080 inside `netns`, serving `body` at `/`.
    pub fn start_httpd(&mut self, netns: &Path, body: &str) {
        let www = self.www();
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), body).unwrap();
        self.spawn_httpd(netns, &www);
    }

    /// A directory for the next listener's files (not made yet).
    fn www(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("www-{}", self.listeners.len()))
    }

    /// Runs `busybox httpd` on port 8080 inside `netns`, serving `www`.
    fn spawn_httpd(&mut self, netns: &Path, www: &Path) {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(www)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.listeners.push(child);
    }

    /// Runs a UDP echo server on port 9000 inside `netns`, on a thread that enters it.
    pub fn start_udp_echo(&mut self, netns: &Path) {
        self.start_udp_echo_tagged(netns, "");
    }

    /// [`Fixture::start_udp_echo`] that answers `tag` followed by what it got.
    pub fn start_udp_echo_tagged(&mut self, netns: &Path, tag: &str) {
        let tag = tag.as_bytes().to_vec();
        let file = std::fs::File::open(netns).unwrap();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // This thread's netns changes for good; it ends when the fixture goes.
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let sock = UdpSocket::bind("0.0.0.0:9000").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while stop_rx.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&[&tag[..], &buf[..n]].concat(), from);
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        self.udp_stop.push(stop_tx);
    }

    /// Creates the "other machine": netns `<dir>/outside` with `10.211.<n>.2/24` on eth0, linked
    /// to the host's `<bridge>o` (`10.211.<n>.1/24`), default route via the host. Made with the
    /// `ip` and `unshare` tools, not the library under test.
    pub fn make_outside(&mut self) -> &Outside {
        let n = self.cfg.subnet.addr().octets()[2];
        let netns = self.dir.path().join("outside");
        std::fs::write(&netns, "").unwrap();
        let outside = Outside {
            netns,
            host_link: format!("{}o", self.cfg.bridge),
            host_ip: Ipv4Addr::new(10, 211, n, 1),
            ip: Ipv4Addr::new(10, 211, n, 2),
        };
        let ns = format!("--net={}", outside.netns.display());
        let ns_path = outside.netns.display().to_string();
        let host_cidr = format!("{}/24", outside.host_ip);
        let cidr = format!("{}/24", outside.ip);
        let host_ip = outside.host_ip.to_string();
        let link = outside.host_link.clone();
        self.outside = Some(outside);
        run(&["unshare", &ns, "true"]);
        run(&[
            "ip", "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &ns_path,
        ]);
        run(&["ip", "addr", "add", &host_cidr, "dev", &link]);
        run(&["ip", "link", "set", &link, "up"]);
        run(&["nsenter", &ns, "ip", "link", "set", "lo", "up"]);
        run(&["nsenter", &ns, "ip", "addr", "add", &cidr, "dev", "eth0"]);
        run(&["nsenter", &ns, "ip", "link", "set", "eth0", "up"]);
        run(&[
            "nsenter", &ns, "ip", "route", "add", "default", "via", &host_ip,
        ]);
        self.outside.as_ref().unwrap()
    }

    /// Removes the "other machine".
    pub fn remove_outside(&mut self) {
        if let Some(outside) = self.outside.take() {
            quiet(&["ip", "link", "del", &outside.host_link]);
            let _ = nix::mount::umount2(&outside.netns, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&outside.netns);
        }
    }

    /// Runs `busybox httpd` on port 8080 inside `netns` with a CGI `/cgi-bin/ip` that answers
    /// the client's address as the server sees it, and `whoami` at `/`.
    pub fn start_whoami(&mut self, netns: &Path) {
        let www = self.www();
        std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
        std::fs::write(www.join("index.html"), "whoami").unwrap();
        let script = www.join("cgi-bin/ip");
        // httpd listens on IPv6 and writes IPv4 clients as [::ffff:a.b.c.d].
        let body = "#!/bin/sh\na=${REMOTE_ADDR#[::ffff:}\necho 'Content-Type: text/plain'\necho\necho \"${a%]}\"\n";
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        self.spawn_httpd(netns, &www);
    }

    /// Stops every listener: a process left in a netns keeps it (and its veth) alive.
    pub fn stop_listeners(&mut self) {
        for mut child in self.listeners.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for stop in self.udp_stop.drain(..) {
            let _ = stop.send(());
        }
        // The UDP threads notice within their 100 ms read timeout.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Removes whatever the tests may have left, without the library (it may be what failed).
    fn cleanup(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.cfg.netns_dir) {
            for entry in entries.flatten() {
                let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for replica in &self.replicas {
            quiet(&["ip", "link", "del", &host_veth_name(replica)]);
        }
        quiet(&["ip", "link", "del", &format!("{}o", self.cfg.bridge)]);
        quiet(&["nft", "delete", "table", "ip", &self.cfg.nft_table]);
        quiet(&["ip", "link", "del", &self.cfg.bridge]);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop_listeners();
        self.remove_outside();
        self.cleanup();
    }
}

fn quiet(argv: &[&str]) {
    let _ = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `GET /` over HTTP/1.0; the response body.
pub fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response))
}

/// Polls `GET /` on `addr` until it answers `want` or the deadline passes.
pub fn wait_http(addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_get(addr) {
            Ok(body) if body.trim() == want => return,
            Ok(body) => last = format!("answered {body:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("GET http://{addr}/ never answered {want:?}: {last}");
}

/// `GET url` from inside `netns` (busybox wget; no -T: it segfaults in busybox 1.35).
pub fn ns_wget(netns: &Path, url: &str) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["5", "nsenter"])
        .arg(format!("--net={}", netns.display()))
        .args(["busybox", "wget", "-q", "-O", "-", url])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes `n` requests with `get`, each a new connection; every one must answer. Counts the answers.
pub fn tally(n: usize, mut get: impl FnMut() -> Result<String, String>) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let body =
            get().unwrap_or_else(|e| panic!("request {i} of {n} failed: {e} (so far {seen:?})"));
        *seen.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

/// The rules of the chain of published ports: `nft list chain ip <table> published`.
pub fn published_rules(fx: &Fixture) -> String {
    run(&["nft", "list", "chain", "ip", &fx.cfg.nft_table, "published"])
}

/// Sends `msg` to `addr` over UDP and returns the echo.
pub fn udp_echo(addr: SocketAddr, msg: &str) -> std::io::Result<String> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 1500];
    let mut last = None;
    for _ in 0..6 {
        sock.send_to(msg.as_bytes(), addr)?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

/// One UDP socket inside a netns (on a thread that entered it), kept across messages: every
/// message it sends is the same flow (addresses and ports) for conntrack.
pub struct NsUdpClient {
    ask: std::sync::mpsc::Sender<(SocketAddr, String)>,
    answer: std::sync::mpsc::Receiver<std::io::Result<String>>,
}

impl NsUdpClient {
    pub fn new(netns: &Path) -> NsUdpClient {
        let file = std::fs::File::open(netns).unwrap();
        let (ask, asks) = std::sync::mpsc::channel::<(SocketAddr, String)>();
        let (answers, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // This thread's netns changes for good; it ends when the client goes.
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 1500];
            while let Ok((addr, msg)) = asks.recv() {
                let got = sock
                    .send_to(msg.as_bytes(), addr)
                    .and_then(|_| sock.recv_from(&mut buf))
                    .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned());
                if answers.send(got).is_err() {
                    return;
                }
            }
        });
        NsUdpClient { ask, answer }
    }

    /// Sends `msg` to `addr` from the client's one socket and returns the answer.
    pub fn ask(&self, addr: SocketAddr, msg: &str) -> std::io::Result<String> {
        self.ask.send((addr, msg.to_string())).unwrap();
        self.answer.recv().unwrap()
    }
}

/// The lines of this netns's conntrack table that name `ip` as an address.
pub fn conntrack_entries(ip: Ipv4Addr) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default();
    let (src, dst) = (format!("src={ip} "), format!("dst={ip} "));
    table
        .lines()
        .filter(|l| l.contains(&src) || l.contains(&dst))
        .map(str::to_string)
        .collect()
}

/// What of the host's state a test may change.
#[derive(Debug, PartialEq)]
pub struct HostState {
    pub links: BTreeSet<String>,
    pub tables: BTreeSet<String>,
    /// Rulesets (stateless: no counters) of the tables that are not Dash's (`dnt*` here, `dash*` of other Dash tests and
    /// daemons that may run at the same time and change theirs), by table.
    pub other_rulesets: BTreeMap<String, String>,
    pub mounts: Vec<String>,
}

impl HostState {
    pub fn snapshot() -> HostState {
        let links = run(&["ip", "-br", "link"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect();
        let tables: BTreeSet<String> = run(&["nft", "list", "tables"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let other_rulesets = tables
            .iter()
            // Tests' own tables, in any family (isolation adds `bridge` ones), come and go as
            // tests run in parallel: listing one that another test just deleted fails.
            .filter(|t| {
                let name = t.split_whitespace().nth(2).unwrap_or_default();
                !name.starts_with("dnt") && !name.starts_with("dash")
            })
            .map(|t| {
                let words: Vec<&str> = t.split_whitespace().collect();
                // -s: without counters, which our traffic through their hooks moves.
                let rules = run(&["nft", "-s", "list", "table", words[1], words[2]]);
                (t.clone(), rules)
            })
            .collect();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        HostState {
            links,
            tables,
            other_rulesets,
            mounts,
        }
    }
}

/// Polls until nothing of the fixture's network is left on the host, then compares with
/// `before` (taken before init). Host veths vanish asynchronously after a netns is unpinned.
pub fn assert_nothing_left(fx: &Fixture, before: &HostState, veths: &[String]) {
    let ours = |name: &String| name == &fx.cfg.bridge || veths.contains(name);
    let table = format!("table ip {}", fx.cfg.nft_table);
    let bridge_table = format!("table bridge {}", fx.cfg.nft_table);
    let netns_dir = fx.cfg.netns_dir.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = HostState::snapshot();
        let left_links: Vec<&String> = now.links.iter().filter(|l| ours(l)).collect();
        let left_table = now.tables.contains(&table) || now.tables.contains(&bridge_table);
        let left_mounts: Vec<&String> = now
            .mounts
            .iter()
            .filter(|m| m.contains(&netns_dir))
            .collect();
        let left_files: Vec<PathBuf> = std::fs::read_dir(&fx.cfg.netns_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if left_links.is_empty() && !left_table && left_mounts.is_empty() && left_files.is_empty() {
            // Nothing new of ours, nothing of ours that was there before, and the tables that
            // were there before and still are (other software's) are unchanged.
            for l in &before.links {
                assert!(!ours(l), "{l} existed before the test: pick other names");
            }
            for (t, rules) in &before.other_rulesets {
                if let Some(after) = now.other_rulesets.get(t) {
                    assert_eq!(rules, after, "{t} changed");
                }
            }
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "left behind: links {left_links:?}, table {left_table}, mounts {left_mounts:?}, files {left_files:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
