//! container_runtime against the real crun and runc: create, start, logs, limits, stop, exec,
//! remove, a failing create, and a monitor that outlives its daemon.
//!
//! Needs root, crun, runc, busybox-static and a built monitor (`cargo build -p dash-monitor`);
//! a missing prerequisite fails the test and names it.
// Helpers outside #[test] fns are not "test code" to clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use dash_runtime::{
    ContainerRuntime, ContainerSpec, ContainerStatus, RuntimeConfig, RuntimeError, RuntimeKind,
};

/// The dash-monitor binary next to this test's target dir (target/debug/dash-monitor).
fn monitor_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("dash-monitor");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p dash-monitor` before these tests",
        bin.display()
    );
    bin
}

/// A one-layer busybox root: bin/busybox + a symlink per applet, and the usual dirs.
fn busybox_layer(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    assert!(list.status.success());
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "root"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// One test's world: its own state dir, runtime root and cgroup parent; cleans up on drop,
/// also when the test failed half-way.
struct Fixture {
    tmp: tempfile::TempDir,
    rt: ContainerRuntime,
    cgroup_parent: String,
    prefix: String,
}

impl Fixture {
    fn new(prefer: Option<RuntimeKind>, tag: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        busybox_layer(&tmp.path().join("layer"));
        let cgroup_parent = format!("dashtest-{}-{tag}", std::process::id());
        let rt = ContainerRuntime::new(config(tmp.path(), prefer, &cgroup_parent)).unwrap();
        Fixture {
            tmp,
            rt,
            cgroup_parent,
            prefix: format!("t{}-{tag}", std::process::id()),
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn spec(&self, id: &str, script: &str) -> ContainerSpec {
        spec(self.tmp.path(), id, script)
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn runtime_root(&self) -> PathBuf {
        self.tmp.path().join("run")
    }
}

fn config(tmp: &Path, prefer: Option<RuntimeKind>, cgroup_parent: &str) -> RuntimeConfig {
    RuntimeConfig {
        state_dir: tmp.join("state"),
        runtime_root: tmp.join("run"),
        monitor_bin: monitor_bin(),
        prefer,
        cgroup_parent: cgroup_parent.to_owned(),
    }
}

fn spec(tmp: &Path, id: &str, script: &str) -> ContainerSpec {
    ContainerSpec {
        id: id.to_owned(),
        layer_dirs: vec![tmp.join("layer")],
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["GREETING=hi".into()],
        cwd: "/".into(),
        hostname: "box-1".into(),
        memory_bytes: None,
        cpu_millis: None,
        netns_path: None,
        log_max_bytes: 0,
        dns: None,
        capabilities: None,
        seccomp: None,
        files: Vec::new(),
        userns: None,
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let ids = self.rt.list().unwrap_or_default();
        for id in &ids {
            if let Err(e) = self.rt.remove(id) {
                eprintln!("cleanup: remove {id}: {e}");
            }
        }
        // Last resort, after a failed remove: lazy-unmount what is left under our temp dir
        // and drop our cgroup dirs, so a failing test leaves nothing behind.
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in info.lines().filter_map(|l| l.split(' ').nth(4)) {
            if point.starts_with(&tmp) {
                let _ = Command::new("umount").arg("-l").arg(point).status();
            }
        }
        for dir in cgroup_dirs_matching(&self.cgroup_parent) {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Every dir under /sys/fs/cgroup whose path contains `needle`, deepest first.
fn cgroup_dirs_matching(needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, needle: &str, out: &mut Vec<PathBuf>) {
        if depth > 12 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let p = e.path();
                walk(&p, depth + 1, needle, out);
                if p.to_string_lossy().contains(needle) {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 0, needle, &mut out);
    out
}

fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn wait_exited(rt: &ContainerRuntime, id: &str) -> i32 {
    wait_until(Duration::from_secs(10), || match rt.status(id).unwrap() {
        ContainerStatus::Exited { code } => Some(code),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{id} did not exit"))
}

/// (ppid, session id) of a process.
fn ppid_sid(pid: i32) -> (i32, i32) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    (rest[1].parse().unwrap(), rest[3].parse().unwrap())
}

/// The log has both lines, each as `<RFC 3339 ms UTC> <stream> <text>`.
fn assert_log_lines(log_path: &Path) {
    let log = wait_until(Duration::from_secs(5), || {
        let text = fs::read_to_string(log_path).ok()?;
        (text.contains(" stdout out\n") && text.contains(" stderr err\n")).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "log {} lacks the lines: {:?}",
            log_path.display(),
            fs::read_to_string(log_path)
        )
    });
    for line in log.lines() {
        let (ts, rest) = line.split_once(' ').unwrap();
        assert_eq!(ts.len(), 24, "timestamp {ts:?}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
        assert!(
            rest.starts_with("stdout ") || rest.starts_with("stderr "),
            "{line:?}"
        );
    }
}

/// RSS and PSS of a process, kB.
fn rss_pss(pid: i32) -> (u64, u64) {
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

/// Nothing of the container is left: bundle dir, mount, cgroup dirs, runtime state.
fn assert_gone(fx: &Fixture, id: &str, kind: RuntimeKind) {
    assert!(!fx.state_dir().join(id).exists(), "bundle dir left");
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(id), "mount left: {info}");
    let left = cgroup_dirs_matching(id);
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
    let state = fx.runtime_root().join(kind.to_string()).join(id);
    assert!(!state.exists(), "runtime state left: {}", state.display());
    assert_eq!(fx.rt.status(id).unwrap(), ContainerStatus::Missing);
}

/// The own cgroup of this process in the hierarchy mounted at /sys/fs/cgroup/<name>.
fn own_cgroup(controller: &str) -> String {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap();
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _ = parts.next();
            let ctrls = parts.next()?;
            let path = parts.next()?;
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
        .unwrap()
}

fn lifecycle(kind: RuntimeKind, tag: &str) {
    let fx = Fixture::new(Some(kind), tag);
    assert_eq!(fx.rt.kind(), kind);

    // --- create + start a container that logs on both streams
    let id = fx.id("sleep");
    let mut spec = fx.spec(&id, "echo out; echo err >&2; sleep 30");
    spec.memory_bytes = Some(64 << 20);
    spec.cpu_millis = Some(500);
    let t0 = Instant::now();
    fx.rt.create(&spec).unwrap();
    let created = t0.elapsed();
    assert_eq!(fx.rt.status(&id).unwrap(), ContainerStatus::Created);
    let t1 = Instant::now();
    let pid = fx.rt.start(&id).unwrap();
    let started = t1.elapsed();
    eprintln!(
        "{kind}: create {created:?} + start {started:?} = create→running {:?}",
        created + started
    );
    assert_eq!(fx.rt.status(&id).unwrap(), ContainerStatus::Running { pid });
    assert_log_lines(&fx.rt.log_path(&id));

    // --- limits land in the container's cgroup, beneath our own cgroup
    let dirs = cgroup_dirs_matching(&id);
    let mem_dir = dirs
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory"))
        .expect("memory cgroup dir");
    let own_mem = own_cgroup("memory");
    assert!(
        mem_dir
            .starts_with(Path::new("/sys/fs/cgroup/memory").join(own_mem.trim_start_matches('/'))),
        "{} is not beneath our memory cgroup {own_mem}",
        mem_dir.display()
    );
    let limit = fs::read_to_string(mem_dir.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let cpu_dir = dirs
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/cpu/"))
        .expect("cpu cgroup dir");
    let quota = fs::read_to_string(cpu_dir.join("cpu.cfs_quota_us")).unwrap();
    assert_eq!(quota.trim(), "50000");
    let procs = fs::read_to_string(mem_dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "pid {pid} not in {procs:?}"
    );

    // --- the monitor: the init's parent, in a session of its own, small
    let monitor = fx.rt.monitor_pid(&id).expect("monitor alive");
    assert_eq!(ppid_sid(pid).0, monitor, "init is not the monitor's child");
    let (_, monitor_sid) = ppid_sid(monitor);
    let (_, our_sid) = ppid_sid(std::process::id() as i32);
    assert_eq!(monitor_sid, monitor, "monitor is not a session leader");
    assert_ne!(monitor_sid, our_sid);
    // It holds none of our stdio, and nothing but its own files, pipes and signalfd.
    let ours: Vec<PathBuf> = (0..3)
        .filter_map(|fd| fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .filter(|t| t != Path::new("/dev/null"))
        .collect();
    let bundle = fx.state_dir().join(&id);
    for entry in fs::read_dir(format!("/proc/{monitor}/fd")).unwrap() {
        let target = fs::read_link(entry.unwrap().path()).unwrap();
        assert!(
            !ours.contains(&target),
            "monitor holds our {}",
            target.display()
        );
        let t = target.to_string_lossy();
        assert!(
            t == "/dev/null"
                || target.starts_with(&bundle)
                || target == fx.rt.log_path(&id)
                || t.starts_with("pipe:")
                || t == "anon_inode:[signalfd]",
            "monitor holds {t}"
        );
    }
    let (rss, pss) = rss_pss(monitor);
    eprintln!("{kind}: monitor {monitor} VmRSS {rss} kB, Pss {pss} kB");

    // --- exec and stats
    let out = fx
        .rt
        .exec(&id, &["cat".into(), "/etc/hostname".into()])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "box-1\n");
    let out = fx
        .rt
        .exec(
            &id,
            &["sh".into(), "-c".into(), "echo $GREETING; exit 3".into()],
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // The default capability set (Docker's without NET_RAW), devices usable, nofile at the
    // host's hard limit.
    let script =
        "grep CapEff /proc/self/status; echo x > /dev/null && echo devnull-ok; ulimit -n; hostname";
    let out = fx
        .rt
        .exec(&id, &["sh".into(), "-c".into(), script.into()])
        .unwrap();
    let hard = fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("CapEff:\t00000000a80405fb\ndevnull-ok\n{hard}\nbox-1\n"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = fx.rt.stats(&id).unwrap();
    assert!(
        stats.memory_bytes > 0 && stats.cpu_usage_ns > 0,
        "{stats:?}"
    );

    // --- exec with a terminal: made in the container's devpts, the command's controlling
    // terminal, sized by the caller, then resized.
    let script = "tty; stty size; read -r pid comm state ppid pgrp session tty_nr rest \\
        < /proc/self/stat; echo tty_nr=$tty_nr; read go; stty size";
    let mut t = fx
        .rt
        .exec_tty(
            &id,
            &["sh".into(), "-c".into(), script.into()],
            Some((21, 77)),
        )
        .unwrap();
    let resizer = t.resizer().unwrap();
    let mut term = fs::File::from(t.terminal);
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    // The first size is shown before the command waits for a line; then a resize.
    while !String::from_utf8_lossy(&text).contains("tty_nr=") {
        let n = std::io::Read::read(&mut term, &mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&buf[..n]);
    }
    resizer.resize(30, 90);
    std::thread::sleep(Duration::from_millis(100));
    std::io::Write::write_all(&mut term, b"go\n").unwrap();
    // EIO once the command is gone and with it the terminal's last user.
    while let Ok(n) = std::io::Read::read(&mut term, &mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let status = t.child.wait().unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(status.success(), "{status:?}: {text}");
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("21 77"), "{text}");
    assert!(text.contains("30 90"), "{text}");
    assert!(!text.contains("tty_nr=0\r"), "{text}");
    // A missing program fails: before the terminal is handed over, or after it with the
    // runtime's status.
    match fx.rt.exec_tty(&id, &["/no/such/program".into()], None) {
        Err(e) => eprintln!("{kind}: exec -t of a missing program: {e}"),
        Ok(mut t) => {
            let status = t.child.wait().unwrap();
            assert!(!status.success(), "{status:?}");
        }
    }

    // --- stop: sh as PID 1 ignores TERM, so KILL after the grace period
    fx.rt.stop(&id, Duration::from_millis(500)).unwrap();
    let code = match fx.rt.status(&id).unwrap() {
        ContainerStatus::Exited { code } => code,
        other => panic!("after stop: {other:?}"),
    };
    assert!(code == 143 || code == 137, "exit code {code}");
    assert!(matches!(
        fx.rt.kill(&id, 15),
        Err(RuntimeError::NotRunning { .. })
    ));
    fx.rt.stop(&id, Duration::from_millis(10)).unwrap();

    // --- remove: nothing left, and again is fine
    fx.rt.remove(&id).unwrap();
    assert_gone(&fx, &id, kind);
    fx.rt.remove(&id).unwrap();
    let parents = cgroup_dirs_matching(&fx.cgroup_parent);
    assert!(parents.is_empty(), "parent cgroup dirs left: {parents:?}");

    // --- an exit code
    let id7 = fx.id("exit7");
    fx.rt
        .create(&fx.spec(&id7, "echo out; echo err >&2; exit 7"))
        .unwrap();
    fx.rt.start(&id7).unwrap();
    assert_eq!(wait_exited(&fx.rt, &id7), 7);
    assert_log_lines(&fx.rt.log_path(&id7));
    assert_eq!(fx.rt.list().unwrap(), vec![id7.clone()]);
    fx.rt.remove(&id7).unwrap();
    assert_gone(&fx, &id7, kind);

    // --- a create the runtime rejects leaves nothing behind
    let bad = fx.id("badns");
    let mut spec = fx.spec(&bad, "true");
    spec.netns_path = Some(PathBuf::from("/nonexistent/netns"));
    match fx.rt.create(&spec) {
        Err(RuntimeError::Create { message, .. }) => eprintln!("{kind}: create error: {message}"),
        other => panic!("create with a bad netns: {other:?}"),
    }
    assert_gone(&fx, &bad, kind);
    assert!(matches!(
        fx.rt.create(&fx.spec("../x", "true")),
        Err(RuntimeError::InvalidId { .. })
    ));
}

#[test]
fn crun_lifecycle() {
    lifecycle(RuntimeKind::Crun, "crun");
}

#[test]
fn runc_lifecycle() {
    lifecycle(RuntimeKind::Runc, "runc");
}

/// The child "daemon" must not outlive a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CHILD_ENV: &str = "DASH_TEST_DAEMON_DIR";

/// The daemon dies (kill -9) between create and start: the monitor lives on, holds none of
/// the daemon's stdio, and a new daemon starts the container and gets its output and code.
#[test]
fn monitor_survives_daemon_death() {
    let fx = Fixture::new(None, "death");
    let id = fx.id("orphan");
    let mut daemon = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "daemon_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, fx.tmp.path())
            .env("DASH_TEST_DAEMON_ID", &id)
            .env("DASH_TEST_DAEMON_CGROUP", &fx.cgroup_parent)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let daemon_pid = daemon.0.id() as i32;
    let (tx, rx) = mpsc::channel();
    let stdout = daemon.0.stdout.take().unwrap();
    let tx_out = tx.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx_out.send(Some(line));
        }
        let _ = tx_out.send(None);
    });
    let mut stderr = daemon.0.stderr.take().unwrap();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(Some(format!("stderr: {text}")));
        let _ = tx.send(None);
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(line)) if line.ends_with("CREATED") => break,
            Ok(Some(line)) => seen.push(line),
            Ok(None) => {}
            Err(_) => panic!("the daemon child did not create the container: {seen:?}"),
        }
    }
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    // Both of the dead daemon's output pipes reach EOF: nothing of ours holds them.
    let mut eofs = 0;
    while eofs < 2 {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(None) => eofs += 1,
            Ok(Some(_)) => {}
            Err(_) => panic!("the daemon's stdio is still held open after its death"),
        }
    }

    assert_eq!(fx.rt.status(&id).unwrap(), ContainerStatus::Created);
    let monitor = fx.rt.monitor_pid(&id).expect("monitor survived the daemon");
    let (monitor_ppid, monitor_sid) = ppid_sid(monitor);
    assert_ne!(monitor_ppid, daemon_pid);
    assert_ne!(monitor_sid, ppid_sid(std::process::id() as i32).1);
    assert_ne!(monitor_sid, daemon_pid);

    // The created init was reparented to the monitor (its subreaper) when `create` exited.
    let init: i32 = fs::read_to_string(fx.state_dir().join(&id).join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ppid_sid(init).0, monitor, "init is not the monitor's child");
    assert_eq!(fx.rt.start(&id).unwrap(), init);
    assert_eq!(wait_exited(&fx.rt, &id), 7);
    assert_log_lines(&fx.rt.log_path(&id));
    fx.rt.remove(&id).unwrap();
    assert_gone(&fx, &id, fx.rt.kind());
}

/// Helper process of `monitor_survives_daemon_death` (does nothing when run by hand).
#[test]
#[ignore = "run by monitor_survives_daemon_death as a separate process"]
fn daemon_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let id = std::env::var("DASH_TEST_DAEMON_ID").unwrap();
    let parent = std::env::var("DASH_TEST_DAEMON_CGROUP").unwrap();
    let rt = ContainerRuntime::new(config(&dir, None, &parent)).unwrap();
    rt.create(&spec(&dir, &id, "echo out; echo err >&2; exit 7"))
        .unwrap();
    println!("CREATED");
    thread::sleep(Duration::from_secs(120));
}

/// A container with a user namespace: root inside is the range's first id on the host, files
/// it writes are that id's on the host, the image's files keep their owners inside (through
/// the idmapped layers), and nothing of the mounts stays after its removal.
fn user_namespace(kind: RuntimeKind, tag: &str) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = Fixture::new(Some(kind), tag);
    // runc enters the root file system as the mapped root: the runtime root's parents must
    // be passable (a temp dir is 0700; the daemon's /run/dash is 0755).
    fs::set_permissions(fx.tmp.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let host_id = (1u32 << 30) + 7 * 65_536;
    let id = fx.id("userns");
    let mut spec = fx.spec(
        &id,
        "id -u; stat -c %u /bin/busybox; touch /made-here; cat /proc/self/uid_map; sleep 30",
    );
    spec.userns = Some(dash_runtime::IdMap {
        host_id,
        size: 65_536,
    });
    let pid = fx.rt.run(&spec).unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().nth(1) == Some(&host_id.to_string()),
        "{uids}"
    );
    let log = wait_until(Duration::from_secs(5), || {
        let (bytes, _) = fx.rt.read_log(&id, 0);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        text.contains("65536").then_some(text)
    })
    .expect("the container's output");
    // Each line ends with what the command wrote: root inside, and the image's files still
    // root's inside (the idmapped layers).
    let words: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(words.get(..2), Some(&["0", "0"][..]), "{log}");
    // The file it made is the mapped root's on the host (in the overlay's upper dir).
    let made = fx.state_dir().join(&id).join("upper/made-here");
    let meta = wait_until(Duration::from_secs(5), || fs::metadata(&made).ok()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (host_id, host_id));
    fx.rt.remove(&id).unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&id), "mounts of {id} left: {info}");
    assert!(!fx.runtime_root().join("rootfs").join(&id).exists());
}

#[test]
fn crun_user_namespace() {
    user_namespace(RuntimeKind::Crun, "crun-userns");
}

#[test]
fn runc_user_namespace() {
    user_namespace(RuntimeKind::Runc, "runc-userns");
}
