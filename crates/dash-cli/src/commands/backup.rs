//! `dash backup`: a consistent snapshot of the cluster from any master, into a file. (`dash
//! restore` makes a data dir of one; it runs locally, in the binary: no server is involved.)

use std::path::PathBuf;

use clap::Args;

use crate::client::Client;

/// `dash backup -o FILE`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write it (a new file; `-` for stdout is not offered: a backup holds the CA key).
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub output: PathBuf,
}

/// `dash restore --data-dir DIR FILE`.
#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The data dir to create (missing or empty; a restore never writes over a data dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The backup, as `dash backup -o` wrote it.
    pub file: PathBuf,
}

/// Runs `dash backup`.
pub async fn run(client: &Client, json: bool, args: BackupArgs) -> anyhow::Result<()> {
    if args.output.exists() {
        anyhow::bail!(
            "{} exists; name a new file (a backup never writes over one)",
            args.output.display()
        );
    }
    let bytes = client.download("/v1/backup", &args.output).await?;
    if json {
        crate::print_json(&serde_json::json!({
            "file": args.output,
            "bytes": bytes,
        }));
    } else {
        println!(
            "backup written to {} ({})",
            args.output.display(),
            dash_core::units::format_size(bytes)
        );
    }
    Ok(())
}
