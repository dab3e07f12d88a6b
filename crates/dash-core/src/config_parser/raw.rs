//! The service file as written: every value keeps its span for diagnostics.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub name: Spanned<String>,
    pub image: Spanned<String>,
    pub command: Option<Spanned<StringOrList>>,
    pub args: Option<Spanned<Vec<String>>>,
    pub env: Option<BTreeMap<String, Spanned<Scalar>>>,
    pub replicas: Option<Spanned<i64>>,
    pub mode: Option<Spanned<String>>,
    pub resources: Option<RawResources>,
    pub ports: Option<Vec<Spanned<RawPort>>>,
    pub health: Option<Spanned<RawHealth>>,
    pub restart: Option<Spanned<RawRestart>>,
    pub update: Option<RawUpdate>,
    pub labels: Option<BTreeMap<String, Spanned<String>>>,
    pub placement: Option<RawPlacement>,
    pub stop_grace_period: Option<Spanned<String>>,
    pub pull_policy: Option<Spanned<String>>,
    pub routes: Option<Vec<Spanned<RawRoute>>>,
    pub autoscale: Option<Spanned<RawAutoscale>>,
    pub networks: Option<Spanned<Vec<String>>>,
    pub security: Option<RawSecurity>,
    pub secrets: Option<Vec<Spanned<RawFileRef>>>,
    pub configs: Option<Vec<Spanned<RawFileRef>>>,
    pub kind: Option<Spanned<String>>,
    pub job: Option<Spanned<RawJob>>,
    pub schedule: Option<Spanned<RawSchedule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub completions: Option<Spanned<i64>>,
    pub parallelism: Option<Spanned<i64>>,
    pub backoff_limit: Option<Spanned<i64>>,
    pub deadline: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub cron: Spanned<String>,
    pub timezone: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<String>>,
    pub starting_deadline: Option<Spanned<String>>,
    pub history: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFileRef {
    pub name: Spanned<String>,
    pub target: Option<Spanned<String>>,
    pub uid: Option<Spanned<i64>>,
    pub gid: Option<Spanned<i64>>,
    pub mode: Option<Spanned<ModeValue>>,
}

/// File permission bits: an integer (`0o440`, `288`) or an octal string (`"0440"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ModeValue {
    Integer(i64),
    String(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurity {
    pub seccomp: Option<Spanned<String>>,
    pub cap_add: Option<Spanned<Vec<String>>>,
    pub cap_drop: Option<Spanned<Vec<String>>>,
    pub user_namespace: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoscale {
    pub min: Option<Spanned<i64>>,
    pub max: Spanned<i64>,
    pub cpu_percent: Option<Spanned<i64>>,
    pub memory_percent: Option<Spanned<i64>>,
    pub requests_per_second: Option<Spanned<i64>>,
    pub scale_down_delay: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub host: Spanned<String>,
    pub path_prefix: Option<Spanned<String>>,
    pub strip_prefix: Option<bool>,
    pub port: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    String(String),
    List(Vec<String>),
}

/// Env values may be written as strings, integers, floats or booleans.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn into_string(self) -> String {
        match self {
            Scalar::String(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Number {
    Integer(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(&self) -> f64 {
        match self {
            Number::Integer(i) => *i as f64,
            Number::Float(f) => *f,
        }
    }
}

/// A size: `"64MiB"` or a plain number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    pub cpu: Option<Spanned<Number>>,
    pub memory: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub container: Spanned<i64>,
    pub published: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    /// HTTP path to GET, e.g. "/healthz".
    pub http: Option<Spanned<String>>,
    /// `tcp = true`: connect to `port`.
    pub tcp: Option<Spanned<bool>>,
    /// A command run in the container.
    pub exec: Option<Spanned<StringOrList>>,
    pub port: Option<Spanned<i64>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub start_period: Option<Spanned<String>>,
    /// Stop and restart an unhealthy replica.
    pub restart: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestart {
    pub policy: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    pub parallelism: Option<Spanned<i64>>,
    pub delay: Option<Spanned<String>>,
    pub order: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlacement {
    pub constraints: Option<Vec<Spanned<String>>>,
    pub max_per_node: Option<Spanned<i64>>,
}
