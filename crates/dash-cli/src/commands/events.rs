//! `dash events`: the live stream of what happens in the cluster.

use clap::Args;

use crate::client::Client;
use crate::{encode, output};

/// `dash events [--past] [--service S] [--type T] [--since WHEN] [--until WHEN]`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Also show the recent events kept by the server (its latest 1,024).
    #[arg(long)]
    pub past: bool,
    /// Only events about this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only events of this kind, e.g. replica_exited, replica_restarting, node_down.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Kept events from this time on, then the live ones: a duration ago (10m, 1h), an RFC
    /// 3339 UTC time or `now`.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Stop at this time (same forms as --since; `now`: only kept events, then exit).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
}

/// Runs `dash events`: one line per event, or the events as JSON lines with `-o json`.
pub async fn run(client: &Client, json: bool, args: EventsArgs) -> anyhow::Result<()> {
    let now = output::now_ms();
    let when = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<u64>> {
        v.as_deref()
            .map(|t| dash_core::clock::parse_time_point(t, now, flag))
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let since_ms = when("--since", &args.since)?;
    let until_ms = when("--until", &args.until)?;
    let mut query = Vec::new();
    if args.past && since_ms.is_none() {
        query.push("since=0".to_string());
    }
    if let Some(t) = since_ms {
        query.push(format!("since_ms={t}"));
    }
    if let Some(t) = until_ms {
        query.push(format!("until_ms={t}"));
    }
    if let Some(s) = &args.service {
        query.push(format!("service={}", encode(s)));
    }
    if let Some(k) = &args.kind {
        query.push(format!("type={}", encode(k)));
    }
    let path = if query.is_empty() {
        "/v1/events".to_string()
    } else {
        format!("/v1/events?{}", query.join("&"))
    };
    let path = path.as_str();
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
