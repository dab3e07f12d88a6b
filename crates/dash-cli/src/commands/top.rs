//! `dash top`: every running replica's CPU, memory, network, requests per second and restarts,
//! refreshed every second like `top` or `docker stats`. Keys in the live view: c, m, n, r, s
//! (sort by CPU, memory, network, requests, restarts), i (by id), q or Ctrl-C to quit. With
//! `-o json`, one JSON line per replica per refresh, for scripts (it stops with -n or Ctrl-C);
//! when stdout is not a terminal, one table per refresh.
//!
//! The rows are computed here from `GET /v1/stats` (requests per second from the change in
//! each replica's request total between two refreshes) and, every 10 s, the last minutes of
//! each service's history (`GET /v1/services/{name}/history`: the CPU trend column), as pure
//! functions with tests beside.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use dash_core::api::ReplicaStats;
use serde::Serialize;

use crate::client::Client;
use crate::encode;

/// What the rows are sorted by (the largest first; `id` alphabetically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    Cpu,
    Mem,
    Net,
    Req,
    Restarts,
    Id,
}

/// `dash top [--service S] [--node N] [--sort KEY] [--interval 1s] [-n COUNT]`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Only this service's replicas.
    #[arg(long)]
    pub service: Option<String>,
    /// Only the replicas on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Sort by (the live view changes it with the keys c, m, n, r, s, i).
    #[arg(long, value_enum, default_value = "cpu")]
    pub sort: SortKey,
    /// Time between refreshes, e.g. 1s, 500ms (at least 200ms).
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// Stop after this many refreshes (default: until q or Ctrl-C).
    #[arg(short = 'n', long = "iterations", value_name = "COUNT")]
    pub iterations: Option<u64>,
}

/// One replica in one refresh (also the JSON line of `-o json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub time_ms: u64,
    pub replica: String,
    pub service: String,
    pub node: Option<String>,
    pub state: String,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
    /// Through every node's proxy, since the previous refresh; None on the first.
    pub requests_per_second: Option<f64>,
    pub restarts: u32,
    /// CPU percent of the last minutes in 10 s buckets, oldest first (the masters' history;
    /// None where nothing was measured).
    pub cpu_trend: Vec<Option<f64>>,
}

/// How many 10 s buckets of history the trend column shows.
const TREND_POINTS: usize = 12;

/// A sparkline of `points` (the last [`TREND_POINTS`]), scaled to their largest value (at
/// least 1 %): one of ▁▂▃▄▅▆▇█ per point, a space where nothing was measured.
pub fn sparkline(points: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let last = &points[points.len().saturating_sub(TREND_POINTS)..];
    let top = last
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max);
    last.iter()
        .map(|p| match p {
            Some(v) if v.is_finite() => {
                let i = ((v.max(0.0) / top) * 7.0).round() as usize;
                BARS[i.min(7)]
            }
            _ => ' ',
        })
        .collect()
}

/// The rows of a refresh at `now_ms`, with request rates against `previous` (replica →
/// (request total, when)), which is updated for the next refresh.
pub fn rows(
    stats: Vec<ReplicaStats>,
    node: Option<&str>,
    previous: &mut HashMap<String, (u64, u64)>,
    now_ms: u64,
) -> Vec<Row> {
    let mut next = HashMap::new();
    let out = stats
        .into_iter()
        .filter(|s| node.is_none_or(|n| s.node.as_deref() == Some(n)))
        .map(|s| {
            let rate = match (s.requests, previous.get(&s.replica)) {
                (Some(now), Some(&(before, at))) if now_ms > at && now >= before => {
                    Some((now - before) as f64 * 1000.0 / (now_ms - at) as f64)
                }
                (Some(_), _) => None,
                // No proxy sent it anything: idle, not unknown.
                (None, _) => Some(0.0),
            };
            if let Some(total) = s.requests {
                next.insert(s.replica.clone(), (total, now_ms));
            }
            Row {
                time_ms: now_ms,
                state: serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                replica: s.replica,
                service: s.service,
                node: s.node,
                cpu_percent: s.cpu_percent,
                memory_bytes: s.memory_bytes,
                memory_limit_bytes: s.memory_limit_bytes,
                net_rx_bytes: s.net_rx_bytes,
                net_tx_bytes: s.net_tx_bytes,
                requests_per_second: rate,
                restarts: s.restarts,
                cpu_trend: Vec::new(),
            }
        })
        .collect();
    *previous = next;
    out
}

