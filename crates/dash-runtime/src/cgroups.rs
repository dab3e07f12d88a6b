//! container_runtime: where container cgroups go, how to read them, how to clean them up.
//!
//! Containers go beneath the daemon's own cgroup, never at a hierarchy root where the daemon
//! isn't (ARCHITECTURE.md). On this kind of host only the memory controller is nested:
//!
//! ```text
//!   /proc/self/cgroup   4:memory:/process_api/c1c0…     ← the anchor ($ME)
//!                       1:cpu:/   …   0::/              ← every other hierarchy at its root
//!
//!   runc, cgroupsPath "dash/<id>"        (relative: nested under the caller's own cgroup
//!                                         in each hierarchy, cgroup2 included)
//!     memory/process_api/c1c0…/dash/<id>   cpu/dash/<id>   …   unified/dash/<id>
//!   crun, cgroupsPath "$ME/dash/<id>"    (absolute: crun takes a relative one from each
//!                                         hierarchy's root, outside $ME)
//!     memory/process_api/c1c0…/dash/<id>   cpu/process_api/c1c0…/dash/<id>   …
//! ```
//! `runc delete` / `crun delete` remove only the leaf; the parents they created stay in every
//! hierarchy. [`OwnCgroups::remove_container`] removes the leaf and then, deepest first, every
//! empty parent below the daemon's own cgroup of that hierarchy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::container::RuntimeKind;
use crate::error::RuntimeError;

/// One mounted cgroup hierarchy and where this process sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Mount point, e.g. /sys/fs/cgroup/memory.
    pub mount: PathBuf,
    /// Our cgroup relative to the mount's root, starting with '/'.
    pub own: String,
    /// v1 controllers (e.g. ["memory"], ["name=systemd"]); empty for cgroup2.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The daemon's own cgroups, read once at start.
#[derive(Debug, Clone)]
pub(crate) struct OwnCgroups {
    pub hierarchies: Vec<Hierarchy>,
    /// The own memory cgroup (v1), or the own cgroup2 path on a pure v2 host.
    pub anchor: String,
}

