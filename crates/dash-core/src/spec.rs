//! The validated service specification: what `config_parser` produces and the store keeps.
//!
//! Every field here has already passed validation; durations are `Duration` (serialised as
//! milliseconds) and sizes are bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ServiceName;

/// A service: what to run and how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceSpec {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "web"))]
    pub name: ServiceName,
    /// Image reference, e.g. `busybox:latest`.
    pub image: String,
    /// Replaces the image's entrypoint when not empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub replicas: u32,
    /// `replicated` (default): `replicas` copies placed by the scheduler; `global`: one replica
    /// on every eligible node, including nodes that join later (`replicas` is ignored).
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub update: UpdatePolicy,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub placement: Placement,
    /// Host and path routes of the built-in proxy to this service's replicas.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// When to pull the image from its registry.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// How long a replica has to exit after SIGTERM before it gets SIGKILL.
    #[serde(with = "millis", default = "default_stop_grace")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub stop_grace: Duration,
    /// `[autoscale]`: the service_scaler sets `replicas` from the load.
    #[serde(default)]
    pub autoscale: Option<Autoscale>,
    /// The networks its replicas are on (DNS labels; `["default"]` when not given): a replica
    /// reaches the services that share one with it.
    #[serde(default = "default_networks")]
    pub networks: Vec<String>,
    /// `[security]`: the seccomp filter, capabilities beyond or below the default set.
    #[serde(default, skip_serializing_if = "Security::is_default")]
    pub security: Security,
    /// `[[secrets]]`: files under /run/secrets (a tmpfs) of its replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    /// `[[configs]]`: files at paths of their own in its replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    /// `service` (replicas that run until removed) or `job` (runs to completion).
    #[serde(default, skip_serializing_if = "crate::job::Kind::is_default")]
    pub kind: crate::job::Kind,
    /// A job's `[job]` and `[schedule]` (always set for `kind = "job"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::job::JobSpec>,
}

/// A secret or config a service's replicas get as a read-only file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileRef {
    /// The secret's (config's) name (`dash secret ls`).
    pub name: String,
    /// A secret: its file's name under /run/secrets (default: the name). A config: the
    /// absolute path of its file (default: `/<name>`).
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (default 0400 for a secret, 0444 for a config).
    pub mode: u32,
    /// The version its replicas get: the current one when the service was applied (or the
    /// secret updated); 0 in a service file.
    #[serde(default)]
    pub version: u64,
}

impl FileRef {
    /// Where the file is in the replica.
    pub fn path(&self, kind: crate::secret::Kind) -> String {
        match kind {
            crate::secret::Kind::Secret => {
                format!("{}/{}", crate::secret::SECRETS_DIR, self.target)
            }
            crate::secret::Kind::Config => self.target.clone(),
        }
    }
}

/// `[security]` of a service: what its replicas' processes may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Security {
    #[serde(default)]
    pub seccomp: Seccomp,
    /// Capabilities beyond [`DEFAULT_CAPABILITIES`] (`CAP_…`; `ALL` for every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities taken out of the set (`CAP_…`; `ALL` for every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// A user namespace of its own for each replica (65,536 host ids nobody else has);
    /// `None`: as the node says (`--default-userns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<bool>,
}

impl Security {
    pub fn is_default(&self) -> bool {
        *self == Security::default()
    }

    /// The replica's capabilities: the default set, without `cap_drop`, with `cap_add`.
    pub fn capabilities(&self) -> std::collections::BTreeSet<String> {
        let all = |list: &[String]| list.iter().any(|c| c == "ALL");
        let mut caps: std::collections::BTreeSet<String> = if all(&self.cap_drop) {
            Default::default()
        } else {
            DEFAULT_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .filter(|c| !self.cap_drop.contains(c))
                .collect()
        };
        if all(&self.cap_add) {
            caps.extend(CAPABILITIES.iter().map(|c| c.to_string()));
        } else {
            caps.extend(self.cap_add.iter().cloned());
        }
        caps
    }
}

