//! `dash`: the one binary. Parses the command line, sets up tracing once, and runs either a
//! daemon (`dash server`) or a client command against the admin API.

mod daemon;
mod memory;
mod server;
mod sim;
mod worker;

use std::process::ExitCode;

use clap::Parser;
use dash_cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Server(_) | Command::Worker(_) => memory::limit_arenas(),
        Command::Sim(args) if args.command.is_none() => {}
        _ => quiet_on_closed_pipe(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Server(args) => {
            init_tracing(&args.node.log_level);
            daemon_exit(rt.block_on(server::run(*args)))
        }
        Command::Worker(args) => {
            init_tracing(&args.node.log_level);
            daemon_exit(rt.block_on(worker::run(*args)))
        }
        Command::Sim(args) if args.command.is_none() => {
            init_tracing(&args.run.log_level);
            daemon_exit(rt.block_on(sim::run(args.run)))
        }
        Command::Restore(args) => match rt.block_on(restore(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        _ => match rt.block_on(dash_cli::run(cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// `dash restore --data-dir DIR FILE`: a new one-master cluster's data dir from a backup.
async fn restore(args: dash_cli::commands::backup::RestoreArgs) -> anyhow::Result<()> {
    let r = dash_master::backup::restore(&args.file, &args.data_dir).await?;
    println!(
        "restored {} into {}: {} services, {} nodes, {} tokens, {} images (backup made by {})",
        args.file.display(),
        r.data_dir.display(),
        r.services,
        r.nodes,
        r.tokens,
        r.images,
        r.made_by
    );
    println!(
        "start it with: dash server --data-dir {} --advertise-addr <this machine's address>",
        r.data_dir.display()
    );
    Ok(())
}

/// A client command whose output is cut short (`dash ps | head -1`) ends quietly, as other
/// Unix tools do, instead of panicking on the failed write. Daemons keep ignoring SIGPIPE (a
/// closed connection is an error to handle there, not an end).
#[allow(unsafe_code, reason = "signal: restoring the default SIGPIPE action")]
fn quiet_on_closed_pipe() {
    // SAFETY: sets the process's SIGPIPE action to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A daemon's end: 64 for bad flags or environment (nothing was touched), 1 for a failure.
fn daemon_exit(result: Result<(), daemon::ServerError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(daemon::ServerError::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(64)
        }
        Err(daemon::ServerError::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(level: &str) {
    // tonic reports a refused TLS handshake (a bad or expired node certificate) only at
    // debug level; a cluster's operators need to see those.
    let mut directives = if level.contains("tonic") {
        level.to_string()
    } else {
        format!("{level},tonic::transport::server::io_stream=debug")
    };
    // openraft logs every vote and append at info; its warnings and errors are what count
    // (Dash logs elections and leadership changes itself).
    if !level.contains("openraft") {
        directives.push_str(",openraft=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