/// Sorts `rows` by `key`, the largest first (unknown values last), ties by id.
pub fn sort(rows: &mut [Row], key: SortKey) {
    let value = |r: &Row| -> f64 {
        match key {
            SortKey::Cpu => r.cpu_percent.unwrap_or(-1.0),
            SortKey::Mem => r.memory_bytes.map_or(-1.0, |m| m as f64),
            SortKey::Net => (r.net_rx_bytes.unwrap_or(0) + r.net_tx_bytes.unwrap_or(0)) as f64,
            SortKey::Req => r.requests_per_second.unwrap_or(-1.0),
            SortKey::Restarts => f64::from(r.restarts),
            SortKey::Id => 0.0,
        }
    };
    rows.sort_by(|a, b| {
        value(b)
            .total_cmp(&value(a))
            .then_with(|| a.replica.cmp(&b.replica))
    });
}

/// The table of a refresh, cut to `width` columns.
pub fn render(rows: &[Row], key: SortKey, width: usize) -> String {
    let sorted_by = format!("{key:?}").to_lowercase();
    let mut lines = vec![format!(
        "{} replicas · sorted by {sorted_by} (c m n r s i) · q quits",
        rows.len()
    )];
    lines.push(format!(
        "{:<24} {:<14} {:<10} {:>7} {:<12} {:>19} {:>17} {:>7} {:>8} {}",
        "REPLICA",
        "NODE",
        "STATE",
        "CPU %",
        "CPU 2M",
        "MEM / LIMIT",
        "NET RX / TX",
        "REQ/S",
        "RESTARTS",
        "SERVICE"
    ));
    for r in rows {
        let mem = match (r.memory_bytes, r.memory_limit_bytes) {
            (Some(m), Some(l)) => format!("{} / {}", bytes(m), bytes(l)),
            (Some(m), None) => format!("{} / -", bytes(m)),
            _ => "-".into(),
        };
        let net = match (r.net_rx_bytes, r.net_tx_bytes) {
            (Some(rx), Some(tx)) => format!("{} / {}", bytes(rx), bytes(tx)),
            _ => "-".into(),
        };
        lines.push(format!(
            "{:<24} {:<14} {:<10} {:>7} {:<12} {:>19} {:>17} {:>7} {:>8} {}",
            r.replica,
            r.node.as_deref().unwrap_or("-"),
            r.state,
            r.cpu_percent
                .map_or_else(|| "-".into(), |c| format!("{c:.1}")),
            sparkline(&r.cpu_trend),
            mem,
            net,
            r.requests_per_second
                .map_or_else(|| "-".into(), |q| format!("{q:.1}")),
            r.restarts,
            r.service,
        ));
    }
    lines
        .iter()
        .map(|l| l.chars().take(width).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn bytes(n: u64) -> String {
    dash_core::units::format_size(n)
}

/// The key pressed in the live view, as a change of sort or a quit.
fn key_action(b: u8) -> Option<Option<SortKey>> {
    match b {
        b'q' | b'Q' | 3 | 4 => Some(None),
        b'c' => Some(Some(SortKey::Cpu)),
        b'm' => Some(Some(SortKey::Mem)),
        b'n' => Some(Some(SortKey::Net)),
        b'r' => Some(Some(SortKey::Req)),
        b's' => Some(Some(SortKey::Restarts)),
        b'i' => Some(Some(SortKey::Id)),
        _ => None,
    }
}

/// The terminal in the live view's state (alternate screen, no cursor, raw keys) while alive.
struct Screen(Option<nix::sys::termios::Termios>);

impl Screen {
    fn enter() -> Screen {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = if stdin.is_terminal() {
            tcgetattr(&stdin).ok().and_then(|saved| {
                let mut raw = saved.clone();
                cfmakeraw(&mut raw);
                tcsetattr(&stdin, SetArg::TCSANOW, &raw)
                    .ok()
                    .map(|()| saved)
            })
        } else {
            None
        };
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Screen(saved)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Runs `dash top`.
pub async fn run(client: &Client, json: bool, args: TopArgs) -> anyhow::Result<()> {
    let interval = dash_core::units::parse_duration(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval {:?}: {e}", args.interval))?;
    if interval < Duration::from_millis(200) {
        anyhow::bail!(
            "--interval {:?}: at least 200ms (the nodes measure every 2 s)",
            args.interval
        );
    }
    let path = match &args.service {
        Some(s) => format!("/v1/stats?service={}", encode(s)),
        None => "/v1/stats".to_string(),
    };
    let live = !json && std::io::stdout().is_terminal();
    let screen = live.then(Screen::enter);
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<u8>(16);
    if live && std::io::stdin().is_terminal() {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut b = [0u8; 1];
            while std::io::stdin().read(&mut b).is_ok_and(|n| n == 1) {
                if keys_tx.blocking_send(b[0]).is_err() {
                    return;
                }
            }
        });
    }
    let mut key = args.sort;
    let mut previous = HashMap::new();
    let mut trends: HashMap<String, Vec<Option<f64>>> = HashMap::new();
    let mut trends_at: Option<std::time::Instant> = None;
    let mut done = 0u64;
    let result = loop {
        let stats: Vec<ReplicaStats> = match client.get(&path).await {
            Ok(s) => s,
            Err(e) => break Err(anyhow::Error::from(e)),
        };
        let mut rows = rows(
            stats,
            args.node.as_deref(),
            &mut previous,
            crate::output::now_ms(),
        );
        // The history moves in 10 s buckets: asked again at that pace, not every refresh.
        if trends_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            trends = cpu_trends(client, &rows).await;
            trends_at = Some(std::time::Instant::now());
        }
        for r in &mut rows {
            r.cpu_trend = trends.get(&r.replica).cloned().unwrap_or_default();
        }
        sort(&mut rows, key);
        if json {
            let mut out = std::io::stdout().lock();
            for r in &rows {
                let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
            }
            let _ = out.flush();
        } else if live {
            let width = terminal_width().unwrap_or(160);
            let text = render(&rows, key, width).replace('\n', "\r\n");
            print!("\x1b[H\x1b[2J{text}\r\n");
            let _ = std::io::stdout().flush();
        } else {
            println!("{}\n", render(&rows, key, usize::MAX));
        }
        done += 1;
        if args.iterations.is_some_and(|n| done >= n) {
            break Ok(());
        }
        let sleep = tokio::time::sleep(interval);
        tokio::pin!(sleep);
        let quit = loop {
            tokio::select! {
                _ = &mut sleep => break false,
                _ = tokio::signal::ctrl_c() => break true,
                Some(b) = keys.recv() => match key_action(b) {
                    Some(None) => break true,
                    Some(Some(k)) => {
                        key = k;
                        break false;
                    }
                    None => {}
                },
            }
        };
        if quit {
            break Ok(());
        }
    };
    drop(screen);
    result
}

/// The last two minutes of CPU of every replica of the services in `rows`, from the masters'
/// history; a service whose history cannot be read (removed meanwhile) has none.
async fn cpu_trends(client: &Client, rows: &[Row]) -> HashMap<String, Vec<Option<f64>>> {
    let services: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.service.as_str()).collect();
    let mut out = HashMap::new();
    for service in services {
        let path = format!("/v1/services/{}/history?window_s=120", encode(service));
        let Ok(h) = client.get::<dash_core::api::ServiceHistory>(&path).await else {
            continue;
        };
        for r in h.replicas {
            out.insert(r.replica, r.points.iter().map(|p| p.cpu_percent).collect());
        }
    }
    out
}

fn terminal_width() -> Option<usize> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
#[path = "top_test.rs"]
mod tests;