impl OwnCgroups {
    /// Reads /proc/self/cgroup and /proc/self/mountinfo.
    pub(crate) fn read() -> Result<Self, RuntimeError> {
        let cgroup_path = Path::new("/proc/self/cgroup");
        let proc_cgroup = fs::read_to_string(cgroup_path)
            .map_err(|e| RuntimeError::io("reading /proc/self/cgroup", e))?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| RuntimeError::io("reading /proc/self/mountinfo", e))?;
        Self::parse(&proc_cgroup, &mountinfo).map_err(|reason| RuntimeError::Parse {
            path: cgroup_path.to_path_buf(),
            reason,
        })
    }

    /// Pure part of [`OwnCgroups::read`].
    pub(crate) fn parse(proc_cgroup: &str, mountinfo: &str) -> Result<Self, String> {
        let mounts = cgroup_mounts(mountinfo);
        let mut hierarchies = Vec::new();
        let mut anchor_v1 = None;
        let mut anchor_v2 = None;
        for line in proc_cgroup.lines().filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("malformed line {line:?}"));
            };
            let controllers: Vec<String> = ctrl
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let found = mounts.iter().find(|m| {
                if controllers.is_empty() {
                    m.v2
                } else {
                    !m.v2 && controllers.iter().all(|c| m.options.iter().any(|o| o == c))
                }
            });
            let Some(m) = found else {
                // A hierarchy that is not mounted here: nothing to create or clean.
                continue;
            };
            // In a cgroup namespace the mount root may be below '/'.
            let own = if m.root == "/" {
                path.to_owned()
            } else if let Some(rest) = path.strip_prefix(m.root.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    format!("/{}", rest.trim_start_matches('/'))
                } else {
                    continue;
                }
            } else {
                continue;
            };
            if controllers.iter().any(|c| c == "memory") {
                anchor_v1 = Some(own.clone());
            }
            if controllers.is_empty() {
                anchor_v2 = Some(own.clone());
            }
            hierarchies.push(Hierarchy {
                mount: m.mount_point.clone(),
                own,
                controllers,
            });
        }
        let anchor = anchor_v1
            .or(anchor_v2)
            .ok_or_else(|| "no memory controller and no cgroup2 hierarchy mounted".to_owned())?;
        Ok(OwnCgroups {
            hierarchies,
            anchor,
        })
    }

    /// Whether any cgroup v1 hierarchy is mounted (pure v1 or hybrid).
    pub(crate) fn has_v1(&self) -> bool {
        self.hierarchies.iter().any(|h| !h.is_v2())
    }

    /// crun 1.8 refuses "hybrid mode": v1 hierarchies plus a cgroup2 at
    /// /sys/fs/cgroup/unified that holds controllers (hugetlb here).
    pub(crate) fn crun_needs_hybrid_workaround(&self) -> bool {
        self.has_v1()
            && self.hierarchies.iter().any(|h| {
                h.is_v2()
                    && h.mount == Path::new("/sys/fs/cgroup/unified")
                    && fs::read_to_string(h.mount.join("cgroup.controllers"))
                        .map(|s| !s.trim().is_empty())
                        .unwrap_or(false)
            })
    }

    /// Takes the kernel's cgroup-migration lock once, by "moving" this process into the v1
    /// cgroup it is already in (nothing changes). Why: the first migration after a quiet
    /// spell waits for an RCU grace period (`cgroup_threadgroup_rwsem`, ≈ 5–25 ms here),
    /// and one right after it does not (≈ 0.1 ms). Done as a replica's start begins, the wait
    /// overlaps Dash's own work (address, network, overlay, monitor) instead of coming on top
    /// of it inside the runtime's move of the container's init. On pure cgroup2 it is skipped:
    /// the daemon's cgroup has children there, so it may not take processes.
    pub(crate) fn prime_migration(&self) -> io::Result<()> {
        let Some(h) = self.hierarchies.iter().find(|h| !h.is_v2()) else {
            return Ok(());
        };
        fs::write(
            under(&h.mount, &h.own).join("cgroup.procs"),
            std::process::id().to_string(),
        )
    }

    /// The `linux.cgroupsPath` for a container: runc nests a relative path under the caller's
    /// own cgroup by itself; crun (and anything on pure cgroup2) needs the absolute path.
    pub(crate) fn cgroups_path(&self, kind: RuntimeKind, parent: &str, id: &str) -> PathBuf {
        if kind == RuntimeKind::Runc && self.has_v1() {
            Path::new(parent).join(id)
        } else {
            Path::new(&self.anchor).join(parent).join(id)
        }
    }

    /// The container's cgroup dir in hierarchy `h`, as the runtime of `kind` creates it.
    fn container_dir(&self, h: &Hierarchy, kind: RuntimeKind, parent: &str, id: &str) -> PathBuf {
        let base = if kind == RuntimeKind::Runc && self.has_v1() {
            &h.own
        } else {
            &self.anchor
        };
        under(&h.mount, base).join(parent).join(id)
    }

    /// The container's cgroup dir in the hierarchy of `controller` (v1), or in cgroup2.
    pub(crate) fn controller_dir(
        &self,
        kind: RuntimeKind,
        controller: &str,
        parent: &str,
        id: &str,
    ) -> Option<PathBuf> {
        let h = self
            .hierarchies
            .iter()
            .find(|h| h.has(controller))
            .or_else(|| self.hierarchies.iter().find(|h| h.is_v2()))?;
        Some(self.container_dir(h, kind, parent, id))
    }

    /// Removes the container's cgroup dirs in every hierarchy (for either runtime's layout),
    /// then its empty parents, deepest first, never at or above our own cgroup. Idempotent.
    pub(crate) fn remove_container(&self, parent: &str, id: &str) -> io::Result<()> {
        let mut first_err = None;
        for h in &self.hierarchies {
            let own_dir = under(&h.mount, &h.own);
            let mut bases = vec![h.own.clone()];
            if self.anchor != h.own {
                bases.push(self.anchor.clone());
            }
            for base in bases {
                let leaf = under(&h.mount, &base).join(parent).join(id);
                if let Err(e) = rmdir_retry(&leaf) {
                    first_err.get_or_insert(e);
                    continue;
                }
                // Parents the runtime created: `<base>/<parent…>` and, for crun's absolute
                // path, the copy of the anchor chain in hierarchies where we sit higher up.
                let stop = if leaf.starts_with(&own_dir) {
                    own_dir.clone()
                } else {
                    under(&h.mount, &base)
                };
                let mut dir = leaf.parent();
                while let Some(d) = dir {
                    if d == stop || !d.starts_with(&stop) {
                        break;
                    }
                    match fs::remove_dir(d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        // Not empty (another container) or busy: stop climbing.
                        Err(_) => break,
                    }
                    dir = d.parent();
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Memory in use (without inactive page cache, like `docker stats`) and CPU time.
    pub(crate) fn stats(
        &self,
        kind: RuntimeKind,
        parent: &str,
        id: &str,
    ) -> Result<(u64, u64), RuntimeError> {
        let mem_dir = self
            .controller_dir(kind, "memory", parent, id)
            .ok_or_else(|| no_controller("memory"))?;
        let cpu_dir = self
            .controller_dir(kind, "cpuacct", parent, id)
            .ok_or_else(|| no_controller("cpuacct"))?;
        let v2 = !mem_dir.join("memory.usage_in_bytes").exists();
        let (usage_file, inactive_key) = if v2 {
            ("memory.current", "inactive_file")
        } else {
            ("memory.usage_in_bytes", "total_inactive_file")
        };
        let usage = read_u64(&mem_dir.join(usage_file))?;
        let stat_path = mem_dir.join("memory.stat");
        let stat = fs::read_to_string(&stat_path)
            .map_err(|e| RuntimeError::io(format!("reading {}", stat_path.display()), e))?;
        let inactive = stat_value(&stat, inactive_key).unwrap_or(0);
        let cpu_ns = if cpu_dir.join("cpuacct.usage").exists() {
            read_u64(&cpu_dir.join("cpuacct.usage"))?
        } else {
            let path = cpu_dir.join("cpu.stat");
            let text = fs::read_to_string(&path)
                .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))?;
            stat_value(&text, "usage_usec")
                .ok_or_else(|| RuntimeError::Parse {
                    path,
                    reason: "no usage_usec".to_owned(),
                })?
                .saturating_mul(1000)
        };
        Ok((usage.saturating_sub(inactive), cpu_ns))
    }
}

/// What a container's memory cgroup says about its limit and the kernel's OOM kills in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryFacts {
    /// The hard limit; None when unlimited.
    pub limit_bytes: Option<u64>,
    /// Processes the kernel's OOM killer killed in the cgroup since it was made.
    pub oom_kills: u64,
}

