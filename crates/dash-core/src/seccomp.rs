//! seccomp profiles: Dash's default, and profiles a service brings (the JSON format Docker and
//! podman read: the OCI runtime spec's `linux.seccomp` plus `archMap` and per-rule `includes` /
//! `excludes` by capability, architecture and kernel version).
//!
//! A profile is resolved for one container ([`Profile::resolve`]): rules whose conditions the
//! container's capabilities, the node's architecture and kernel do not meet are dropped, what
//! is left is what the OCI runtime gets in `config.json` ([`OciSeccomp`]).
//!
//! The default ([`default_profile`]) follows the policy of Docker's and containerd's default
//! profiles: deny (EPERM) unless listed; the everyday system calls allowed; those that reach
//! beyond the container (mount, namespaces, kernel modules, keyrings, bpf, clock, reboot, …)
//! allowed only when the container holds the capability they need; `clone` without namespace
//! flags, `socket` for every family but AF_VSOCK, and a few `personality` values. One choice
//! is stricter than Docker's: `ptrace` and `process_vm_*` need CAP_SYS_PTRACE (Docker allows
//! them on kernels from 4.8 on), so a replica cannot trace another process (decision 0014).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The largest profile a service may bring (JSON text).
pub const MAX_PROFILE_BYTES: usize = 256 * 1024;

/// What the filter does with a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    ScmpActKill,
    ScmpActKillThread,
    ScmpActKillProcess,
    ScmpActTrap,
    ScmpActErrno,
    ScmpActTrace,
    ScmpActLog,
    ScmpActAllow,
}

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Op {
    ScmpCmpNe,
    ScmpCmpLt,
    ScmpCmpLe,
    ScmpCmpEq,
    ScmpCmpGe,
    ScmpCmpGt,
    ScmpCmpMaskedEq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_two: Option<u64>,
    pub op: Op,
}

/// When a rule applies (`includes`: all of it must hold) or does not (`excludes`: any of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Go's architecture names (`amd64`, `arm64`, …), as Docker writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    /// `major.minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

impl Condition {
    fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Condition::is_empty")]
    pub includes: Condition,
    #[serde(default, skip_serializing_if = "Condition::is_empty")]
    pub excludes: Condition,
    /// Free text, as Docker's profiles carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchGroup {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// OCI's form: the architectures, whatever the node's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// Docker's form: per native architecture, the ones its binaries may also use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchGroup>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// `linux.seccomp` of an OCI runtime spec (the subset Dash writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciSeccomp {
    pub default_action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    pub architectures: Vec<String>,
    pub syscalls: Vec<OciSyscall>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciSyscall {
    pub names: Vec<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
}

/// Reads a profile a service brings and checks what serde does not: at most
/// [`MAX_PROFILE_BYTES`], system call names, capability names, argument indexes, kernel
/// versions. The error names the place and the fix.
pub fn parse_profile(json: &str) -> Result<Profile, String> {
    if json.len() > MAX_PROFILE_BYTES {
        return Err(format!(
            "{} bytes, more than {} KiB: a profile lists system calls, not data",
            json.len(),
            MAX_PROFILE_BYTES / 1024
        ));
    }
    if json.trim().is_empty() {
        return Err(
            "the file is empty: a profile is a JSON object with defaultAction and syscalls".into(),
        );
    }
    let p: Profile =
        serde_json::from_str(json).map_err(|e| format!("not a seccomp profile: {e}"))?;
    for (i, rule) in p.syscalls.iter().enumerate() {
        let at = |what: String| format!("syscalls[{i}]: {what}");
        if rule.names.is_empty() {
            return Err(at(
                "names is empty: list the system calls the rule is about".into(),
            ));
        }
        if let Some(bad) = rule.names.iter().find(|n| !is_syscall_name(n)) {
            return Err(at(format!(
                "{bad:?} is not a system call name (lower-case letters, digits and _)"
            )));
        }
        if let Some(a) = rule.args.iter().find(|a| a.index > 5) {
            return Err(at(format!(
                "args index {}: system calls have arguments 0 to 5",
                a.index
            )));
        }
        for c in [&rule.includes, &rule.excludes] {
            if let Some(bad) = c.caps.iter().find(|c| !crate::spec::is_capability(c)) {
                return Err(at(format!(
                    "{bad:?} is not a capability, e.g. CAP_SYS_ADMIN"
                )));
            }
            if let Some(k) = &c.min_kernel
                && parse_kernel(k).is_none()
            {
                return Err(at(format!(
                    "minKernel {k:?}: use major.minor, e.g. \"5.10\""
                )));
            }
        }
    }
    Ok(p)
}

fn is_syscall_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `major.minor[.patch…][-suffix]` → (major, minor).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Go's name of the architecture Rust calls `arch` (`std::env::consts::ARCH`).
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The seccomp architecture of a Go architecture name.
fn scmp_arch(go: &str) -> Option<&'static str> {
    Some(match go {
        "amd64" => "SCMP_ARCH_X86_64",
        "386" => "SCMP_ARCH_X86",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => return None,
    })
}

