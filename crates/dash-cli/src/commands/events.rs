//! `dash events`: the live stream of what happens in the cluster.

use clap::Args;

use crate::client::Client;
use crate::output;

/// `dash events [--past]`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Also show the recent events kept by the server.
    #[arg(long)]
    pub past: bool,
}

/// Runs `dash events`: one line per event, or the events as JSON lines with `-o json`.
pub async fn run(client: &Client, json: bool, args: EventsArgs) -> anyhow::Result<()> {
    let path = if args.past {
        "/v1/events?since=0"
    } else {
        "/v1/events"
    };
    client
        .stream(path, |line| {
            if json {
                println!("{line}");
            } else if let Ok(e) = serde_json::from_str::<dash_core::event::Event>(line) {
                let kind = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                println!(
                    "{} {:<20} {} {} {}",
                    output::clock(e.time_ms),
                    kind,
                    e.service.unwrap_or_default(),
                    e.replica.unwrap_or_default(),
                    e.message
                );
            } else {
                println!("{line}");
            }
        })
        .await?;
    Ok(())
}
