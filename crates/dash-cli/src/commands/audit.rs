//! `dash audit`: who changed what through the admin API, when and from where.

use clap::Args;
use dash_core::api::AuditEntry;

use crate::client::Client;
use crate::output::{self, Table};
use crate::print_json;

/// What `dash audit` prints; its help names them.
pub(crate) const COLUMNS: [&str; 8] = [
    "TIME", "WHO", "ROLE", "SOURCE", "MASTER", "STATUS", "REQUEST", "TARGET",
];

/// `dash audit [--since 1h] [--limit N]`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only entries of this recent past, e.g. 30m, 1h, 168h (default: every entry kept).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries, the newest (1 to 10000).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

/// Runs `dash audit`: time (UTC), who, role, source, master, status, request, target.
pub async fn run(client: &Client, json: bool, args: AuditArgs) -> anyhow::Result<()> {
    let since_ms = match &args.since {
        None => 0,
        Some(s) => {
            let back = dash_core::units::parse_duration(s)
                .map_err(|e| anyhow::anyhow!("--since {s:?}: {e}"))?;
            output::now_ms().saturating_sub(back.as_millis().min(u64::MAX as u128) as u64)
        }
    };
    let entries: Vec<AuditEntry> = client
        .get(&format!(
            "/v1/audit?since_ms={since_ms}&limit={}",
            args.limit
        ))
        .await?;
    if json {
        print_json(&entries);
        return Ok(());
    }
    let mut t = Table::new(COLUMNS);
    for e in entries {
        t.row([
            dash_core::clock::utc(e.at_ms),
            e.who,
            e.role,
            e.source,
            e.master,
            e.status.to_string(),
            format!("{} {}", e.method, e.path),
            e.target.unwrap_or_default(),
        ]);
    }
    t.print();
    Ok(())
}
