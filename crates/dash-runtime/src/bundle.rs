//! container_runtime: the OCI bundle of a container (`config.json` and the files it binds in).
//!
//! ```text
//!   <state_dir>/<id>/
//!     config.json    built here from ContainerSpec with oci-spec types
//!     rootfs/        overlay mount point (rootfs.rs)      upper/ work/   its layers
//!     hosts hostname resolv.conf                          bind-mounted over /etc/…
//!     pid exit log log.1 monitor.pid monitor.log runtime started   (container.rs, monitor)
//! ```
//! The spec follows `runc spec` (masked and read-only paths, default mounts, namespaces
//! without a cgroup namespace) with the differences a service container needs: no terminal,
//! a writable root, the containerd/docker default capability set and an RLIMIT_NOFILE that
//! the host allows.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder, get_default_maskedpaths,
    get_default_mounts, get_default_readonly_paths,
};

use crate::container::ContainerSpec;
use crate::error::RuntimeError;

/// CFS period for `cpu_millis`: 100 ms, so 1000 millis = a quota of 100 000 µs (one CPU).
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses a CFS quota below 1 ms.
const CPU_QUOTA_MIN_US: i64 = 1_000;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the spec needs beyond the [`ContainerSpec`].
pub(crate) struct BundleParams<'a> {
    /// Absolute overlay mount point.
    pub rootfs: &'a Path,
    /// Absolute bundle dir, holding the files bound over /etc/hosts and friends.
    pub bundle: &'a Path,
    /// `linux.cgroupsPath` as the chosen runtime wants it (cgroups.rs).
    pub cgroups_path: PathBuf,
    /// The current hard RLIMIT_NOFILE of the daemon.
    pub nofile_hard: u64,
    /// Where the container's secret and config files are (`crate::files`).
    pub files_dir: &'a Path,
}

/// The default capability set (`dash_core::spec::DEFAULT_CAPABILITIES`: containerd's and
/// Docker's without CAP_NET_RAW).
pub(crate) fn default_capabilities() -> HashSet<Capability> {
    capabilities(dash_core::spec::DEFAULT_CAPABILITIES.iter().copied()).unwrap_or_default()
}

/// `CAP_…` names as the spec's capabilities; the first name that is none is the error.
fn capabilities<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<HashSet<Capability>, String> {
    names
        .into_iter()
        .map(|n| {
            serde_json::from_value(serde_json::Value::String(n.to_string()))
                .map_err(|_| format!("{n:?} is not a capability"))
        })
        .collect()
}

/// Checks what the runtime would otherwise reject with a less clear message.
pub(crate) fn validate(spec: &ContainerSpec) -> Result<(), RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidSpec {
        id: spec.id.clone(),
        reason,
    };
    if spec.args.is_empty() {
        return Err(invalid("args is empty: give the command to run".into()));
    }
    if !spec.cwd.starts_with('/') {
        return Err(invalid(format!(
            "cwd {:?} is not absolute: use a path starting with /",
            spec.cwd
        )));
    }
    if spec.layer_dirs.is_empty() {
        return Err(invalid(
            "no layer dirs: the root file system needs one".into(),
        ));
    }
    if let Some(bad) = spec.env.iter().find(|e| !e.contains('=')) {
        return Err(invalid(format!("env entry {bad:?} is not NAME=value")));
    }
    if spec.memory_bytes.is_some_and(|m| m > i64::MAX as u64) {
        return Err(invalid("memory_bytes is too large".into()));
    }
    Ok(())
}

