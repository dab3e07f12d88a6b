//! dash-monitor: the per-container monitor (like conmon). One small process per container
//! that outlives the daemon: it runs `<runtime> create`, becomes the subreaper of the
//! container's init, copies the init's stdout/stderr into a size-rotated log and records the
//! exit code.
//!
//! ```text
//!  daemon ─▶ dash-monitor ─fork─▶ dash-monitor (setsid, PR_SET_CHILD_SUBREAPER)
//!              exits 0              │ stdout "pid <self>"
//!                                   ├─▶ runtime create (stdin /dev/null, stdout+stderr pipes)
//!                                   │     exits → stdout "ok <init pid>" | "error <text>",
//!                                   │             then stdout := /dev/null
//!                                   ├── pipes → <log>: "<RFC 3339 ms UTC> <stdout|stderr> line"
//!                                   ├── waitpid(-1) until the init is reaped (others: orphans)
//!                                   └── drain pipes (≤ 2 s) → <exit>.tmp → rename <exit>; exit
//! ```
//! std + libc only, no async runtime, single-threaded: poll(2) over the two pipes and a
//! signalfd for SIGCHLD. Kept small because there is one per container (RECIPES.md "Memory of
//! a small monitor process").
//!
//! Modules: `protocol` (arguments, report lines and exit file, shared with the daemon's
//! `dash-runtime/src/monitor_protocol.rs`), `daemon` (detaching, the report pipe),
//! `monitor` (the main loop), `log` (rotation), `timestamp`, `crun_hybrid` (the crun
//! hybrid-cgroup workaround) and `sys` (the loop's system calls). Only `daemon`,
//! `crun_hybrid` and `sys` hold unsafe code.

mod crun_hybrid;
mod daemon;
mod log;
mod monitor;
#[path = "../../dash-runtime/src/monitor_protocol.rs"]
#[allow(
    dead_code,
    reason = "shared with dash-runtime: each side uses its half of the protocol"
)]
mod protocol;
mod sys;
mod timestamp;

use std::ffi::OsStr;
use std::io::{self, Write};

fn main() {
    // `dash-monitor --probe-crun CRUN`: runs `CRUN --version` behind the same hybrid-cgroup
    // workaround as `create`, so the daemon learns whether crun can work here without a
    // second copy of this unsafe code.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref() == Some(OsStr::new(protocol::arg::PROBE_CRUN)) {
        let Some(crun) = argv.next() else {
            fail(
                2,
                format_args!("{} needs the crun path", protocol::arg::PROBE_CRUN),
            );
        };
        fail(1, format_args!("{}", crun_hybrid::probe(&crun)));
    }
    let args = match protocol::Args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => fail(2, format_args!("{e}\n{}", protocol::USAGE)),
    };
    daemon::close_inherited_fds();
    // Detach: the daemon reaps this first process at once; the child lives on in a session
    // of its own, so neither the daemon's death nor its process group's signals reach it.
    if let Err(e) = daemon::detach() {
        fail(1, format_args!("fork: {e}"));
    }
    let code = match monitor::run(&args) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "dash-monitor {}: {e}",
                args.id.to_string_lossy()
            );
            1
        }
    };
    std::process::exit(code);
}

/// Says what went wrong on stderr and exits with `code`.
fn fail(code: i32, message: std::fmt::Arguments<'_>) -> ! {
    let _ = writeln!(io::stderr(), "dash-monitor: {message}");
    std::process::exit(code);
}
