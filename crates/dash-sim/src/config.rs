//! What `dash sim` is asked to simulate, checked before anything joins: every refusal names the
//! flag, the value and what to give instead.

use std::net::SocketAddr;
use std::time::Duration;

use dash_core::spec::Resources;
use dash_core::units::{format_size, parse_duration, parse_size};

/// The most simulated workers one process takes.
pub const MAX_WORKERS: u32 = 100_000;

/// What one simulated worker costs this process, measured (docs/benchmarks.md, "Scale"): its
/// mutual-TLS connection (rustls and HTTP/2 buffers), its three tasks and its replicas' sentries.
pub const BYTES_PER_WORKER: u64 = 160 * 1024;
/// What one simulated replica costs beyond that (its assignment, spec included, and sentry).
pub const BYTES_PER_REPLICA: u64 = 4 * 1024;

/// The flags as typed.
#[derive(Debug, Clone)]
pub struct SimFlags {
    pub join: String,
    pub workers: u32,
    pub cpu: String,
    pub memory: String,
    pub start_time: String,
    pub fail_rate: f64,
    pub labels: Vec<String>,
    pub name_prefix: String,
    pub join_rate: u32,
    pub control: String,
    pub replicas_per_worker: u32,
}

/// A label key and the values spread over the fleet: `zone=a,zone=b,zone=c` gives worker 0
/// `zone=a`, worker 1 `zone=b`, worker 2 `zone=c`, worker 3 `zone=a`…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSpread {
    pub key: String,
    pub values: Vec<String>,
}

/// A checked simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub token: String,
    pub master: String,
    pub workers: u32,
    pub capacity: Resources,
    pub start_time: Duration,
    pub fail_rate: f64,
    pub labels: Vec<LabelSpread>,
    pub name_prefix: String,
    /// Joins started per second.
    pub join_rate: u32,
    pub control: SocketAddr,
}

impl SimConfig {
    /// Checks every flag; `available` is the memory this machine has free (bytes), for the
    /// estimate of what the fleet needs.
    pub fn from_flags(f: &SimFlags, available: Option<u64>) -> Result<SimConfig, String> {
        let (token, master) = f
            .join
            .trim()
            .rsplit_once('@')
            .filter(|(t, m)| !t.is_empty() && !m.is_empty())
            .ok_or_else(|| {
                format!(
                    "--join {:?}: use TOKEN@MASTER:PORT, e.g. DASH1-…@10.0.0.1:7071 (a token from `dash token create --role worker`)",
                    f.join
                )
            })?;
        dash_rpc::pki::JoinToken::parse(token)
            .map_err(|e| format!("--join: the token is not a Dash join token ({e}); create one with `dash token create --role worker`"))?;
        if master.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "--join …@{master}: the master's address must be IP:PORT (its master_api, port 7071 by default)"
            ));
        }
        if f.workers == 0 || f.workers > MAX_WORKERS {
            return Err(format!(
                "--workers {}: give between 1 and {MAX_WORKERS} simulated workers",
                f.workers
            ));
        }
        let cpu_millis = parse_cpu(&f.cpu)?;
        let memory_bytes = parse_size(&f.memory)
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| {
                format!(
                    "--memory {:?}: give each simulated worker's memory as a size, e.g. 32GiB or 512MiB",
                    f.memory
                )
            })?;
        let start_time = parse_duration(&f.start_time)
            .ok()
            .filter(|d| *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                format!(
                    "--start-time {:?}: give how long a simulated container takes to start, from 0s to 1h, e.g. 50ms",
                    f.start_time
                )
            })?;
        if !(f.fail_rate.is_finite() && (0.0..=1.0).contains(&f.fail_rate)) {
            return Err(format!(
                "--fail-rate {}: give the share of starts that fail, from 0 to 1 (e.g. 0.001 for one in a thousand)",
                f.fail_rate
            ));
        }
        let labels = parse_labels(&f.labels)?;
        if !valid_prefix(&f.name_prefix) {
            return Err(format!(
                "--name-prefix {:?}: use 1 to 50 letters, digits and '-', starting with a letter (workers are named PREFIX-00001…)",
                f.name_prefix
            ));
        }
        if f.join_rate == 0 {
            return Err("--join-rate 0: give how many workers join per second, at least 1".into());
        }
        let control: SocketAddr = f.control.parse().map_err(|_| {
            format!(
                "--control {:?}: give IP:PORT for `dash sim kill` and `dash sim report`, e.g. 127.0.0.1:7090",
                f.control
            )
        })?;
        let need = estimate_bytes(f.workers, f.replicas_per_worker);
        if let Some(free) = available
            && need > free / 10 * 8
        {
            let fits = (free / 10 * 8)
                / (BYTES_PER_WORKER + u64::from(f.replicas_per_worker) * BYTES_PER_REPLICA);
            return Err(format!(
                "--workers {}: a fleet of that size needs about {} here (with {} replicas each), and this machine has {} free; give --workers {} or fewer",
                f.workers,
                format_size(need),
                f.replicas_per_worker,
                format_size(free),
                fits
            ));
        }
        Ok(SimConfig {
            token: token.to_string(),
            master: master.to_string(),
            workers: f.workers,
            capacity: Resources {
                cpu_millis,
                memory_bytes,
            },
            start_time,
            fail_rate: f.fail_rate,
            labels,
            name_prefix: f.name_prefix.clone(),
            join_rate: f.join_rate,
            control,
        })
    }

    /// Worker `i`'s name: `PREFIX-00001` for i = 0.
    pub fn worker_name(&self, i: u32) -> String {
        format!("{}-{:05}", self.name_prefix, i + 1)
    }

    /// Worker `i`'s labels: one value of each spread, in turn.
    pub fn worker_labels(&self, i: u32) -> std::collections::BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|l| {
                let v = &l.values[i as usize % l.values.len()];
                (l.key.clone(), v.clone())
            })
            .collect()
    }
}