/// The seccomp filter of a service's replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Seccomp {
    /// Dash's default profile (`crate::seccomp::default_profile`).
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile the service brings: `path` as the service file names it, `profile` its JSON
    /// (sent by `dash apply` with the file, checked by the masters).
    Profile { path: String, profile: String },
}

/// The capabilities a replica has unless its service says otherwise: containerd's and
/// Docker's default set without CAP_NET_RAW (as podman does): raw sockets let a process
/// forge packets on the node's bridge; a service that pings asks for it with `cap_add`.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Every Linux capability, by its name.
pub const CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// Whether `name` is a capability (`CAP_…`, as in [`CAPABILITIES`]).
pub fn is_capability(name: &str) -> bool {
    CAPABILITIES.contains(&name)
}

/// The network of a service that names none.
pub const DEFAULT_NETWORK: &str = "default";

pub fn default_networks() -> Vec<String> {
    vec![DEFAULT_NETWORK.to_string()]
}

/// The names the cluster's DNS answers for `spec`'s service: `NAME`, `NAME.<network>` for
/// each of its networks and `NAME.dash` (its virtual IP), and `tasks.NAME` (its ready
/// replicas).
pub fn dns_names(spec: &ServiceSpec) -> Vec<String> {
    let name = spec.name.as_str();
    std::iter::once(name.to_string())
        .chain(spec.networks.iter().map(|n| format!("{name}.{n}")))
        .chain([format!("{name}.dash"), format!("tasks.{name}")])
        .collect()
}

/// Keeps `replicas` between `min` and `max` so that the average load per replica stays near
/// its targets (at least one of them is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Autoscale {
    pub min: u32,
    pub max: u32,
    /// Average CPU use per replica, in percent of its `resources.cpu` (of one core when that
    /// is not set).
    #[serde(default)]
    pub cpu_percent: Option<u32>,
    /// Average memory use per replica, in percent of its `resources.memory`.
    #[serde(default)]
    pub memory_percent: Option<u32>,
    /// Requests per second per replica through the service's proxy routes.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// How long the load must call for fewer replicas before they are removed.
    #[serde(with = "millis", default = "default_scale_down_delay")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub scale_down_delay: Duration,
}

/// One minute: short bursts of quiet do not take replicas away.
pub fn default_scale_down_delay() -> Duration {
    Duration::from_secs(60)
}

/// Docker's and Swarm's default: 10 s.
pub fn default_stop_grace() -> Duration {
    Duration::from_secs(10)
}

impl ServiceSpec {
    /// Whether a change from `self` to `new` needs its replicas replaced (anything that shapes
    /// the container), as opposed to a change only the master acts on (replicas, labels, update).
    pub fn needs_replacement(&self, new: &ServiceSpec) -> bool {
        self.image != new.image
            || self.command != new.command
            || self.args != new.args
            || self.env != new.env
            || self.resources != new.resources
            || self.ports != new.ports
            || self.health != new.health
            || self.restart != new.restart
            || self.pull_policy != new.pull_policy
            || self.security != new.security
            || self.secrets != new.secrets
            || self.configs != new.configs
            || self.kind != new.kind
    }

    /// Whether this is a job (`kind = "job"`).
    pub fn is_job(&self) -> bool {
        self.kind == crate::job::Kind::Job
    }
}

/// A route of the built-in L7 proxy: requests for `host` (exact, or `*.suffix`) under
/// `path_prefix` go to `port` of a ready replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteSpec {
    pub host: String,
    pub path_prefix: String,
    #[serde(default)]
    pub strip_prefix: bool,
    /// The container port.
    pub port: u16,
}

/// How a service's replicas are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Replicated,
    Global,
}

/// When a node pulls a service's image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull only when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Pull before every start of a replica (blobs already present are not fetched again).
    Always,
    /// Never pull: the image must have been imported or pulled before.
    Never,
}

/// CPU in millicores and memory in bytes; zero means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resources {
    #[serde(default)]
    pub cpu_millis: u32,
    #[serde(default)]
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A container port, optionally published on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortSpec {
    pub container: u16,
    #[serde(default)]
    pub published: Option<u16>,
    pub protocol: Protocol,
}