/// Builds the OCI runtime spec of a container.
pub(crate) fn build_spec(spec: &ContainerSpec, p: &BundleParams<'_>) -> Result<Spec, RuntimeError> {
    let err = |source| RuntimeError::Spec {
        id: spec.id.clone(),
        source,
    };

    let caps = match &spec.capabilities {
        None => default_capabilities(),
        Some(list) => capabilities(list.iter().map(String::as_str)).map_err(|reason| {
            RuntimeError::InvalidSpec {
                id: spec.id.clone(),
                reason,
            }
        })?,
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(err)?;

    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }

    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(p.nofile_hard)
        .soft(p.nofile_hard)
        .build()
        .map_err(err)?;

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(err)?,
        )
        .args(spec.args.clone())
        .env(env)
        .cwd(spec.cwd.clone())
        .capabilities(capabilities)
        .rlimits(vec![nofile])
        .no_new_privileges(true)
        .build()
        .map_err(err)?;

    let root = RootBuilder::default()
        .path(p.rootfs.to_path_buf())
        .readonly(false)
        .build()
        .map_err(err)?;

    let mut mounts: Vec<Mount> = get_default_mounts();
    for name in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from("/etc").join(name))
                .typ("bind")
                .source(p.bundle.join(name))
                .options(vec!["rbind".to_owned(), "rprivate".to_owned()])
                .build()
                .map_err(err)?,
        );
    }

    for (dest, source) in crate::files::binds(p.files_dir, &spec.files) {
        mounts.push(
            MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(source)
                .options(
                    ["rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()
                .map_err(err)?,
        );
    }

    let mut namespaces = Vec::new();
    let mut own = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if spec.userns.is_some() {
        own.push(LinuxNamespaceType::User);
    }
    for typ in own {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .map_err(err)?,
        );
    }
    let mut net = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
    if let Some(path) = &spec.netns_path {
        net = net.path(path.clone());
    }
    namespaces.push(net.build().map_err(err)?);

    // Deny every device, then the runtime adds its default allow list (null, zero, tty, …).
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(err)?;
    let mut resources = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if let Some(limit) = spec.memory_bytes {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .map_err(err)?,
        );
    }
    if let Some(millis) = spec.cpu_millis {
        let quota = (i64::from(millis) * CPU_PERIOD_US as i64 / 1000).max(CPU_QUOTA_MIN_US);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()
                .map_err(err)?,
        );
    }

    let mut linux = LinuxBuilder::default();
    if let Some(map) = spec.userns {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(map.host_id)
            .size(map.size)
            .build()
            .map_err(err)?;
        linux = linux
            .uid_mappings(vec![mapping])
            .gid_mappings(vec![mapping]);
    }
    let mut linux = linux
        .namespaces(namespaces)
        .resources(resources.build().map_err(err)?)
        .cgroups_path(p.cgroups_path.clone())
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths());
    if let Some(json) = &spec.seccomp {
        let seccomp: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_str(json).map_err(|e| RuntimeError::InvalidSpec {
                id: spec.id.clone(),
                reason: format!("seccomp: {e}"),
            })?;
        linux = linux.seccomp(seccomp);
    }
    let linux = linux.build().map_err(err)?;

    SpecBuilder::default()
        .version("1.0.2-dev")
        .root(root)
        .mounts(mounts)
        .process(process)
        .hostname(spec.hostname.clone())
        .linux(linux)
        .build()
        .map_err(err)
}

/// Writes config.json and the files bound over /etc/hosts, /etc/hostname, /etc/resolv.conf.
pub(crate) fn write(
    spec: &ContainerSpec,
    p: &BundleParams<'_>,
    host_resolv_conf: &str,
) -> Result<(), RuntimeError> {
    let oci = build_spec(spec, p)?;
    let write_file = |name: &str, text: String| {
        let path = p.bundle.join(name);
        fs::write(&path, text)
            .map_err(|e| RuntimeError::io(format!("writing {}", path.display()), e))
    };
    write_file("hosts", hosts_file(&spec.hostname))?;
    write_file("hostname", format!("{}\n", spec.hostname))?;
    write_file(
        "resolv.conf",
        match spec.dns {
            Some(server) => cluster_resolv_conf(server),
            None => resolv_conf(host_resolv_conf),
        },
    )?;
    let config = p.bundle.join("config.json");
    oci.save(&config).map_err(|source| RuntimeError::Spec {
        id: spec.id.clone(),
        source,
    })
}