/// Bytes a fleet of `workers` with `replicas` each needs in this process.
pub fn estimate_bytes(workers: u32, replicas: u32) -> u64 {
    u64::from(workers) * (BYTES_PER_WORKER + u64::from(replicas) * BYTES_PER_REPLICA)
}

/// `8` or `0.5` cores, or `500m` (millicores).
fn parse_cpu(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let millis = if let Some(m) = t.strip_suffix('m') {
        m.parse::<u32>().ok()
    } else {
        t.parse::<f64>()
            .ok()
            .filter(|c| c.is_finite() && *c > 0.0 && *c <= 4096.0)
            .map(|c| (c * 1000.0).round() as u32)
    };
    millis.filter(|m| *m > 0 && *m <= 4_096_000).ok_or_else(|| {
        format!("--cpu {text:?}: give each simulated worker's cores, e.g. 8, 0.5 or 500m")
    })
}

/// `zone=a,zone=b,rack=r1`: keys in the order first given, values in order.
fn parse_labels(flags: &[String]) -> Result<Vec<LabelSpread>, String> {
    let mut out: Vec<LabelSpread> = Vec::new();
    for pair in flags.iter().flat_map(|f| f.split(',')) {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, v)| valid_label_part(k) && (v.is_empty() || valid_label_part(v)))
            .ok_or_else(|| {
                format!(
                    "--labels {pair:?}: use KEY=VALUE[,KEY=VALUE…] with letters, digits, '.', '_' and '-', e.g. zone=a,zone=b,zone=c"
                )
            })?;
        match out.iter_mut().find(|l| l.key == k) {
            Some(l) if l.values.iter().any(|x| x == v) => {
                return Err(format!("--labels: {k}={v} is given twice"));
            }
            Some(l) => l.values.push(v.to_string()),
            None => out.push(LabelSpread {
                key: k.to_string(),
                values: vec![v.to_string()],
            }),
        }
    }
    Ok(out)
}

