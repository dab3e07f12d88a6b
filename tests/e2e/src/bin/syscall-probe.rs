//! syscall-probe: run inside a replica by the security e2e tests. Makes each system call a
//! container escape or snooping starts with, and prints one line per call: its name and the
//! errno it failed with (0: it worked). Raw system calls, since busybox has none of these.

// The calls are made with libc::syscall (in `raw` only): no safe wrapper exists for keyctl,
// add_key or bpf.
#![allow(unsafe_code)]

/// System call `nr` with five arguments (unused ones 0).
fn raw(nr: libc::c_long, a: [libc::c_long; 5]) -> libc::c_long {
    // SAFETY: the callers below pass only integers, null, or pointers to NUL-terminated
    // strings and buffers that live across the call with the lengths they give; nothing the
    // calls return is dereferenced.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) }
}

/// Makes the call and prints its name and errno (0: it worked) at once, before another call
/// can overwrite errno.
fn probe(name: &str, ret: libc::c_long) {
    let errno = if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    };
    println!("{name} {errno}");
}

fn main() {
    let ptr = |s: &'static std::ffi::CStr| s.as_ptr() as libc::c_long;
    let calls: [(&str, libc::c_long, [libc::c_long; 5]); 6] = [
        (
            "unshare-user",
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as libc::c_long, 0, 0, 0, 0],
        ),
        // KEYCTL_GET_KEYRING_ID of the session keyring (-3).
        ("keyctl", libc::SYS_keyctl, [0, -3, 0, 0, 0]),
        (
            "add_key",
            libc::SYS_add_key,
            [ptr(c"user"), ptr(c"dash-probe"), ptr(c"x"), 1, -3],
        ),
        // BPF_MAP_CREATE with no attributes: EPERM under a filter, else a complaint about the
        // attributes (EFAULT or EINVAL).
        ("bpf", libc::SYS_bpf, [0; 5]),
        // PTRACE_ATTACH to the container's first process.
        (
            "ptrace",
            libc::SYS_ptrace,
            [libc::PTRACE_ATTACH as libc::c_long, 1, 0, 0, 0],
        ),
        (
            "mount",
            libc::SYS_mount,
            [ptr(c"none"), ptr(c"/tmp"), ptr(c"tmpfs"), 0, 0],
        ),
    ];
    for (name, nr, args) in calls {
        probe(name, raw(nr, args));
    }
}
