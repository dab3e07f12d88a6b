//! /metrics in the Prometheus text format (0.0.4), as every Dash daemon serves it. Two kinds
//! of series meet here:
//!
//! - instruments that live with the process (request counters, latency histograms), kept in
//!   a prometheus-client [`Registry`] by whoever counts;
//! - values read at scrape time (a replica's CPU seconds from its cgroup, replicas by state
//!   from the store): a [`Snapshot`] built per scrape, so a scrape sees the state of that
//!   moment and nothing is kept between scrapes.
//!
//! [`render`] encodes both, in that order, with the `# HELP`/`# TYPE` lines Prometheus and
//! promtool expect.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A sample's labels, in order.
pub type Labels = Vec<(String, String)>;

/// What one family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Goes only up (rendered with a `_total` suffix).
    Counter,
    Gauge,
    Histogram,
}

/// One sample's value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    /// `buckets`: (upper bound, count in that bucket alone), the last bound +Inf.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Debug, Clone)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, Value)>,
}

/// Series read at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    families: Vec<Family>,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name,
                    help,
                    kind,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    /// Adds `other`'s families (a family in both keeps the first's help and kind).
    pub fn extend(&mut self, other: Snapshot) {
        for f in other.families {
            let mine = self.family(f.name, f.help, f.kind);
            mine.samples.extend(f.samples);
        }
    }

    /// Declares a family even when it has no sample this time (a dashboard then knows it).
    pub fn declare(&mut self, name: &'static str, help: &'static str, kind: Kind) {
        self.family(name, help, kind);
    }

    /// A counter's value (`name` without `_total`: it is added on rendering).
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, v: f64) {
        self.family(name, help, Kind::Counter)
            .samples
            .push((labels, Value::Number(v)));
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, v: f64) {
        self.family(name, help, Kind::Gauge)
            .samples
            .push((labels, Value::Number(v)));
    }

    /// A histogram from per-bucket counts (`bounds[i]` the upper bound of `counts[i]`; a
    /// count beyond the bounds is the +Inf bucket).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let mut buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (bounds.get(i).copied().unwrap_or(f64::INFINITY), *c))
            .collect();
        if buckets.last().is_none_or(|(b, _)| b.is_finite()) {
            buckets.push((f64::INFINITY, 0));
        }
        let count = counts.iter().sum();
        self.family(name, help, Kind::Histogram).samples.push((
            labels,
            Value::Histogram {
                sum,
                count,
                buckets,
            },
        ));
    }
}

/// One sample as prometheus-client encodes it.
struct One<'a>(&'a Value, Kind);

impl EncodeMetric for One<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match (self.0, self.1) {
            (Value::Number(v), Kind::Counter) => {
                encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(v, None)
            }
            (Value::Number(v), _) => encoder.encode_gauge(v),
            (
                Value::Histogram {
                    sum,
                    count,
                    buckets,
                },
                _,
            ) => encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                *sum, *count, buckets, None,
            ),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self.1 {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        }
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut family = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (labels, value) in &f.samples {
                let sample = family.encode_family(labels)?;
                One(value, f.kind).encode(sample)?;
            }
        }
        Ok(())
    }
}

/// The text of a scrape: `live` (the process's instruments, if any) then `snapshot`.
pub fn render(live: Option<&Registry>, snapshot: Snapshot) -> String {
    let mut out = String::new();
    if let Some(r) = live {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, r);
    }
    let mut scrape = Registry::default();
    scrape.register_collector(Box::new(snapshot));
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &scrape);
    out
}

/// This process's CPU time and resident memory (the standard `process_*` names), from
/// /proc/self; what cannot be read is left out.
pub fn process_metrics(s: &mut Snapshot) {
    // utime and stime are the 14th and 15th fields, counted after the ")" that ends the
    // command (which may hold spaces), in USER_HZ ticks: 100 a second in Linux's user ABI.
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            Some((tick(11)? + tick(12)?) / 100.0)
        });
    if let Some(seconds) = cpu {
        s.counter(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            Vec::new(),
            seconds,
        );
    }
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        });
    if let Some(kib) = rss_kib {
        s.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Vec::new(),
            kib * 1024.0,
        );
    }
}

/// `[(k, v), …]` as labels.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_counters_gauges_and_histograms() {
        let mut s = Snapshot::new();
        s.counter(
            "container_cpu_usage_seconds",
            "Cumulative cpu time consumed in seconds.",
            labels([("service", "web"), ("replica", "web-1")]),
            1.5,
        );
        s.gauge("dash_services", "Services.", Vec::new(), 2.0);
        s.declare("dash_empty", "Nothing now.", Kind::Gauge);
        s.histogram(
            "dash_proxy_request_duration_seconds",
            "Latency.",
            labels([("service", "web")]),
            &[0.001, 0.01],
            &[3, 1, 2],
            0.5,
        );
        let text = render(None, s);
        assert!(
            text.contains("# TYPE container_cpu_usage_seconds_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "container_cpu_usage_seconds_total{service=\"web\",replica=\"web-1\"} 1.5\n"
            ),
            "{text}"
        );
        assert!(text.contains("dash_services 2.0\n"), "{text}");
        assert!(text.contains("# TYPE dash_empty gauge\n"), "{text}");
        // Cumulative buckets, +Inf equal to the count.
        assert!(
            text.contains(
                "dash_proxy_request_duration_seconds_bucket{service=\"web\",le=\"0.001\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "dash_proxy_request_duration_seconds_bucket{service=\"web\",le=\"0.01\"} 4\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "dash_proxy_request_duration_seconds_bucket{service=\"web\",le=\"+Inf\"} 6\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("dash_proxy_request_duration_seconds_count{service=\"web\"} 6\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "the Prometheus format has no EOF line"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Snapshot::new();
        s.gauge("g", "h", labels([("path", "/a\"b\\c\nd")]), 1.0);
        let text = render(None, s);
        assert!(text.contains(r#"g{path="/a\"b\\c\nd"} 1.0"#), "{text}");
    }

    #[test]
    fn process_metrics_are_read() {
        let mut s = Snapshot::new();
        process_metrics(&mut s);
        let text = render(None, s);
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
}
