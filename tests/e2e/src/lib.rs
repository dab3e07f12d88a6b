//! dash-e2e: the end-to-end harness. Starts the real `dash` binary with its own data dir,
//! admin port, bridge, subnet, nftables table and run dir per test (cargo runs tests in
//! parallel), drives it through the CLI like a user, and on drop removes everything the test
//! made: services (and so containers, cgroups, mounts, netns, veths, rules), the daemon, the
//! bridge, the table and the directories. Wait by polling against a deadline, never a sleep.

// A test harness: a step that fails is a failed test, so panicking on it is the point.
#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod oidc;
pub mod registry;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Fails (in CI) or explains (locally) a missing prerequisite; never skips silently.
pub fn require(what: &str, ok: bool) {
    assert!(
        ok,
        "prerequisite missing: {what} (the README's install step provides it)"
    );
}

/// `target/debug` (or release) of this build: where `dash` and `dash-monitor` are
/// (`DASH_BIN_DIR` overrides it: the benchmarks run release binaries).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DASH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn dash_bin() -> PathBuf {
    let p = bin_dir().join("dash");
    require(
        &format!("{} (run `cargo build --workspace` first)", p.display()),
        p.exists(),
    );
    require(
        "dash-monitor next to dash",
        bin_dir().join("dash-monitor").exists(),
    );
    p
}

/// A root filesystem tarball of busybox-static with an httpd page at /www/index.html and a
/// CGI script at /www/cgi-bin/ip that answers the caller's address.
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    busybox_rootfs_tar_with(dir, &[])
}

/// [`busybox_rootfs_tar`] plus host binaries in /bin, each with the shared libraries `ldd`
/// says it needs, at the same paths as on the host.
pub fn busybox_rootfs_tar_with(dir: &Path, binaries: &[&Path]) -> PathBuf {
    require(
        "/bin/busybox (Debian busybox-static)",
        Path::new("/bin/busybox").exists(),
    );
    let root = dir.join("rootfs");
    for d in ["bin", "www", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("www/index.html"), "<h1>hello from dash</h1>\n").unwrap();
    // GET /cgi-bin/ip answers the caller's address as the server saw it (busybox httpd's CGI).
    std::fs::create_dir_all(root.join("www/cgi-bin")).unwrap();
    let cgi = root.join("www/cgi-bin/ip");
    std::fs::write(
        &cgi,
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &cgi,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    for bin in binaries {
        let name = bin.file_name().unwrap();
        std::fs::copy(bin, root.join("bin").join(name)).unwrap();
        for lib in shared_libraries(bin) {
            let to = root.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &to).unwrap();
        }
    }
    let tar = dir.join("busybox-rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar failed");
    tar
}

/// The absolute paths of the shared libraries (and loader) `ldd` lists for `bin`.
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    assert!(out.status.success(), "ldd {}: {out:?}", bin.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// One `dash server` of a test. `slot` (1..=99) keeps its names, ports and subnet apart.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub addr: String,
    /// The built-in proxy's address.
    pub proxy_addr: String,
    pub bridge: String,
    pub table: String,
    pub subnet: String,
    pub slot: u8,
    /// More `dash server` flags (`start_with`).
    extra: Vec<String>,
    child: Option<Child>,
}

impl Server {
    pub fn start(slot: u8) -> Server {
        Server::start_with(slot, &[])
    }

    /// [`Server::start`] with busybox imported as `bb:1`, the image most tests run.
    pub fn start_with_busybox(slot: u8) -> Server {
        let s = Server::start(slot);
        s.import_busybox("bb:1");
        s
    }