impl MemoryFacts {
    /// From the v1 files (`memory.limit_in_bytes`, `memory.oom_control`) or the v2 ones
    /// (`memory.max`, `memory.events`): both have an `oom_kill N` line (v1 since Linux 4.13).
    /// v1 says "unlimited" with a huge page-rounded number, v2 with "max".
    pub(crate) fn parse(limit: &str, events: &str) -> MemoryFacts {
        let limit = limit.trim();
        let limit_bytes = match limit.parse::<u64>() {
            // v1's unlimited is i64::MAX rounded down to a page.
            Ok(n) if n < (1 << 62) => Some(n),
            _ => None,
        };
        MemoryFacts {
            limit_bytes,
            oom_kills: stat_value(events, "oom_kill").unwrap_or(0),
        }
    }
}

impl OwnCgroups {
    /// The container's memory limit and OOM kills; readable until its cgroup is removed, so
    /// also just after its init exited (the runtime removes it on delete).
    pub(crate) fn memory_facts(
        &self,
        kind: RuntimeKind,
        parent: &str,
        id: &str,
    ) -> Result<MemoryFacts, RuntimeError> {
        let dir = self
            .controller_dir(kind, "memory", parent, id)
            .ok_or_else(|| no_controller("memory"))?;
        let (limit_file, events_file) = if dir.join("memory.limit_in_bytes").exists() {
            ("memory.limit_in_bytes", "memory.oom_control")
        } else {
            ("memory.max", "memory.events")
        };
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path)
                .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))
        };
        Ok(MemoryFacts::parse(&read(limit_file)?, &read(events_file)?))
    }
}