impl Profile {
    /// The filter for one container: `caps` its capabilities (`CAP_…`), `arch` the node's
    /// (Go's name, see [`go_arch`]), `kernel` the node's (major, minor).
    pub fn resolve(&self, caps: &BTreeSet<String>, arch: &str, kernel: (u32, u32)) -> OciSeccomp {
        let meets = |c: &Condition, all: bool| -> bool {
            let cap = |x: &String| caps.contains(x);
            let ar = |x: &String| x == arch;
            let kern = c
                .min_kernel
                .as_deref()
                .and_then(parse_kernel)
                .map(|k| kernel >= k);
            if all {
                c.caps.iter().all(cap)
                    && (c.arches.is_empty() || c.arches.iter().any(ar))
                    && kern.unwrap_or(true)
            } else {
                c.caps.iter().any(cap) || c.arches.iter().any(ar) || kern.unwrap_or(false)
            }
        };
        let syscalls = self
            .syscalls
            .iter()
            .filter(|r| meets(&r.includes, true) && !meets(&r.excludes, false))
            .map(|r| OciSyscall {
                names: r.names.clone(),
                action: r.action,
                errno_ret: r.errno_ret,
                args: r.args.clone(),
            })
            .collect();
        let architectures = if !self.architectures.is_empty() {
            self.architectures.clone()
        } else {
            let native = scmp_arch(arch);
            self.arch_map
                .iter()
                .filter(|g| Some(g.architecture.as_str()) == native)
                .flat_map(|g| {
                    std::iter::once(g.architecture.clone())
                        .chain(g.sub_architectures.clone().unwrap_or_default())
                })
                .collect()
        };
        OciSeccomp {
            default_action: self.default_action,
            default_errno_ret: self.default_errno_ret,
            architectures,
            syscalls,
        }
    }
}

/// EPERM: what a denied system call returns under the default profile.
const EPERM: u32 = 1;
/// ENOSYS: `clone3` without CAP_SYS_ADMIN (its flags cannot be checked by seccomp, so libc
/// falls back to `clone`, whose flags can).
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: `clone` may create
/// none of these namespaces without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// AF_VSOCK: the one socket family the default refuses.
const AF_VSOCK: u64 = 40;

/// Every-day system calls: allowed whatever the capabilities.
const ALWAYS: &str = "\
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 \
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 \
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup \
dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 \
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat \
faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 \
fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork \
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate \
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat \
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 \
getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority \
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage \
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr \
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy \
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit \
io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule \
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen \
listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack \
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall \
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 \
mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock \
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause \
pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll \
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 \
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv \
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat \
renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask \
rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 \
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max \
sched_get_priority_min sched_getscheduler sched_rr_get_interval \
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam \
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop \
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 \
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority \
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 \
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 \
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask \
sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat \
sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete \
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create \
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate \
truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes \
vfork vmsplice wait4 waitid waitpid write writev";