fn valid_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_prefix(s: &str) -> bool {
    (1..=50).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn flags() -> SimFlags {
        SimFlags {
            join: String::new(),
            workers: 10,
            cpu: "8".into(),
            memory: "32GiB".into(),
            start_time: "50ms".into(),
            fail_rate: 0.001,
            labels: vec!["zone=a,zone=b,zone=c".into()],
            name_prefix: "sim".into(),
            join_rate: 200,
            control: "127.0.0.1:7090".into(),
            replicas_per_worker: 100,
        }
    }

    fn token() -> String {
        let t = dash_rpc::pki::JoinToken::generate(&"ab".repeat(32)).unwrap();
        t.to_string()
    }

    fn good() -> SimFlags {
        SimFlags {
            join: format!("{}@127.0.0.1:7071", token()),
            ..flags()
        }
    }

    #[test]
    fn a_good_fleet_and_its_labels() {
        let c = SimConfig::from_flags(&good(), Some(1 << 34)).unwrap();
        assert_eq!(c.capacity.cpu_millis, 8000);
        assert_eq!(c.capacity.memory_bytes, 32 << 30);
        assert_eq!(c.start_time, Duration::from_millis(50));
        assert_eq!(c.worker_name(0), "sim-00001");
        let zones: Vec<_> = (0..4).map(|i| c.worker_labels(i)["zone"].clone()).collect();
        assert_eq!(zones, ["a", "b", "c", "a"]);
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag_and_the_value() {
        type Change = Box<dyn Fn(&mut SimFlags)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|f| f.workers = 0), "--workers 0"),
            (
                Box::new(|f| f.workers = MAX_WORKERS + 1),
                "--workers 100001",
            ),
            (
                Box::new(|f| f.join = "nothing".into()),
                "--join \"nothing\"",
            ),
            (
                Box::new(|f| f.join = "DASH1-x@127.0.0.1:7071".into()),
                "not a Dash join token",
            ),
            (Box::new(|f| f.cpu = "0".into()), "--cpu \"0\""),
            (Box::new(|f| f.cpu = "eight".into()), "--cpu \"eight\""),
            (Box::new(|f| f.memory = "lots".into()), "--memory \"lots\""),
            (
                Box::new(|f| f.start_time = "2h".into()),
                "--start-time \"2h\"",
            ),
            (Box::new(|f| f.fail_rate = 1.5), "--fail-rate 1.5"),
            (Box::new(|f| f.fail_rate = f64::NAN), "--fail-rate NaN"),
            (
                Box::new(|f| f.labels = vec!["zone".into()]),
                "--labels \"zone\"",
            ),
            (
                Box::new(|f| f.labels = vec!["zone=a,zone=a".into()]),
                "zone=a is given twice",
            ),
            (
                Box::new(|f| f.name_prefix = "1x".into()),
                "--name-prefix \"1x\"",
            ),
            (Box::new(|f| f.join_rate = 0), "--join-rate 0"),
            (
                Box::new(|f| f.control = "here".into()),
                "--control \"here\"",
            ),
        ];
        for (change, expect) in cases {
            let mut f = good();
            change(&mut f);
            let e = SimConfig::from_flags(&f, Some(1 << 34)).unwrap_err();
            assert!(e.contains(expect), "{e:?} should contain {expect:?}");
        }
    }

    #[test]
    fn a_fleet_that_would_not_fit_is_refused_with_what_fits() {
        let mut f = good();
        f.workers = 100_000;
        let free = 1u64 << 30; // 1 GiB
        let e = SimConfig::from_flags(&f, Some(free)).unwrap_err();
        assert!(e.contains("--workers 100000"), "{e}");
        let fits = (free / 10 * 8) / (BYTES_PER_WORKER + 100 * BYTES_PER_REPLICA);
        assert!(
            e.contains(&format!("give --workers {fits} or fewer")),
            "{e}"
        );
        // The fleet that fits is accepted.
        f.workers = fits as u32;
        SimConfig::from_flags(&f, Some(free)).unwrap();
    }
}