/// How a replica's health is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Probe {
    /// HTTP GET of `path` on `port`; 2xx and 3xx are healthy.
    Http { path: String, port: u16 },
    /// A TCP connect to `port`.
    Tcp { port: u16 },
    /// A command run inside the container; exit 0 is healthy.
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    pub probe: Probe,
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub interval: Duration,
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub start_period: Duration,
    /// Stop an unhealthy replica and start it again (the restart policy applies), as Swarm
    /// does; false: it only leaves its routes until it passes again.
    #[serde(default)]
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }
}

/// What happens when a replica's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// 0 = no limit.
    pub max_attempts: u32,
    /// Delay before the second restart; the first is immediate. Doubles each time.
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub backoff: Duration,
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Always,
            max_attempts: 0,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RestartPolicy {
    /// Whether a replica that exited with `code` after `restarts` restarts should run again.
    pub fn should_restart(&self, code: i32, restarts: u32) -> bool {
        let wanted = match self.condition {
            RestartCondition::Always => true,
            RestartCondition::OnFailure => code != 0,
            RestartCondition::Never => false,
        };
        wanted && (self.max_attempts == 0 || restarts < self.max_attempts)
    }

    /// The delay before restart number `restarts + 1`: immediate for the first, then
    /// `backoff * 2^(n-1)` capped at `max_backoff`.
    pub fn delay(&self, restarts: u32) -> Duration {
        if restarts == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(restarts - 1).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// How replicas are replaced when the spec changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdatePolicy {
    pub parallelism: u32,
    #[serde(with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub delay: Duration,
    pub order: UpdateOrder,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay: Duration::ZERO,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// A constraint on node labels: `key == value` or `key != value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Constraint {
    pub key: String,
    pub equal: bool,
    pub value: String,
}

impl Constraint {
    /// Parses `node.labels.zone == a`, `zone != b` (the `node.labels.` prefix is optional),
    /// or `node.name == n1`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, equal, value) = if let Some((k, v)) = text.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = text.split_once("!=") {
            (k, false, v)
        } else {
            return Err("expected `key == value` or `key != value`".into());
        };
        let key = key.trim();
        let key = key.strip_prefix("node.labels.").unwrap_or(key);
        let value = value.trim().trim_matches('"');
        if key.is_empty() || value.is_empty() {
            return Err("both sides of the constraint must be non-empty".into());
        }
        Ok(Self {
            key: key.to_string(),
            equal,
            value: value.to_string(),
        })
    }

    /// Whether a node with this name and these labels satisfies the constraint.
    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        let actual = if self.key == "node.name" {
            Some(node_name)
        } else {
            labels.get(&self.key).map(String::as_str)
        };
        (actual == Some(self.value.as_str())) == self.equal
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{} {op} {}", self.key, self.value)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// 0 = no limit.
    #[serde(default)]
    pub max_per_node: u32,
}

/// Serde helper: a `Duration` as whole milliseconds.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_and_caps() {
        let p = RestartPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(p.delay(0), Duration::ZERO);
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(5), Duration::from_secs(1));
        assert_eq!(p.delay(100), Duration::from_secs(1));
    }

    #[test]
    fn restart_conditions() {
        let mut p = RestartPolicy {
            condition: RestartCondition::OnFailure,
            max_attempts: 2,
            ..Default::default()
        };
        assert!(p.should_restart(1, 0));
        assert!(!p.should_restart(0, 0));
        assert!(!p.should_restart(1, 2));
        p.condition = RestartCondition::Never;
        assert!(!p.should_restart(1, 0));
    }

    #[test]
    fn constraints() {
        let c = Constraint::parse("node.labels.zone == a").unwrap();
        let mut labels = BTreeMap::new();
        assert!(!c.matches("n1", &labels));
        labels.insert("zone".into(), "a".into());
        assert!(c.matches("n1", &labels));
        let c = Constraint::parse("node.name != n1").unwrap();
        assert!(!c.matches("n1", &labels));
        assert!(Constraint::parse("zone = a").is_err());
    }
}