fn no_controller(name: &str) -> RuntimeError {
    RuntimeError::Parse {
        path: PathBuf::from("/proc/self/cgroup"),
        reason: format!("no {name} hierarchy mounted"),
    }
}

/// `mount` joined with a cgroup path that starts with '/'.
fn under(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// rmdir that tolerates a missing dir and waits out EBUSY while the last tasks exit.
fn rmdir_retry(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "removed cgroup");
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("rmdir {}: {e}", dir.display()),
                ));
            }
        }
    }
}

fn read_u64(path: &Path) -> Result<u64, RuntimeError> {
    let text = fs::read_to_string(path)
        .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), e))?;
    text.trim().parse().map_err(|_| RuntimeError::Parse {
        path: path.to_path_buf(),
        reason: format!("not a number: {:?}", text.trim()),
    })
}

/// The value of `key` in a flat-keyed cgroup file ("key value" lines).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

struct CgroupMount {
    root: String,
    mount_point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

/// The cgroup and cgroup2 mounts of a mountinfo text, those under /sys/fs/cgroup first.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out: Vec<CgroupMount> = mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let _source = post.next()?;
            let superopts = post.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup" => false,
                "cgroup2" => true,
                _ => return None,
            };
            Some(CgroupMount {
                root: crate::rootfs::unescape_octal(pre.get(3)?),
                mount_point: PathBuf::from(crate::rootfs::unescape_octal(pre.get(4)?)),
                v2,
                options: superopts.split(',').map(str::to_owned).collect(),
            })
        })
        .collect();
    out.sort_by_key(|m| !m.mount_point.starts_with("/sys/fs/cgroup"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/c1c0\n\
                               2:cpuacct:/\n1:cpu:/\n0::/\n";
    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn hybrid() -> OwnCgroups {
        OwnCgroups::parse(PROC_CGROUP, MOUNTINFO).unwrap()
    }

    #[test]
    fn parses_hybrid_layout() {
        let cg = hybrid();
        assert_eq!(cg.anchor, "/process_api/c1c0");
        assert_eq!(cg.hierarchies.len(), 6);
        let mem = cg.hierarchies.iter().find(|h| h.has("memory")).unwrap();
        assert_eq!(mem.mount, Path::new("/sys/fs/cgroup/memory"));
        let v2 = cg.hierarchies.iter().find(|h| h.is_v2()).unwrap();
        assert_eq!(v2.mount, Path::new("/sys/fs/cgroup/unified"));
        assert!(cg.has_v1());
    }

    #[test]
    fn cgroups_path_per_runtime() {
        let cg = hybrid();
        assert_eq!(
            cg.cgroups_path(RuntimeKind::Runc, "dash", "c1"),
            Path::new("dash/c1")
        );
        assert_eq!(
            cg.cgroups_path(RuntimeKind::Crun, "dash", "c1"),
            Path::new("/process_api/c1c0/dash/c1")
        );
    }

    #[test]
    fn controller_dirs_follow_the_runtime_layout() {
        let cg = hybrid();
        let runc = |c| {
            cg.controller_dir(RuntimeKind::Runc, c, "dash", "c1")
                .unwrap()
        };
        let crun = |c| {
            cg.controller_dir(RuntimeKind::Crun, c, "dash", "c1")
                .unwrap()
        };
        assert_eq!(
            runc("memory"),
            Path::new("/sys/fs/cgroup/memory/process_api/c1c0/dash/c1")
        );
        assert_eq!(runc("cpuacct"), Path::new("/sys/fs/cgroup/cpuacct/dash/c1"));
        assert_eq!(
            crun("cpuacct"),
            Path::new("/sys/fs/cgroup/cpuacct/process_api/c1c0/dash/c1")
        );
    }

    #[test]
    fn pure_v2_uses_absolute_paths() {
        let cg = OwnCgroups::parse(
            "0::/system.slice/dash.service\n",
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .unwrap();
        assert!(!cg.has_v1());
        assert_eq!(
            cg.cgroups_path(RuntimeKind::Runc, "dash", "c1"),
            Path::new("/system.slice/dash.service/dash/c1")
        );
        assert_eq!(
            cg.controller_dir(RuntimeKind::Runc, "memory", "dash", "c1")
                .unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/dash.service/dash/c1")
        );
    }

    #[test]
    fn cgroup_namespace_root_is_stripped() {
        let cg = OwnCgroups::parse(
            "4:memory:/outer/inner\n",
            "35 31 0:32 /outer /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        assert_eq!(cg.anchor, "/inner");
    }

    #[test]
    fn malformed_and_missing() {
        assert!(OwnCgroups::parse("garbage\n", MOUNTINFO).is_err());
        assert!(OwnCgroups::parse("1:cpu:/\n", MOUNTINFO).is_err());
    }

    #[test]
    fn stat_values() {
        let text = "cache 10\ntotal_inactive_file 4096\nusage_usec 17\n";
        assert_eq!(stat_value(text, "total_inactive_file"), Some(4096));
        assert_eq!(stat_value(text, "usage_usec"), Some(17));
        assert_eq!(stat_value(text, "missing"), None);
    }

    #[test]
    fn memory_facts_of_v1_and_v2() {
        let v1 = MemoryFacts::parse("8388608\n", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        assert_eq!(v1.limit_bytes, Some(8 << 20));
        assert_eq!(v1.oom_kills, 2);
        let unlimited = MemoryFacts::parse("9223372036854771712\n", "oom_kill_disable 0\n");
        assert_eq!(unlimited.limit_bytes, None);
        assert_eq!(unlimited.oom_kills, 0);
        let v2 = MemoryFacts::parse("max\n", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        assert_eq!(v2.limit_bytes, None);
        assert_eq!(v2.oom_kills, 1);
        assert_eq!(MemoryFacts::parse("", "").limit_bytes, None);
    }

    #[test]
    fn removal_climbs_only_below_own_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = tmp.path().join("memory");
        let cpu = tmp.path().join("cpu");
        // runc layout in cpu, crun layout (anchor copied) in cpu, plus a sibling to keep.
        for d in [
            mem.join("me/dash/c1"),
            mem.join("me/dash/other"),
            cpu.join("dash/c1"),
            cpu.join("me/dash/c1"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        let cg = OwnCgroups {
            hierarchies: vec![
                Hierarchy {
                    mount: mem.clone(),
                    own: "/me".into(),
                    controllers: vec!["memory".into()],
                },
                Hierarchy {
                    mount: cpu.clone(),
                    own: "/".into(),
                    controllers: vec!["cpu".into()],
                },
            ],
            anchor: "/me".into(),
        };
        cg.remove_container("dash", "c1").unwrap();
        assert!(!mem.join("me/dash/c1").exists());
        assert!(mem.join("me/dash/other").exists(), "sibling kept");
        assert!(mem.join("me").exists());
        assert!(!cpu.join("dash").exists());
        assert!(!cpu.join("me").exists(), "copied anchor chain removed");
        assert!(cpu.exists(), "hierarchy root kept");
        // Idempotent.
        cg.remove_container("dash", "c1").unwrap();
    }
}
