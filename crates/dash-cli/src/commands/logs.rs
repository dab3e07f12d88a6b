//! `dash logs`: the merged logs of a service's replicas, of one replica, or of a service's
//! removed replicas (`--previous`).

use clap::Args;
use dash_core::api::LogLine;

use crate::client::Client;
use crate::encode;

/// `dash logs [-f] [--tail N] [--previous] SERVICE|REPLICA`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// A service's name (its replicas' logs, merged), or a replica's id (that replica's log,
    /// also after it was removed: removed replicas' logs are kept 24 h, within 64 MiB a node).
    #[arg(value_name = "SERVICE|REPLICA")]
    pub service: String,
    /// The logs of the service's removed replicas instead (replaced by an update or a
    /// rollback, scaled down, drained), as `kubectl logs --previous`.
    #[arg(long)]
    pub previous: bool,
    /// Keep printing lines as the replicas write them.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines of each replica.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Only lines of this time on: a duration ago (10m, 1h), an RFC 3339 UTC time or `now`.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines up to this time (same forms as --since); with -f, stop there.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Show each line's time (RFC 3339 UTC, ms), as the node's monitor stamped it on reading.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Of a job: the logs of its run N (every attempt), kept while the run is in the job's
    /// history (`dash job history JOB` lists them).
    #[arg(long, value_name = "N", conflicts_with = "previous")]
    pub run: Option<u64>,
}

/// Runs `dash logs`: each line prefixed by its replica (and its time with --timestamps), or
/// as the server sends it with `-o json`.
pub async fn run(client: &Client, json: bool, args: LogsArgs) -> anyhow::Result<()> {
    let now = crate::output::now_ms();
    let mut path = format!("/v1/logs/{}?follow={}", encode(&args.service), args.follow);
    if args.previous {
        path.push_str("&previous=true");
    }
    if let Some(run) = args.run {
        path.push_str(&format!("&run={run}"));
    }
    if let Some(n) = args.tail {
        path.push_str(&format!("&tail={n}"));
    }
    for (flag, value, param) in [
        ("--since", &args.since, "since_ms"),
        ("--until", &args.until, "until_ms"),
    ] {
        if let Some(v) = value {
            let t = dash_core::clock::parse_time_point(v, now, flag).map_err(anyhow::Error::msg)?;
            path.push_str(&format!("&{param}={t}"));
        }
    }
    let timestamps = args.timestamps;
    client
        .stream(&path, |line| {
            if json {
                println!("{line}");
            } else if let Ok(l) = serde_json::from_str::<LogLine>(line) {
                println!("{} | {}", l.replica, shown(&l.line, timestamps));
            }
        })
        .await?;
    Ok(())
}

/// A stored line (`<time> <stream> <text>`) as printed: without its time unless asked.
fn shown(line: &str, timestamps: bool) -> &str {
    if timestamps {
        return line;
    }
    match line.split_once(' ') {
        Some((stamp, rest)) if stamp.ends_with('Z') && stamp.contains('T') => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_shown_only_when_asked() {
        let l = "2026-12-07T11:00:00.123Z stdout hello world";
        assert_eq!(super::shown(l, false), "stdout hello world");
        assert_eq!(super::shown(l, true), l);
        assert_eq!(super::shown("no stamp here", false), "no stamp here");
    }
}