fn hosts_file(hostname: &str) -> String {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !hostname.is_empty() && hostname != "localhost" {
        text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    text
}

/// The cluster's DNS as the only name server; short names are looked up under `dash` first
/// (`api` → `api.dash`).
fn cluster_resolv_conf(server: std::net::IpAddr) -> String {
    format!(
        "# written by dash: the cluster's DNS\nnameserver {server}\nsearch dash\noptions ndots:1\n"
    )
}

/// The host's resolv.conf without loopback name servers (a resolver on the host's 127.0.0.x
/// is unreachable from the container's network namespace); may end up without any server.
fn resolv_conf(host: &str) -> String {
    let mut out = String::from("# written by dash\n");
    for line in host.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let addr = words.next().unwrap_or("");
                let loopback = addr
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(true);
                if !loopback {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Some("search") | Some("domain") | Some("options") => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            layer_dirs: vec![PathBuf::from("/layers/1")],
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["A=1".into()],
            cwd: "/".into(),
            hostname: "web-1".into(),
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
            netns_path: None,
            log_max_bytes: 0,
            dns: None,
            capabilities: None,
            seccomp: None,
            files: Vec::new(),
            userns: None,
        }
    }

    fn params() -> BundleParams<'static> {
        BundleParams {
            rootfs: Path::new("/b/c1/rootfs"),
            bundle: Path::new("/b/c1"),
            cgroups_path: PathBuf::from("dash/c1"),
            nofile_hard: 20000,
            files_dir: Path::new("/run/dash/runtime/files/c1"),
        }
    }

    #[test]
    fn the_service_s_capabilities_and_seccomp_filter_are_written() {
        let filter = dash_core::spec::Security::default();
        let seccomp =
            dash_core::seccomp::default_profile().resolve(&filter.capabilities(), "amd64", (6, 1));
        let c = ContainerSpec {
            capabilities: Some(vec!["CAP_NET_RAW".into(), "CAP_KILL".into()]),
            seccomp: Some(serde_json::to_string(&seccomp).unwrap()),
            ..spec()
        };
        let json = serde_json::to_value(build_spec(&c, &params()).unwrap()).unwrap();
        let mut caps: Vec<&str> = json["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        caps.sort();
        assert_eq!(caps, ["CAP_KILL", "CAP_NET_RAW"]);
        let sc = &json["linux"]["seccomp"];
        assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(sc["defaultErrnoRet"], 1);
        assert_eq!(sc["architectures"][0], "SCMP_ARCH_X86_64");
        assert!(sc["syscalls"].as_array().unwrap().len() > 10);
        // A name that is no capability, or a filter that is no filter: refused.
        let bad = ContainerSpec {
            capabilities: Some(vec!["CAP_FLY".into()]),
            ..spec()
        };
        assert!(matches!(
            build_spec(&bad, &params()),
            Err(RuntimeError::InvalidSpec { .. })
        ));
        let bad = ContainerSpec {
            seccomp: Some("{\"defaultAction\": 7}".into()),
            ..spec()
        };
        assert!(matches!(
            build_spec(&bad, &params()),
            Err(RuntimeError::InvalidSpec { .. })
        ));
    }

    #[test]
    fn secrets_and_configs_are_bound_read_only_from_the_files_tmpfs() {
        use crate::files::ContainerFile;
        let file = |path: &str, secret| ContainerFile {
            path: path.into(),
            data: b"hunter2".to_vec(),
            uid: 0,
            gid: 0,
            mode: 0o400,
            secret,
        };
        let c = ContainerSpec {
            files: vec![
                file("/run/secrets/pw", true),
                file("/etc/app.conf", false),
                file("/run/secrets/key", true),
            ],
            ..spec()
        };
        let json = serde_json::to_value(build_spec(&c, &params()).unwrap()).unwrap();
        let binds: Vec<(String, String, bool)> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["source"].as_str().is_some_and(|s| s.contains("/files/")))
            .map(|m| {
                let ro = m["options"].as_array().unwrap().iter().any(|o| o == "ro");
                (
                    m["destination"].as_str().unwrap().to_string(),
                    m["source"].as_str().unwrap().to_string(),
                    ro,
                )
            })
            .collect();
        assert_eq!(
            binds,
            [
                (
                    "/run/secrets".into(),
                    "/run/dash/runtime/files/c1/secrets".into(),
                    true
                ),
                (
                    "/etc/app.conf".into(),
                    "/run/dash/runtime/files/c1/configs/1".into(),
                    true
                ),
            ]
        );
        // The value is in no spec and no log line.
        assert!(!json.to_string().contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn spec_has_what_a_service_needs() {
        let oci = build_spec(&spec(), &params()).unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["root"]["readonly"], false);
        assert_eq!(json["root"]["path"], "/b/c1/rootfs");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["rlimits"][0]["hard"], 20000);
        assert_eq!(json["process"]["env"][0], DEFAULT_PATH);
        assert_eq!(json["hostname"], "web-1");
        assert_eq!(json["linux"]["cgroupsPath"], "dash/c1");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["resources"]["cpu"]["period"], 100_000);
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), 13);
        assert!(bounding.contains(&"CAP_DAC_OVERRIDE".into()));
        assert!(
            !bounding.contains(&"CAP_NET_RAW".into()),
            "not in the default set"
        );
        assert!(
            json["linux"].get("seccomp").is_none(),
            "no filter unless given"
        );
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/hostname",
        ] {
            assert!(dests.contains(&d), "{d} missing from {dests:?}");
        }
        assert!(
            json["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/kcore".into())
        );
        assert!(
            json["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .contains(&"/proc/sys".into())
        );
    }

    #[test]
    fn netns_path_is_joined_and_limits_are_optional() {
        let mut s = spec();
        s.netns_path = Some(PathBuf::from("/run/netns/n1"));
        s.memory_bytes = None;
        s.cpu_millis = Some(1);
        let json = serde_json::to_value(build_spec(&s, &params()).unwrap()).unwrap();
        let net = json["linux"]["namespaces"][4].clone();
        assert_eq!(net["path"], "/run/netns/n1");
        assert!(json["linux"]["resources"]["memory"].is_null());
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], CPU_QUOTA_MIN_US);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut s = spec();
        s.args.clear();
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("args is empty")
        );
        let mut s = spec();
        s.cwd = "rel".into();
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("not absolute")
        );
        let mut s = spec();
        s.env.push("NOEQUALS".into());
        assert!(validate(&s).unwrap_err().to_string().contains("NAME=value"));
        assert!(validate(&spec()).is_ok());
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n\
                    search example.org\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "# written by dash\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
        );
        assert_eq!(resolv_conf(""), "# written by dash\n");
    }

    #[test]
    fn hosts_names_the_container() {
        assert!(hosts_file("web-1").contains("127.0.1.1\tweb-1\n"));
        assert!(!hosts_file("").contains("127.0.1.1"));
    }
}
