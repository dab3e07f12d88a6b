//! `dash cluster`: the masters' Raft.

use clap::Subcommand;
use dash_core::api::ClusterStatus;

use crate::client::Client;
use crate::output::Table;
use crate::print_json;

/// What `dash cluster status` prints per master; its help names them.
pub(crate) const STATUS_COLUMNS: [&str; 6] =
    ["MASTER", "ADDRESS", "ROLE", "MATCH", "LAG", "LAST CONTACT"];

/// `dash cluster …`.
#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// The leader, term and commit index; per master: name, address, role (leader, follower,
    /// learner), match index, lag, last contact.
    Status,
}

/// Runs `dash cluster …`.
pub async fn run(client: &Client, json: bool, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Status => {
            let s: ClusterStatus = client.get("/v1/cluster").await?;
            if json {
                print_json(&s);
                return Ok(());
            }
            println!(
                "leader: {}  term: {}  commit index: {}  (as {} sees it)",
                s.leader.as_deref().unwrap_or("none"),
                s.term,
                s.commit_index,
                s.answered_by
            );
            let mut t = Table::new(STATUS_COLUMNS);
            let dash = || "-".to_string();
            for m in s.masters {
                t.row([
                    m.name,
                    m.address,
                    m.role,
                    m.match_index.map_or_else(dash, |i| i.to_string()),
                    m.lag.map_or_else(dash, |i| i.to_string()),
                    m.last_contact_ms
                        .map_or_else(dash, |ms| format!("{ms} ms ago")),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}
