//! A cluster on one machine: every node a network namespace with a veth to a test bridge,
//! its own data dir, runtime root, run dir and ports (the namespace gives each its own
//! loopback, bridge and nftables). Node 0 is the master (`dash server --advertise-addr`),
//! the others workers (`dash worker --join`). Daemons are entered into their namespace with
//! `nsenter --net` only (not `ip netns exec`, which remounts /sys and so hides the cgroup
//! hierarchies). Nodes can be killed by pid, partitioned (link down) and restarted.
//!
//! On drop: every service is removed (a dead worker is started again first so that it tears
//! its containers down), the daemons stop, and the namespaces, veths, bridge and dirs go.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    busybox_rootfs_tar, dash_bin, output_with_input, require, stderr_of_failure, stdout_of_success,
    tail,
};

pub struct Node {
    pub name: String,
    pub ip: String,
    pub netns: String,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(dash_bin())
            .args(&self.args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// kill -9 of the daemon and of every container it started (the node dies).
    pub fn kill_node(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in self.container_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    /// Pids of this node's containers that are alive.
    pub fn container_pids(&self) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir(self.data_dir.join("containers")) else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let pid: u32 = std::fs::read_to_string(e.ok()?.path().join("pid"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            std::path::Path::new(&format!("/proc/{pid}"))
                .exists()
                .then_some(pid)
        })
        .collect()
    }

    /// Link down (or up) on the node's only interface: a network partition.
    pub fn set_link(&self, up: bool) {
        let st = Command::new("ip")
            .args([
                "-n",
                &self.netns,
                "link",
                "set",
                "eth0",
                if up { "up" } else { "down" },
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub fn restart(&mut self) {
        if self.alive() {
            return;
        }
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub slot: u8,
    pub bridge: String,
    pub nodes: Vec<Node>,
    pub addr: String,
    pub token: String,
    /// More `dash server` flags for every master of [`Cluster::start_ha_with`].
    pub master_extra: Vec<String>,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// No node yet: the test bridge of `slot` (10.96.SLOT.1/24) and a temp dir.
    fn bridged(slot: u8) -> Cluster {
        require(
            "nsenter (util-linux)",
            Path::new("/usr/bin/nsenter").exists(),
        );
        let dir = tempfile::tempdir().unwrap();
        let bridge = format!("dcb{slot}");
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("10.96.{slot}.1/24"), "dev", &bridge],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        Cluster {
            addr: String::new(),
            dir,
            slot,
            bridge,
            nodes: Vec::new(),
            token: String::new(),
            master_extra: Vec::new(),
        }
    }

    /// A master and `workers` workers (labelled `tier=worker`), joined and ready.
    /// `slot` (1..=99) keeps names and subnets apart from other tests.
    pub fn start(slot: u8, workers: usize) -> Cluster {
        Self::start_with(slot, workers, &[])
    }

    /// [`Cluster::start`] with more `dash server` flags for the master.
    pub fn start_with(slot: u8, workers: usize, master_flags: &[&str]) -> Cluster {
        let mut c = Cluster::bridged(slot);
        c.addr = format!("10.96.{slot}.10:7070");
        for i in 0..=workers {
            c.add_netns(i);
        }
        let master_args: Vec<String> = c
            .server_args(0, &c.addr)
            .into_iter()
            .chain(
                (!master_flags.contains(&"--node-down-after"))
                    .then(|| ["--node-down-after".to_string(), "2s".to_string()])
                    .into_iter()
                    .flatten(),
            )
            .chain(master_flags.iter().map(|f| f.to_string()))
            .collect();
        c.nodes[0].args = master_args;
        c.spawn_first_master();
        c.token = c
            .ok(&["token", "create", "--role", "worker"])
            .trim()
            .to_string();
        for i in 1..=workers {
            let token = c.token.clone();
            c.spawn_worker(i, &token);
        }
        c.wait_nodes_ready(workers + 1);
        c
    }

    /// `masters` masters (the first starts the cluster, the others join it with a token of
    /// role master; none runs replicas) and `workers` workers, all ready. The admin API
    /// address is every master's (`DASH_ADDR=a,b,c`: the CLI tries each).
    pub fn start_ha(slot: u8, masters: usize, workers: usize) -> Cluster {
        Self::start_ha_with(slot, masters, workers, |_| {})
    }

    /// [`Cluster::start_ha`] with `before` run once the bridge (10.96.SLOT.1) is up and
    /// before any node starts (e.g. a registry on the bridge, `master_extra` flags).
    pub fn start_ha_with(
        slot: u8,
        masters: usize,
        workers: usize,
        before: impl FnOnce(&mut Cluster),
    ) -> Cluster {
        let mut c = Cluster::bridged(slot);
        before(&mut c);
        c.add_named_netns(0, "m1".into());
        c.addr = format!("{}:7070", c.nodes[0].ip);
        c.nodes[0].args = c.master_args(0);
        c.spawn_first_master();
        for _ in 1..masters {
            c.spawn_master();
        }
        c.wait_voters(masters);
        c.token = c
            .ok(&["token", "create", "--role", "worker"])
            .trim()
            .to_string();
        for _ in 0..workers {
            let idx = c.nodes.len();
            c.add_netns(idx);
            let token = c.token.clone();
            c.spawn_worker(idx, &token);
        }
        c.wait_nodes_ready(masters + workers);
        c
    }

    /// Starts node 0 (its arguments set) and waits until its admin API answers.
    fn spawn_first_master(&mut self) {
        self.nodes[0].spawn();
        self.wait(
            "the first master's admin API",
            Duration::from_secs(20),
            || {
                self.nodes[0]
                    .data_dir
                    .join("admin.token")
                    .exists()
                    .then(|| self.dash(&["node", "ls"]).status.success().then_some(()))
                    .flatten()
            },
        );
    }

    /// `dash server` for node `i` with its admin API on `listen`: its dirs, cgroup parent,
    /// addresses, the slot's subnets and its name.
    fn server_args(&self, i: usize, listen: &str) -> Vec<String> {
        let n = &self.nodes[i];
        let slot = self.slot;
        let mut args = vec!["server".to_string()];
        args.extend(self.dirs_args(i));
        args.extend([
            // Plain HTTP on the test bridge (the harness's clients and the masters bench
            // speak it); HTTPS beyond loopback is tests/tls_contexts.rs's.
            "--listen".into(),
            format!("http://{listen}"),
            "--insecure-http".into(),
            "--advertise-addr".into(),
            n.ip.clone(),
            "--subnet".into(),
            format!("10.95.{slot}.0/24"),
            "--node-name".into(),
            n.name.clone(),
        ]);
        // 16 nodes' subnets, unless the test gives a range of its own.
        if !self.master_extra.iter().any(|f| f == "--cluster-cidr") {
            args.extend([
                "--cluster-cidr".into(),
                format!("10.{}.0.0/20", 150 + u16::from(slot)),
            ]);
        }
        args
    }

    /// Node `i`'s data dir, run dir and cgroup parent, as daemon flags.
    fn dirs_args(&self, i: usize) -> [String; 6] {
        let n = &self.nodes[i];
        [
            "--data-dir".into(),
            n.data_dir.display().to_string(),
            "--run-dir".into(),
            n.run_dir.display().to_string(),
            "--cgroup-parent".into(),
            cgroup_parent(&n.run_dir),
        ]
    }

    /// The `dash server` arguments of master node `i` (`--no-worker`; no `--join`).
    fn master_args(&self, i: usize) -> Vec<String> {
        let mut args = self.server_args(i, &format!("{}:7070", self.nodes[i].ip));
        if !self.master_extra.iter().any(|f| f == "--node-down-after") {
            args.extend(["--node-down-after", "2s"].map(String::from));
        }
        args.push("--no-worker".into());
        args.extend(self.master_extra.iter().cloned());
        args
    }

    /// One more master (`m<N>`, its own namespace) joining through a master that answers
    /// with a new token of role master; added to `addr`. Returns its index; it is a voter
    /// once [`Cluster::wait_voters`] says so.
    pub fn spawn_master(&mut self) -> usize {
        let masters = self
            .nodes
            .iter()
            .filter(|n| n.name.starts_with('m'))
            .count();
        let via = (0..self.nodes.len())
            .find(|&i| self.nodes[i].name.starts_with('m') && self.nodes[i].alive())
            .expect("a live master to join");
        let token = self
            .ok(&["token", "create", "--role", "master"])
            .trim()
            .to_string();
        let i = self.nodes.len();
        self.add_named_netns(i, format!("m{}", masters + 1));
        let mut args = self.master_args(i);
        args.extend([
            "--join".into(),
            format!("{token}@{}:7071", self.nodes[via].ip),
        ]);
        self.nodes[i].args = args;
        self.nodes[i].spawn();
        self.addr = format!("{},{}:7070", self.addr, self.nodes[i].ip);
        i
    }

    /// Waits until the membership has `n` voters.
    pub fn wait_voters(&self, n: usize) {
        self.wait(
            &format!("{n} masters in the membership"),
            Duration::from_secs(30),
            || {
                let s = self.cluster_status()?;
                let voters = s["masters"]
                    .as_array()?
                    .iter()
                    .filter(|m| m["role"] == "leader" || m["role"] == "follower")
                    .count();
                (voters == n).then_some(())
            },
        );
    }

    /// A master started from an existing data dir (a restored backup) in a namespace of its
    /// own, as the first master of a new cluster; its index. `addr` is not changed.
    pub fn spawn_master_from(&mut self, name: &str, data_dir: &std::path::Path) -> usize {
        let i = self.nodes.len();
        self.add_named_netns(i, name.into());
        self.nodes[i].data_dir = data_dir.to_path_buf();
        // Its own node subnet: the restored state holds the old first master's.
        let own = format!("10.94.{}.0/24", self.slot);
        self.nodes[i].args = self
            .master_args(i)
            .into_iter()
            .map(|a| {
                if a.starts_with("10.95.") {
                    own.clone()
                } else {
                    a
                }
            })
            .collect();
        self.nodes[i].spawn();
        i
    }

    /// `dash cluster status` as JSON, if a master answers.
    pub fn cluster_status(&self) -> Option<Value> {
        let out = self.dash(&["-o", "json", "cluster", "status"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The index of the node that leads the masters now.
    pub fn leader(&self) -> Option<usize> {
        let s = self.cluster_status()?;
        let name = s["leader"].as_str()?;
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The admin token (the first master's), or nothing before it is written.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.nodes[0].data_dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// `DASH_ADDR` (the admin API address of every master) and `DASH_TOKEN` (the admin
    /// token) for a `dash` command: `Command::envs(c.admin_env())`.
    pub fn admin_env(&self) -> [(&'static str, String); 2] {
        self.admin_env_at(self.addr.clone())
    }

    /// [`Cluster::admin_env`] with the admin API address `addr`.
    fn admin_env_at(&self, addr: String) -> [(&'static str, String); 2] {
        [("DASH_ADDR", addr), ("DASH_TOKEN", self.admin_token())]
    }

    /// Node `i`'s admin API address.
    fn node_addr(&self, i: usize) -> String {
        format!("{}:7070", self.nodes[i].ip)
    }

    /// `dash ARGS` against node `i`'s admin API only, not run yet.
    fn dash_at_command(&self, i: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new(dash_bin());
        cmd.args(args).envs(self.admin_env_at(self.node_addr(i)));
        cmd
    }

    /// `dash` against one node's admin API only.
    pub fn dash_at(&self, i: usize, args: &[&str]) -> Output {
        self.dash_at_command(i, args).output().unwrap()
    }

    /// [`Cluster::dash_at`] with `input` on its standard input.
    pub fn dash_at_input(&self, i: usize, args: &[&str], input: &str) -> Output {
        output_with_input(&mut self.dash_at_command(i, args), input)
    }

    /// `dash` run inside node `i`'s namespace against its own admin API: it reaches the
    /// daemon even while the node is partitioned (its link down).
    pub fn dash_inside(&self, i: usize, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.nodes[i].netns))
            .arg(dash_bin())
            .args(args)
            .envs(self.admin_env_at(self.node_addr(i)))
            .output()
            .unwrap()
    }

    /// Node `i` is gone for good (a removed master): never started again, not asked.
    pub fn retire(&mut self, i: usize) {
        self.nodes[i].kill_node();
        self.nodes[i].args.clear();
        let gone = format!("{}:7070", self.nodes[i].ip);
        self.addr = self
            .addr
            .split(',')
            .filter(|a| *a != gone)
            .collect::<Vec<_>>()
            .join(",");
    }

    /// Starts node `i` (dead) again with other arguments.
    pub fn respawn_with(&mut self, i: usize, args: Vec<String>) {
        self.nodes[i].kill_node();
        self.nodes[i].args = args;
        self.nodes[i].spawn();
    }

    fn add_netns(&mut self, i: usize) {
        let name = if i == 0 {
            "m".to_string()
        } else {
            format!("w{i}")
        };
        self.add_named_netns(i, name);
    }

    fn add_named_netns(&mut self, i: usize, name: String) {
        let slot = self.slot;
        let netns = format!("dash-c{slot}-{name}");
        let veth = format!("dc{slot}{name}");
        // What an earlier, killed run of this test may have left.
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        run("ip", &["netns", "add", &netns]);
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        );
        run("ip", &["link", "set", &veth, "master", &self.bridge, "up"]);
        let ip = format!("10.96.{slot}.{}", 10 + i);
        run(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        let node = Node {
            data_dir: self.dir.path().join(&name),
            run_dir: PathBuf::from(format!("/run/dash-e2e-c{slot}-{name}")),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            ip,
            netns,
            child: None,
            args: Vec::new(),
        };
        self.nodes.push(node);
    }

    /// The arguments `dash worker` gets for node `i` with `token`.
    pub fn worker_args(&self, i: usize, token: &str) -> Vec<String> {
        let n = &self.nodes[i];
        vec![
            "worker".into(),
            "--join".into(),
            format!("{token}@{}:7071", self.nodes[0].ip),
            "--advertise-addr".into(),
            n.ip.clone(),
        ]
        .into_iter()
        .chain(self.dirs_args(i))
        .chain([
            "--node-name".into(),
            n.name.clone(),
            "--label".into(),
            "tier=worker".into(),
        ])
        .collect()
    }

    /// A new node (namespace and worker) joining with the cluster's token; returns its index.
    pub fn join_new_worker(&mut self) -> usize {
        self.join_new_worker_via(0)
    }

    /// [`Cluster::join_new_worker`] through master node `via`'s master_api.
    pub fn join_new_worker_via(&mut self, via: usize) -> usize {
        let i = self.nodes.len();
        self.add_netns(i);
        let token = self.token.clone();
        let mut args = self.worker_args(i, &token);
        args[2] = format!("{token}@{}:7071", self.nodes[via].ip);
        self.nodes[i].args = args;
        self.nodes[i].spawn();
        i
    }

    /// The events the master kept, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let token =
            std::fs::read_to_string(self.nodes[0].data_dir.join("admin.token")).unwrap_or_default();
        let out = Command::new("timeout")
            .args(["2"])
            .arg(dash_bin())
            .args(["-o", "json", "events", "--past"])
            .env("DASH_ADDR", &self.addr)
            .env("DASH_TOKEN", token.trim())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn spawn_worker(&mut self, i: usize, token: &str) {
        let args = self.worker_args(i, token);
        self.nodes[i].args = args;
        self.nodes[i].spawn();
    }

    /// Runs `dash worker` for node `i` with `token` in the foreground (a join that must fail).
    pub fn try_join(&self, i: usize, token: &str) -> Output {
        let mut args = self.worker_args(i, token);
        // A throwaway data dir: a refused join must leave nothing behind anyway.
        let tmp = self.dir.path().join(format!("refused-{i}"));
        args[6] = tmp.display().to_string();
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.nodes[i].netns))
            .arg(dash_bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "a join with a bad token did not fail: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `dash ARGS` against the cluster's admin API, not run yet.
    fn dash_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(dash_bin());
        cmd.args(args).envs(self.admin_env());
        cmd
    }

    pub fn dash(&self, args: &[&str]) -> Output {
        self.dash_command(args).output().unwrap()
    }

    /// [`Cluster::dash`] with `input` on its standard input.
    pub fn dash_input(&self, args: &[&str], input: &str) -> Output {
        output_with_input(&mut self.dash_command(args), input)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, &self.dash(args), |_| {
            format!("master log:\n{}", tail(&self.nodes[0].log_text(), 40))
        })
    }

    /// `dash ARGS`, which must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        stderr_of_failure(args, &self.dash(args))
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ok(&full)).unwrap()
    }

    pub fn wait<T>(&self, what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
        crate::wait_for(what, timeout, check, || {
            self.nodes
                .iter()
                .map(|n| format!("--- {} ---\n{}\n", n.name, tail(&n.log_text(), 25)))
                .collect()
        })
    }

    pub fn wait_nodes_ready(&self, n: usize) {
        self.wait(&format!("{n} ready nodes"), Duration::from_secs(30), || {
            let nodes = self.json(&["node", "ls"]);
            let ready = nodes
                .as_array()?
                .iter()
                .filter(|x| x["state"] == "ready")
                .count();
            (ready == n).then_some(())
        });
    }

    pub fn import_busybox(&self, reference: &str) {
        let tar = busybox_rootfs_tar(self.dir.path());
        self.ok(&[
            "image",
            "import",
            "--rootfs",
            tar.to_str().unwrap(),
            reference,
        ]);
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

    pub fn replicas(&self, service: &str) -> Vec<Value> {
        match self.json(&["ps", service]) {
            Value::Array(v) => v,
            other => panic!("ps returned {other}"),
        }
    }

    /// Node name → number of its replicas of `service` that run and are meant to.
    pub fn running_per_node(&self, service: &str) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for r in self.replicas(service) {
            if r["state"] == "running" && r["desired"] != "remove" {
                *m.entry(r["node"].as_str().unwrap_or("-").to_string())
                    .or_default() += 1;
            }
        }
        m
    }

    /// Containers alive on all nodes (what really serves, whatever the masters think).
    pub fn live_containers(&self) -> usize {
        self.nodes.iter().map(|n| n.container_pids().len()).sum()
    }
}

use std::path::Path;

impl Cluster {
    /// Removes every service and waits until no container is left; Err says what remained.
    fn cleanup(&mut self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Ok(());
        }
        // Dead or partitioned nodes come back so that they tear their containers down.
        for n in self.nodes.iter_mut() {
            n.set_link(true);
            if !n.args.is_empty() {
                n.restart();
            }
        }
        match serde_json::from_slice::<Value>(&self.dash(&["-o", "json", "service", "ls"]).stdout) {
            Ok(Value::Array(services)) => {
                for s in services {
                    if let Some(name) = s["spec"]["name"].as_str() {
                        let out = self.dash(&["service", "rm", name]);
                        if !out.status.success() {
                            return Err(format!(
                                "dash service rm {name}: {}",
                                String::from_utf8_lossy(&out.stderr)
                            ));
                        }
                    }
                }
            }
            other => return Err(format!("cannot list services: {other:?}")),
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let ps = self.dash(&["-o", "json", "ps"]);
            let empty = serde_json::from_slice::<Value>(&ps.stdout)
                .ok()
                .and_then(|v| v.as_array().map(Vec::is_empty))
                .unwrap_or(false);
            if empty && self.live_containers() == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} containers still alive after removing every service; ps: {}",
                    self.live_containers(),
                    String::from_utf8_lossy(&ps.stdout)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of a test whose workers run no container (`dash sim`'s simulated ones): the
    /// daemons stop and their namespaces, bridge and dirs go, without removing every service
    /// first (there is nothing on the host to tear down, and 20,000 simulated removals would
    /// only cost time).
    pub fn discard(mut self) {
        self.teardown();
        self.nodes.clear();
    }

    /// The end of a test: everything removed, or the test fails saying what is left.
    pub fn finish(mut self) {
        let result = self.cleanup();
        if let Err(e) = result {
            panic!("cleanup failed: {e}");
        }
    }

    fn teardown(&mut self) {
        for n in self.nodes.iter_mut().rev() {
            n.stop();
        }
        for n in &self.nodes {
            let _ = Command::new("ip").args(["netns", "del", &n.netns]).output();
            let _ = std::fs::remove_dir_all(&n.run_dir);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("cluster cleanup: {e}");
        }
        self.teardown();
    }
}

/// Each node's containers get a cgroup parent of their own (named like its run dir): a shared
/// parent would race with the removal of empty parents by another node's daemon.
fn cgroup_parent(run_dir: &std::path::Path) -> String {
    run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dash-e2e".into())
}