    /// Like [`Server::start`], with more `dash server` flags.
    pub fn start_with(slot: u8, extra: &[&str]) -> Server {
        require(
            "root (containers, netns and nftables need it)",
            unsafe_free_is_root(),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server {
            data_dir: dir.path().join("data"),
            run_dir: PathBuf::from(format!("/run/dash-e2e-{slot}")),
            addr: format!("127.0.0.1:{}", 17300 + u16::from(slot)),
            proxy_addr: format!("127.0.0.1:{}", 17500 + u16::from(slot)),
            bridge: format!("dashe2e{slot}"),
            table: format!("dash_e2e_{slot}"),
            subnet: format!("10.97.{slot}.0/24"),
            slot,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(dash_bin())
            .args(["server", "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--listen",
                &self.addr,
                "--bridge",
                &self.bridge,
                "--subnet",
                &self.subnet,
                "--nft-table",
                &self.table,
            ])
            .arg("--run-dir")
            .arg(&self.run_dir)
            // Its own cgroup parent: a shared one races with another server's removal of
            // empty parents.
            .args(["--cgroup-parent", &format!("dash-e2e-{}", self.slot)])
            .args(["--proxy-listen", &self.proxy_addr])
            .args([
                "--node-name",
                &format!("e2e{}", self.slot),
                "--log-level",
                "info,dash_worker=debug",
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(&self.addr, "/healthz").is_ok_and(|(code, _)| code == 200) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("dash server exited with {st}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "dash server did not answer /healthz in 20 s; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9 of the daemon (only the daemon: its containers keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM to the daemon, as `systemctl stop` sends; whether it exited within `within`
    /// (if not, it is killed). Started again by [`Server::restart`] or on drop.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Stopped (kill -9 of the daemon only) and started again with other extra flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill9();
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `dash ARGS` against this server, not run yet.
    fn dash_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(dash_bin());
        cmd.args(args)
            .env("DASH_ADDR", &self.addr)
            .env("DASH_DATA_DIR", &self.data_dir)
            .env_remove("DASH_TOKEN");
        cmd
    }

    /// Runs `dash ARGS` against this server.
    pub fn dash(&self, args: &[&str]) -> Output {
        self.dash_command(args).output().unwrap()
    }

    /// [`Server::dash`] with `input` on its standard input.
    pub fn dash_input(&self, args: &[&str], input: &str) -> Output {
        output_with_input(&mut self.dash_command(args), input)
    }

    /// `dash ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, &self.dash(args), |out| {
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    }

    /// `dash ARGS`, which must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        stderr_of_failure(args, &self.dash(args))
    }

    /// `dash ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Replicas of a service (all, including those being removed).
    pub fn replicas(&self, service: &str) -> Vec<Value> {
        match self.json(&["ps", service]) {
            Value::Array(v) => v,
            other => panic!("ps returned {other}"),
        }
    }

    /// How many replicas of `service` are in state running.
    pub fn running(&self, service: &str) -> usize {
        self.replicas(service)
            .iter()
            .filter(|r| r["state"] == "running")
            .count()
    }

    /// The names of the services `dash service ls` lists.
    pub fn service_names(&self) -> Vec<String> {
        self.json(&["service", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["spec"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Removes `service`, the last one, and waits up to `timeout` until `dash service ls`
    /// lists none.
    pub fn remove_last_service(&self, service: &str, timeout: Duration) {
        self.ok(&["service", "rm", service]);
        self.wait(&format!("{service} removed"), timeout, || {
            self.json(&["service", "ls"])
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        });
    }

    /// The host pid of the first process of replica `replica`.
    pub fn replica_pid(&self, replica: &str) -> i32 {
        replica_pid(&self.data_dir, replica)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Writes the service file `name` and applies it (`dash apply -f`); returns its path.
    pub fn apply(&self, name: &str, content: &str) -> PathBuf {
        let p = self.write(name, content);
        self.ok(&["apply", "-f", p.to_str().unwrap()]);
        p
    }

    pub fn import_busybox(&self, reference: &str) {
        self.import_busybox_with(reference, &[]);
    }

    /// Imports busybox plus `binaries` (see [`busybox_rootfs_tar_with`]) as `reference`.
    pub fn import_busybox_with(&self, reference: &str, binaries: &[&Path]) {
        let tar = busybox_rootfs_tar_with(self.dir.path(), binaries);
        self.ok(&[
            "image",
            "import",
            "--rootfs",
            tar.to_str().unwrap(),
            reference,
        ]);
    }

    /// Polls `check` until it returns Some or `timeout` passes.
    pub fn wait<T>(&self, what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
        wait_for(what, timeout, check, || {
            format!(
                "ps: {}\nlog tail:\n{}",
                self.dash_ps_text(),
                tail(&self.log(), 40)
            )
        })
    }

    fn dash_ps_text(&self) -> String {
        String::from_utf8_lossy(&self.dash(&["ps"]).stdout).into_owned()
    }

    /// Waits until `service` has exactly `n` replicas, all running (or healthy), and returns them.
    pub fn wait_running(&self, service: &str, n: usize) -> Vec<Value> {
        self.wait(
            &format!("{n} running replicas of {service}"),
            Duration::from_secs(60),
            || {
                let r = self.replicas(service);
                let ok = r.len() == n
                    && r.iter().all(|x| {
                        matches!(x["state"].as_str(), Some("running" | "healthy"))
                            && x["desired"] == "run"
                    });
                ok.then_some(r)
            },
        )
    }

    /// Runs a command inside a replica through the OCI runtime that runs it.
    pub fn exec_in(&self, replica: &str, cmd: &[&str]) -> Output {
        let runtime = std::fs::read_to_string(
            self.data_dir
                .join("containers")
                .join(replica)
                .join("runtime"),
        )
        .unwrap_or_else(|_| "runc".into());
        // Each runtime keeps its state under its own root: <run-dir>/runtime/<crun|runc>.
        Command::new(runtime.trim())
            .arg("--root")
            .arg(self.run_dir.join("runtime").join(runtime.trim()))
            .arg("exec")
            .arg(replica)
            .args(cmd)
            .output()
            .unwrap()
    }

    /// Fails the test if [`Server::leftovers`] of `replica_prefix` are still there after
    /// `within` (the kernel frees a veth shortly after its namespace is unpinned; `ZERO`: now).
    pub fn assert_no_leftovers(&self, replica_prefix: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let mut left = self.leftovers(replica_prefix);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = self.leftovers(replica_prefix);
        }
        assert!(left.is_empty(), "left behind: {left:#?}");
    }

    /// Everything on the host that still carries this server's names.
    pub fn leftovers(&self, replica_prefix: &str) -> Vec<String> {
        let mut left = Vec::new();
        let containers = self.data_dir.join("containers");
        if let Ok(rd) = std::fs::read_dir(&containers) {
            for e in rd.flatten() {
                left.push(format!("container dir {}", e.path().display()));
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.data_dir.join("logs")) {
            // logs/removed/ holds removed replicas' logs on purpose (bounded, for
            // `dash logs --previous`).
            for e in rd.flatten().filter(|e| e.file_name() != "removed") {
                left.push(format!("log file {}", e.path().display()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in mounts.lines() {
            if l.contains(self.data_dir.to_str().unwrap())
                || l.contains(self.run_dir.to_str().unwrap())
            {
                left.push(format!("mount {l}"));
            }
        }
        let netns = self.run_dir.join("netns");
        if let Ok(rd) = std::fs::read_dir(&netns) {
            for e in rd.flatten() {
                left.push(format!("netns {}", e.path().display()));
            }
        }
        let links = Command::new("ip")
            .args(["-br", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&links.stdout).lines() {
            left.push(format!("veth {l}"));
        }
        let cg = Command::new("find")
            .args(["/sys/fs/cgroup", "-name", &format!("{replica_prefix}*")])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&cg.stdout).lines() {
            left.push(format!("cgroup {l}"));
        }
        let nft = Command::new("nft")
            .args(["list", "table", "ip", &self.table])
            .output()
            .unwrap();
        for l in String::from_utf8_lossy(&nft.stdout).lines() {
            if l.contains("dport") && l.contains("10.97.") {
                left.push(format!("nft rule {}", l.trim()));
            }
        }
        left
    }

    /// Removes every service and waits until their replicas are gone.
    pub fn remove_all_services(&self) {
        let Ok(Value::Array(services)) =
            serde_json::from_slice::<Value>(&self.dash(&["service", "ls", "-o", "json"]).stdout)
        else {
            return;
        };
        for s in &services {
            if let Some(name) = s["spec"]["name"].as_str() {
                let _ = self.dash(&["service", "rm", name]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self.dash(&["service", "ls", "-o", "json"]);
            if serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|v| v.as_array().is_some_and(Vec::is_empty))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_none() {
            // A test killed it: start it again so that it removes its containers.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn()));
        }
        self.remove_all_services();
        self.kill9();
        // Whatever is still there (a failed test): containers, mounts, netns, the network.
        let runtime_root = self.run_dir.join("runtime");
        for rt in ["crun", "runc"] {
            if let Ok(out) = Command::new(rt)
                .arg("--root")
                .arg(runtime_root.join(rt))
                .args(["list", "-q"])
                .output()
            {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = Command::new(rt)
                        .arg("--root")
                        .arg(runtime_root.join(rt))
                        .args(["delete", "-f", id])
                        .output();
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| {
                t.starts_with(self.data_dir.to_str().unwrap())
                    || t.starts_with(self.run_dir.to_str().unwrap())
            })
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = Command::new("umount").args(["-l", t]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        for family in ["ip", "bridge"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, &self.table])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn unsafe_free_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Polls `check` until it returns Some; after `timeout`, fails the test with `what` and what
/// `context` says about the state (logs, `dash ps`). Never a fixed sleep.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stdout of `dash args`, whose run `out` must have succeeded; `context` says more about a
/// failure than the command's stderr.
fn stdout_of_success(
    args: &[&str],
    out: &Output,
    context: impl FnOnce(&Output) -> String,
) -> String {
    assert!(
        out.status.success(),
        "dash {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        context(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of `dash args`, whose run `out` must have failed.
fn stderr_of_failure(args: &[&str], out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "dash {args:?} succeeded: {}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Runs `cmd` with `input` on its standard input (its outputs captured) to its end.
pub fn output_with_input(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The first line `child` writes to its (piped) standard output.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// The host pid of the first process of replica `replica`, as the monitor of the node whose
/// data dir is `data_dir` recorded it in the replica's bundle.
pub fn replica_pid(data_dir: &Path, replica: &str) -> i32 {
    let p = data_dir.join("containers").join(replica).join("pid");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

/// `kill -9 pid`, which must succeed.
pub fn sigkill(pid: i32) {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -9 {pid} failed");
}

/// The string `field` of every one of `rows` (`-o json` rows), sorted.
pub fn sorted_field(rows: &[Value], field: &str) -> Vec<String> {
    let mut values: Vec<String> = rows
        .iter()
        .map(|r| r[field].as_str().unwrap().to_string())
        .collect();
    values.sort();
    values
}

/// `replicas` (`dash ps -o json` rows) are `n`, all running at spec version `version`.
pub fn all_running_at(replicas: &[Value], n: usize, version: u64) -> bool {
    replicas.len() == n
        && replicas
            .iter()
            .all(|r| r["version"] == version && r["state"] == "running")
}

/// The files under `dir` (recursively) that hold `needle`'s bytes anywhere.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file()
                && std::fs::read(e.path())
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(e.path());
            }
        }
    }
    found
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain HTTP/1.0 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    http_request(addr, "GET", path, None)
}

pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String)> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    http_exchange(
        addr,
        &format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\n\r\n"),
    )
}

/// A request with a JSON body and a bearer token: (status, body).
pub fn http_request_json(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, String)> {
    let body = body.to_string();
    http_exchange(
        addr,
        &format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A GET with its own `Host` header (through the proxy): (status, body).
pub fn http_get_host(addr: &str, host: &str, path: &str) -> Result<(u16, String)> {
    http_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends `request`, reads the answer to the end: (status, body).
fn http_exchange(addr: &str, request: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request.as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status")?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    if code == 0 {
        bail!("bad status");
    }
    Ok((code, body))
}