/// System calls allowed only with a capability: (capability, names).
const BY_CAPABILITY: &[(&str, &str)] = &[
    (
        "CAP_SYS_ADMIN",
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount \
         mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname \
         sethostname setns syslog umount umount2 unshare",
    ),
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    (
        "CAP_SYS_PTRACE",
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    (
        "CAP_SYS_TIME",
        "settimeofday stime clock_settime clock_settime64",
    ),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    (
        "CAP_SYS_NICE",
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    ),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
];

/// System calls of one architecture family: (Go architecture names, system call names).
const BY_ARCH: &[(&[&str], &str)] = &[
    (&["amd64", "x32"], "arch_prctl"),
    (&["amd64", "x32", "386"], "modify_ldt"),
    (
        &["arm", "arm64"],
        "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ),
    (&["ppc64le"], "sync_file_range2 swapcontext"),
    (
        &["s390", "s390x"],
        "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ),
    (&["riscv64"], "riscv_flush_icache"),
];

/// Allowed `personality` values: Linux, with UNAME26, with READ_IMPLIES_EXEC, with both, and
/// the query (0xffffffff).
const PERSONALITIES: &[u64] = &[0, 8, 0x20000, 0x20008, 0xffff_ffff];

fn names(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_string).collect()
}

fn allow(list: &str) -> Rule {
    Rule {
        names: names(list),
        action: Action::ScmpActAllow,
        errno_ret: None,
        args: Vec::new(),
        includes: Condition::default(),
        excludes: Condition::default(),
        comment: None,
    }
}

fn arg(index: u32, value: u64, op: Op) -> Arg {
    Arg {
        index,
        value,
        value_two: None,
        op,
    }
}

/// `clone`'s flags (argument `index`) with no namespace flag set: (flags & mask) == 0.
fn no_namespace_flag(index: u32) -> Arg {
    Arg {
        value_two: Some(0),
        ..arg(index, CLONE_NAMESPACE_FLAGS, Op::ScmpCmpMaskedEq)
    }
}

/// Dash's default profile (see the module's documentation).
pub fn default_profile() -> Profile {
    let mut rules = vec![allow(ALWAYS)];
    rules.push(Rule {
        args: vec![arg(0, AF_VSOCK, Op::ScmpCmpNe)],
        ..allow("socket")
    });
    for p in PERSONALITIES {
        rules.push(Rule {
            args: vec![arg(0, *p, Op::ScmpCmpEq)],
            ..allow("personality")
        });
    }
    for (arches, list) in BY_ARCH {
        rules.push(Rule {
            includes: Condition {
                arches: arches.iter().map(|a| a.to_string()).collect(),
                ..Condition::default()
            },
            ..allow(list)
        });
    }
    for (cap, list) in BY_CAPABILITY {
        rules.push(Rule {
            includes: Condition {
                caps: vec![cap.to_string()],
                ..Condition::default()
            },
            ..allow(list)
        });
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags (s390 swaps the first two
    // arguments), clone3 answered ENOSYS.
    let no_sys_admin = |arches: Vec<String>| Condition {
        caps: vec!["CAP_SYS_ADMIN".into()],
        arches,
        min_kernel: None,
    };
    rules.push(Rule {
        args: vec![no_namespace_flag(0)],
        excludes: no_sys_admin(vec!["s390".into(), "s390x".into()]),
        ..allow("clone")
    });
    rules.push(Rule {
        args: vec![no_namespace_flag(1)],
        includes: Condition {
            arches: vec!["s390".into(), "s390x".into()],
            ..Condition::default()
        },
        excludes: no_sys_admin(Vec::new()),
        ..allow("clone")
    });
    rules.push(Rule {
        action: Action::ScmpActErrno,
        errno_ret: Some(ENOSYS),
        excludes: no_sys_admin(Vec::new()),
        ..allow("clone3")
    });
    Profile {
        default_action: Action::ScmpActErrno,
        default_errno_ret: Some(EPERM),
        architectures: Vec::new(),
        // The node's own architecture only, not its 32-bit companions (x86 and x32 beside
        // x86_64, as Docker lists them): libseccomp compiles the filter once per architecture
        // at every container start, and three cost ≈ 5 ms of a ≈ 38 ms start (decision 0014).
        // A service with 32-bit binaries brings a profile that lists them.
        arch_map: [
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_AARCH64",
            "SCMP_ARCH_S390X",
            "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_RISCV64",
        ]
        .into_iter()
        .map(|a| ArchGroup {
            architecture: a.into(),
            sub_architectures: None,
        })
        .collect(),
        syscalls: rules,
    }
}

#[cfg(test)]
#[path = "seccomp_test.rs"]
mod tests;
