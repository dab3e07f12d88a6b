//! The admin API's request and response bodies, shared by the server and the CLI.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::{Resources, ServiceSpec};

/// Where a replica is in its life. Shown in `dash ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Not placed yet, or placed and not yet picked up by its node.
    Pending,
    /// Image, network and container being set up.
    Starting,
    /// Its process runs (no health check, or none passed yet).
    Running,
    Healthy,
    Unhealthy,
    /// Its process ended; the restart policy decides what next.
    Exited,
    /// Could not be started, or exhausted its restart policy.
    Failed,
    /// Being stopped and removed.
    Stopping,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Stopping => "stopping",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "starting" => Self::Starting,
            "running" => Self::Running,
            "healthy" => Self::Healthy,
            "unhealthy" => Self::Unhealthy,
            "exited" => Self::Exited,
            "failed" => Self::Failed,
            "stopping" => Self::Stopping,
            _ => return None,
        })
    }
}

/// What the master wants of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Run,
    /// Stopped and kept, with its logs (an attempt of a job's run that is over): the node
    /// stops its container if it still runs and never starts it again.
    Stop,
    Remove,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Stop => "stop",
            Self::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaInfo {
    pub id: String,
    pub service: String,
    /// The service version this replica runs.
    pub version: u64,
    pub node: Option<String>,
    pub desired: DesiredState,
    pub state: ReplicaState,
    pub ip: Option<String>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub message: String,
    /// The run of a job this replica is an attempt of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// Its node starts it at this instant, not before (ms since the epoch; a job's run
    /// recorded ahead of its slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    pub spec: ServiceSpec,
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Replicas that run and pass their health check (if any).
    pub ready: u32,
    pub replicas: Vec<ReplicaInfo>,
    /// "" when settled, else what the rolling update is doing.
    #[serde(default)]
    pub update_status: String,
    /// Its virtual IP (a service with ports), from the cluster's service range.
    #[serde(default)]
    pub vip: Option<String>,
    /// The names the cluster's DNS answers for it: the service (`web`, `web.<network>`,
    /// `web.dash`: its virtual IP) and `tasks.web` (its ready replicas).
    #[serde(default)]
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Ready,
    Unreachable,
    Down,
    Drained,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Unreachable => "unreachable",
            Self::Down => "down",
            Self::Drained => "drained",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => Self::Ready,
            "unreachable" => Self::Unreachable,
            "down" => Self::Down,
            "drained" => Self::Drained,
            _ => return None,
        })
    }
}

/// What a node is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// `dash server`: a master that also runs replicas.
    Server,
    /// `dash server --no-worker`: a master that runs none.
    Master,
    /// `dash worker`: runs replicas, holds no cluster state.
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Master => "master",
            Self::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "server" => Self::Server,
            "master" => Self::Master,
            "worker" => Self::Worker,
            _ => return None,
        })
    }

    /// Whether the scheduler may place replicas on it.
    pub fn runs_replicas(self) -> bool {
        self != Self::Master
    }

    /// Whether it is one of the masters (they cannot join again as workers, nor be removed).
    pub fn is_master(self) -> bool {
        matches!(self, Self::Server | Self::Master)
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    pub id: String,
    pub address: String,
    pub role: NodeRole,
    pub state: NodeState,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub allocated: Resources,
    pub replicas: u32,
    pub subnet: String,
    pub runtime: String,
    pub last_seen_ms: u64,
    /// A master's place among the masters (leader, follower or learner), as the answering
    /// master sees it; absent for workers and for a master without a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<String>,
}

/// `GET /v1/cluster`: the masters' Raft as the leader sees it (`dash cluster status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    /// The leader's node name (None while there is none).
    pub leader: Option<String>,
    pub term: u64,
    /// The last log index a majority has.
    pub commit_index: u64,
    /// The master whose view this is (the leader, when one is known).
    pub answered_by: String,
    pub masters: Vec<MasterStatus>,
}

/// One master in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MasterStatus {
    pub name: String,
    /// Its master_api address.
    pub address: String,
    /// leader, follower or learner.
    pub role: String,
    /// The last log index the leader knows it has (leader's view only).
    pub match_index: Option<u64>,
    /// Entries it is behind the leader's last one.
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it.
    pub last_contact_ms: Option<u64>,
}

/// A token as `dash token ls` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: String,
    pub role: String,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRequest {
    /// `read`, `deploy`, `admin` (the admin API) or `worker`, `master` (joining a node).
    #[cfg_attr(feature = "openapi", schema(value_type = TokenRole))]
    pub role: String,
    /// Lifetime in seconds, 1 to 10 years; none: valid until revoked.
    #[serde(default, deserialize_with = "whole_number::option_u64")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 315360000))]
    pub ttl_s: Option<u64>,
}

/// The roles a token can grant: the values `TokenRequest::role` takes (the field stays a
/// string so that the server, not the JSON decoder, says what is wrong with another one).
/// `read`, `deploy` and `admin` open the admin API; `worker` and `master` join a node.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TokenRole {
    Read,
    Deploy,
    Admin,
    Worker,
    Master,
}

/// A write through the admin API, as `dash audit` shows it: who, what, when, from where, and
/// how it ended (refusals included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Order in the state (given when recorded; 0 in a proposal).
    #[serde(default)]
    pub seq: u64,
    pub at_ms: u64,
    /// `token <id>` for a token of `dash token create`, `admin.token` for the data dir's own,
    /// `oidc <subject>` for an OpenID Connect login.
    pub who: String,
    /// The caller's role: `read`, `deploy` or `admin`.
    pub role: String,
    pub method: String,
    pub path: String,
    /// What the request was about when the path does not say it (e.g. `service web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The caller's address as this master saw it.
    pub source: String,
    /// The master that answered.
    pub master: String,
    /// The HTTP status of the answer (403: refused for the role).
    pub status: u16,
}

/// A secret or config as `dash secret ls` and `inspect` show it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    pub kind: crate::secret::Kind,
    pub name: String,
    /// The current version (1 at creation, one more at each update).
    pub version: u64,
    /// The current version's size.
    pub size_bytes: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The versions kept: the current one, and older ones replicas still use.
    pub versions: Vec<u64>,
    /// The services that list it, with the version their replicas get.
    pub services: Vec<SecretUse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretUse {
    pub service: String,
    pub version: u64,
}

/// `POST /v1/secrets`, `POST /v1/configs`: a new one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretCreate {
    /// 1 to 64 letters, digits, `.`, `_`, `-`.
    #[cfg_attr(feature = "openapi", schema(schema_with = patterns::secret_name))]
    pub name: String,
    /// The value, base64 (at most 500 KiB once decoded).
    #[cfg_attr(feature = "openapi", schema(schema_with = patterns::secret_data))]
    pub data: String,
}

/// `PUT /v1/secrets/{name}`, `PUT /v1/configs/{name}`: a new version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretUpdate {
    /// The value, base64 (at most 500 KiB once decoded).
    #[cfg_attr(feature = "openapi", schema(schema_with = patterns::secret_data))]
    pub data: String,
}

/// A file a replica gets: a secret's or config's value at the version its spec has (worker
/// side only: sent to the node that runs the replica, over mutual TLS).
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicaFile {
    pub kind: crate::secret::Kind,
    pub name: String,
    pub version: u64,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for ReplicaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReplicaFile({} {} v{}, {} bytes)",
            self.kind.as_str(),
            self.name,
            self.version,
            self.data.len()
        )
    }
}

/// `GET /v1/login` (no token needed): how people log in to this cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginInfo {
    /// The OpenID Connect provider (`dash login --oidc`); none: tokens of `dash token create`.
    pub oidc: Option<OidcInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcInfo {
    pub issuer: String,
    pub client_id: String,
    /// What to ask the provider for, space-separated.
    pub scopes: String,
}

/// `POST /v1/login/device` (no token needed): a device login started with the provider for a
/// browser (the portal), which cannot reach the provider itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceLogin {
    /// What `POST /v1/login/token` takes back.
    pub device_code: String,
    /// What the person confirms at `verification_uri`.
    pub user_code: String,
    pub verification_uri: String,
    /// The page with the code filled in, when the provider has one.
    pub verification_uri_complete: Option<String>,
    /// Ask for the token no more often than this.
    pub interval_s: u64,
    pub expires_in_s: u64,
}

/// `POST /v1/login/token` (no token needed): exactly one of a device login's code (is it
/// confirmed yet?) or a refresh token (a new ID token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginGrant {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub device_code: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub refresh_token: Option<String>,
}

/// The answer of `POST /v1/login/token`: the ID token is the bearer token of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginTokens {
    pub id_token: String,
    pub refresh_token: Option<String>,
}

/// `GET /v1/whoami`: the caller, as the admin API sees its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    /// As the audit log names it: `token <id>`, `admin.token`, `oidc <subject>`.
    pub who: String,
    /// `read`, `deploy` or `admin`.
    pub role: String,
    /// The answering master.
    pub master: String,
}

/// `POST /v1/tokens`: the token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    pub token: String,
    pub info: TokenInfo,
}

/// `POST /v1/services`: a service file, parsed and validated by the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyRequest {
    /// File name, for error messages.
    pub file_name: String,
    /// The TOML text (docs/service-file.md); an invalid one is answered 400 with every problem
    /// in `diagnostics`.
    pub content: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Files the service file names (`security.seccomp`'s profile), by the path as written
    /// there, with their text: `dash apply` reads them beside the service file.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    Created,
    Updated,
    Unchanged,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyResponse {
    pub service: String,
    pub action: ApplyAction,
    pub version: u64,
    /// One line per changed field: `replicas: 3 -> 5`.
    pub changes: Vec<String>,
    /// What the reconciler will do: `create 2 replicas`, `replace 3 replicas one at a time`.
    pub plan: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScaleRequest {
    /// 0 to 100000 (`config_parser::MAX_REPLICAS`); an autoscaled service also keeps within its
    /// `[autoscale]` min and max (else 400).
    #[serde(deserialize_with = "whole_number::u32")]
    #[cfg_attr(feature = "openapi", schema(maximum = 100000))]
    pub replicas: u32,
}

/// JSON Schema, and so the OpenAPI document, counts `3.0` as the integer 3, and so do the
/// request fields that use these instead of serde's integers (which refuse a float).
pub mod whole_number {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{Error, Unexpected, Visitor};

    struct WholeNumber;

    impl<'de> Visitor<'de> for WholeNumber {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number from 0 to 18446744073709551615")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
            // 2^64 is the first float past u64::MAX; NaN and the infinities fail `fract`.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    /// A `u32` written as `7` or `7.0`.
    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let v = d.deserialize_u64(WholeNumber)?;
        u32::try_from(v).map_err(|_| {
            D::Error::invalid_value(
                Unexpected::Unsigned(v),
                &"a whole number from 0 to 4294967295",
            )
        })
    }

    /// An optional `u64` written as `7` or `7.0`, or `null`.
    pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        struct Optional;

        impl<'de> Visitor<'de> for Optional {
            type Value = Option<u64>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number or null")
            }

            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_u64(WholeNumber).map(Some)
            }
        }

        d.deserialize_option(Optional)
    }

    #[cfg(test)]
    mod tests {
        use crate::api::{ScaleRequest, TokenRequest};

        #[test]
        fn whole_numbers_are_taken_as_written_either_way_and_nothing_else() {
            let replicas = |json: &str| {
                serde_json::from_str::<ScaleRequest>(&format!(r#"{{"replicas": {json}}}"#))
                    .map(|r| r.replicas)
                    .map_err(|e| e.to_string())
            };
            assert_eq!(replicas("3"), Ok(3));
            assert_eq!(replicas("118.0"), Ok(118));
            assert_eq!(replicas("1e2"), Ok(100));
            assert_eq!(replicas("4294967295"), Ok(u32::MAX));
            for bad in [
                "3.5",
                "-1",
                "-1.0",
                "4294967296",
                "1e20",
                "\"3\"",
                "null",
                "true",
            ] {
                assert!(replicas(bad).is_err(), "{bad} was taken");
            }
            assert!(replicas("4294967296").unwrap_err().contains("4294967295"));
            let ttl = |json: &str| {
                serde_json::from_str::<TokenRequest>(json)
                    .map(|r| r.ttl_s)
                    .map_err(|e| e.to_string())
            };
            assert_eq!(ttl(r#"{"role": "worker"}"#), Ok(None));
            assert_eq!(ttl(r#"{"role": "worker", "ttl_s": null}"#), Ok(None));
            assert_eq!(ttl(r#"{"role": "worker", "ttl_s": 60.0}"#), Ok(Some(60)));
            assert_eq!(
                ttl(r#"{"role": "worker", "ttl_s": 18446744073709551615}"#),
                Ok(Some(u64::MAX))
            );
            assert!(ttl(r#"{"role": "worker", "ttl_s": 0.5}"#).is_err());
            assert!(ttl(r#"{"role": "worker", "ttl_s": 18446744073709551616.0}"#).is_err());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size_bytes: u64,
    pub created: Option<String>,
    pub layers: usize,
}

/// Every error body: `{code, message, field}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable, machine-readable: `not_found`, `invalid`, `unauthorized`, `conflict`, `internal`.
    pub code: String,
    pub message: String,
    /// The field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem of an invalid service file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// `GET /v1/logs` line: which replica said what.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub replica: String,
    pub line: String,
}

/// A replica a node must run (or remove): what the master's assignment stream carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub replica: String,
    pub service: String,
    pub version: u64,
    pub spec: ServiceSpec,
    pub desired: DesiredState,
    /// Start the container at this instant, not before (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_ms: Option<u64>,
    /// The run of a job it is an attempt of (its container gets `DASH_JOB_RUN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
}

/// `POST /v1/images/pull`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullRequest {
    /// `registry/repository:tag` or `…@sha256:…`.
    #[cfg_attr(feature = "openapi", schema(schema_with = patterns::image_reference))]
    pub reference: String,
}

/// The regular expressions the OpenAPI document gives for the strings the server parses
/// itself (ECMA 262, as JSON Schema reads them): exactly what the parsers take. A lookahead at
/// the start holds the length limit (at most 255 characters of repository name), which the
/// rest of the pattern cannot count.
pub mod patterns {
    /// A host name label: letters, digits and inner dashes.
    macro_rules! label {
        () => {
            r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
        };
    }
    macro_rules! port {
        () => {
            r":[0-9]{1,5}"
        };
    }
    /// A repository path component: `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
    macro_rules! component {
        () => {
            r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
        };
    }
    /// A registry name as `check_registry` takes it: a host with a `.` or a port, or localhost.
    macro_rules! registry_host {
        () => {
            concat!(
                "(?:",
                label!(),
                r"(?:\.",
                label!(),
                ")+(?:",
                port!(),
                ")?|",
                label!(),
                port!(),
                "|localhost)"
            )
        };
    }
    /// What Rust's `str::trim` removes (Unicode White_Space; ECMA's `\s` differs by two).
    macro_rules! space {
        () => {
            r"[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
        };
    }

    /// `image_ref::normalize`: `[host[:port]/]path[:tag][@sha256:<64 hex>]`. The first of
    /// several path parts is a host when it has a `.`, a `:` or an upper-case letter (or is
    /// `localhost`), else a path component.
    pub const IMAGE_REFERENCE: &str = concat!(
        r"^(?=[^@]{1,255}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@|$))",
        "(?:",
        component!(),
        "|(?:",
        label!(),
        r"(?:\.",
        label!(),
        ")*(?:",
        port!(),
        ")?",
        "|",
        r"[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*",
        ")(?:/",
        component!(),
        ")+)",
        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
    );

    /// A registry in a request body (`POST /v1/registries/login`): `host[:port]` of at most
    /// 253 characters (`host/x` is a repository name), spaces around it allowed.
    pub const REGISTRY: &str = concat!(
        "^(?=",
        space!(),
        r"*[\s\S]{1,253}",
        space!(),
        "*$)",
        space!(),
        "*",
        registry_host!(),
        space!(),
        "*$"
    );

    /// A registry in a path (`DELETE /v1/registries/{registry}`): as [`REGISTRY`], and a
    /// scheme before it and a path after it are dropped, as in docker's config.json.
    pub const REGISTRY_IN_PATH: &str = concat!(
        "^(?=",
        space!(),
        "*(?!",
        space!(),
        r")(?:https?://|(?!https?://))[^/]{1,253}(?:/|",
        space!(),
        "*$))",
        space!(),
        "*(?:https?://)?",
        registry_host!(),
        r"(?:/[\s\S]*)?",
        space!(),
        "*$"
    );

    /// A secret's or config's name (`secret::check_name`).
    pub const SECRET_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

    /// Standard base64 with its padding, as the server decodes a value.
    pub const BASE64: &str = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

    /// The schema of a secret's or config's name.
    #[cfg(feature = "openapi")]
    pub fn secret_name() -> utoipa::openapi::Object {
        string(
            SECRET_NAME,
            "1 to 64 letters, digits, `.`, `_`, `-`, starting with a letter or digit",
        )
    }

    /// The schema of a secret's or config's value: base64 of at most 500 KiB.
    #[cfg(feature = "openapi")]
    pub fn secret_data() -> utoipa::openapi::Object {
        let mut o = string(BASE64, "the value, base64 (at most 500 KiB once decoded)");
        o.max_length = Some(crate::secret::MAX_BYTES.div_ceil(3) * 4);
        o
    }

    #[cfg(feature = "openapi")]
    fn string(pattern: &str, description: &str) -> utoipa::openapi::Object {
        use utoipa::openapi::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
            .build()
    }

    /// The schema of an image reference.
    #[cfg(feature = "openapi")]
    pub fn image_reference() -> utoipa::openapi::Object {
        string(
            IMAGE_REFERENCE,
            "`[registry/]repository[:tag]` or `…@sha256:<hex>`, as docker reads it; the \
             repository name has at most 255 characters",
        )
    }

    /// The schema of a registry name in a body.
    #[cfg(feature = "openapi")]
    pub fn registry() -> utoipa::openapi::Object {
        string(
            REGISTRY,
            "`host[:port]`: a host with a '.' or a port, or localhost (else it reads as a \
             docker.io repository)",
        )
    }

    /// The schema of a registry name in a path.
    #[cfg(feature = "openapi")]
    pub fn registry_in_path() -> utoipa::openapi::Object {
        string(
            REGISTRY_IN_PATH,
            "`host[:port]` as for login (a scheme before it and a path after it are dropped)",
        )
    }
}

/// One line of a pull's progress stream (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PullEvent {
    /// The manifest is known: its layers and their sizes.
    Resolved {
        reference: String,
        manifest_digest: String,
        layers: Vec<PullLayer>,
    },
    /// Bytes of one blob received so far.
    Blob {
        digest: String,
        done: u64,
        total: u64,
    },
    /// A blob is complete (`cached`: it was already here).
    BlobDone {
        digest: String,
        cached: bool,
    },
    Unpacking,
    Done {
        image: ImageInfo,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullLayer {
    pub digest: String,
    pub size_bytes: u64,
}

/// `POST /v1/registries/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// `host[:port]`.
    #[cfg_attr(feature = "openapi", schema(schema_with = patterns::registry))]
    pub registry: String,
    /// Not empty, without `:` (else 401, as the registry would answer).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[^:]+$"))]
    pub username: String,
    pub password: String,
}

/// `POST /v1/images/prune`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PruneReport {
    pub images_removed: u64,
    pub blobs_removed: u64,
    pub layers_removed: u64,
    pub bytes_freed: u64,
}

/// A route and the replicas that may serve it now (ready, with an address).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub service: String,
    pub route: crate::spec::RouteSpec,
    /// `(replica id, replica ip)`.
    pub upstreams: Vec<(String, String)>,
}

/// What every node knows of a service for its DNS (and its virtual IP maps): built by the
/// masters from the state, sent to every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoints {
    pub service: String,
    /// Its virtual IP (a service with ports).
    pub vip: Option<String>,
    pub networks: Vec<String>,
    pub ports: Vec<crate::spec::PortSpec>,
    /// The addresses of its replicas that run and pass their health check (if any).
    pub ready: Vec<String>,
    /// The addresses of all its live replicas, ready or not (who asks, by address).
    pub members: Vec<String>,
}

/// `GET /v1/networks`: a network and what is on it. Networks exist while a service names them
/// (`networks` in its file; `default` when it names none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkInfo {
    pub name: String,
    pub services: Vec<NetworkService>,
    /// Live replicas on it (with an address), all services together.
    pub replicas: u32,
    /// What every node enforces for it.
    pub rules: Vec<String>,
}

/// A service on a network, as [`NetworkInfo`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkService {
    pub name: String,
    pub vip: Option<String>,
    /// `port/protocol` of its virtual IP.
    pub ports: Vec<String>,
    /// Ready replicas' addresses (the virtual IP leads to these).
    pub ready: Vec<String>,
}

/// The networks the services name, by name, from the services' endpoints.
pub fn networks_of(endpoints: &[ServiceEndpoints]) -> Vec<NetworkInfo> {
    let mut by: std::collections::BTreeMap<&str, NetworkInfo> = Default::default();
    for e in endpoints {
        for n in &e.networks {
            let info = by.entry(n.as_str()).or_insert_with(|| NetworkInfo {
                name: n.clone(),
                services: Vec::new(),
                replicas: 0,
                rules: Vec::new(),
            });
            info.replicas += e.members.len() as u32;
            info.services.push(NetworkService {
                name: e.service.clone(),
                vip: e.vip.clone(),
                ports: e
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.container, p.protocol.as_str()))
                    .collect(),
                ready: e.ready.clone(),
            });
        }
    }
    by.into_values()
        .map(|mut n| {
            n.rules = vec![
                format!(
                    "replicas of {} may connect to each other (by address or virtual IP), on every node",
                    n.services
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "replicas on no shared network are dropped (nftables chain isolate)".to_string(),
                "the node, the proxy and published ports reach every replica".to_string(),
            ];
            n
        })
        .collect()
}

/// `GET /v1/routes`: the proxy's routing table with live counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteInfo {
    /// The node whose proxy counted these (`?per_node=true`); absent when summed over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub service: String,
    pub host: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub port: u16,
    pub requests: u64,
    /// Responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub status: [u64; 5],
    /// Requests that got no answer from any upstream.
    pub errors: u64,
    pub requests_per_second: f64,
    /// Latency histogram: upper bounds in ms (the last is +inf as `u64::MAX`) and counts.
    pub latency_buckets_ms: Vec<u64>,
    pub latency_counts: Vec<u64>,
    pub upstreams: Vec<UpstreamInfo>,
}

impl RouteInfo {
    /// Adds another proxy's counters of the same route: requests, statuses, errors, the rate,
    /// the latency histogram, and the upstreams by replica (up if any proxy has it up).
    pub fn add(&mut self, other: &RouteInfo) {
        self.requests += other.requests;
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        self.errors += other.errors;
        self.requests_per_second += other.requests_per_second;
        if self.latency_counts.len() == other.latency_counts.len() {
            for (a, b) in self.latency_counts.iter_mut().zip(&other.latency_counts) {
                *a += b;
            }
        }
        for u in &other.upstreams {
            match self.upstreams.iter_mut().find(|m| m.replica == u.replica) {
                Some(m) => {
                    m.in_flight += u.in_flight;
                    m.requests += u.requests;
                    m.failures += u.failures;
                    if u.state == "up" {
                        m.state = "up".into();
                    }
                }
                None => self.upstreams.push(u.clone()),
            }
        }
    }
}

/// Every node's counters of each route summed into one row per route (service, host, path
/// prefix), in the order the routes first appear; `node` left empty.
pub fn sum_routes(rows: impl IntoIterator<Item = RouteInfo>) -> Vec<RouteInfo> {
    let mut out: Vec<RouteInfo> = Vec::new();
    for mut r in rows {
        r.node = None;
        match out
            .iter_mut()
            .find(|o| o.service == r.service && o.host == r.host && o.path_prefix == r.path_prefix)
        {
            Some(o) => o.add(&r),
            None => out.push(r),
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpstreamInfo {
    pub replica: String,
    pub addr: String,
    /// `up` or `ejected`.
    pub state: String,
    pub in_flight: u64,
    pub requests: u64,
    pub failures: u64,
}

/// What a node measures and sends to the masters every few seconds: its replicas' resource
/// use and its proxy's load per service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeMetrics {
    pub replicas: Vec<ReplicaSample>,
    pub routes: Vec<RouteLoad>,
    /// Its proxy's counters per route, for `dash route ls` across nodes.
    #[serde(default)]
    pub route_stats: Vec<RouteInfo>,
}

/// One replica's resource use, from its cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSample {
    pub replica: String,
    /// CPU use since the previous sample, in percent of one core (200 = two cores busy);
    /// None for a replica's first sample.
    pub cpu_percent: Option<f64>,
    /// Memory in use, page cache not counted (like `docker stats`).
    pub memory_bytes: u64,
    /// Bytes the replica received and sent on eth0 since it started (None: no network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_bytes: Option<u64>,
}

/// Requests per second through one node's proxy to a service (its routes together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteLoad {
    pub service: String,
    pub requests_per_second: f64,
}

/// `GET /v1/stats`: a replica's resource use (`dash stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaStats {
    pub replica: String,
    pub service: String,
    pub node: Option<String>,
    /// Percent of one core; None until the replica's node has measured it twice.
    pub cpu_percent: Option<f64>,
    /// Percent of the CPU the replica may use (`resources.cpu`, else one core): what
    /// `autoscale.cpu_percent` is compared with.
    pub cpu_percent_of_limit: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// `resources.memory`; None when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// When the node measured it (ms since the epoch).
    pub sampled_ms: Option<u64>,
    /// Bytes received and sent on its eth0 since it started.
    #[serde(default)]
    pub net_rx_bytes: Option<u64>,
    #[serde(default)]
    pub net_tx_bytes: Option<u64>,
    /// Requests the proxies of every node sent it (a total: `dash top` turns it into a rate).
    #[serde(default)]
    pub requests: Option<u64>,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default = "running")]
    pub state: ReplicaState,
}

fn running() -> ReplicaState {
    ReplicaState::Running
}

/// `GET /v1/services/{name}/history`: the last hour of a service and of its replicas, in
/// buckets of `resolution_ms` (averages of what the nodes measured in each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceHistory {
    pub service: String,
    pub resolution_ms: u64,
    /// The service as a whole: its replicas' CPU and memory added up, and the requests per
    /// second every node's proxy sent it.
    pub points: Vec<HistoryPoint>,
    pub replicas: Vec<ReplicaHistory>,
}

/// One replica's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaHistory {
    pub replica: String,
    pub points: Vec<HistoryPoint>,
}

/// One bucket of history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPoint {
    /// The bucket's start, ms since the epoch.
    pub time_ms: u64,
    /// Percent of one core; None when nothing was measured (a replica's first sample).
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// Through the proxies (a service's points only).
    pub requests_per_second: Option<f64>,
}

/// `dash exec`: what to run in a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// A pseudo-terminal for the command (`-t`): one output stream, raw input.
    #[serde(default)]
    pub tty: bool,
    /// The terminal's initial size (`-t`); 0 leaves the runtime's default.
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
}

/// What goes into an exec session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    /// End of input: a pipe is closed; a terminal gets ^D.
    StdinEof,
    /// The caller's terminal changed size (`-t` only).
    Resize {
        rows: u16,
        cols: u16,
    },
}

/// What comes out of an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command ended with this status (128 + signal when killed).
    Exit(i32),
    /// It could not run; the message says why.
    Error(String),
}

/// The frames of an exec session over an upgraded admin API connection: one kind byte, a
/// big-endian u32 length, the payload. Client to server: stdin (0), end of stdin (4) and a
/// terminal size (6: rows, cols as u16 BE); server to client: stdout (1), stderr (2), exit
/// status (3, i32 BE), error (5, UTF-8).
pub mod exec_frame {
    use super::{ExecEvent, ExecInput};

    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const EXIT: u8 = 3;
    pub const STDIN_EOF: u8 = 4;
    pub const ERROR: u8 = 5;
    pub const RESIZE: u8 = 6;
    /// Frames larger than this are refused (a peer that sends one is broken).
    pub const MAX_PAYLOAD: usize = 1 << 20;

    pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    pub fn encode_event(e: &ExecEvent) -> Vec<u8> {
        match e {
            ExecEvent::Stdout(d) => encode(STDOUT, d),
            ExecEvent::Stderr(d) => encode(STDERR, d),
            ExecEvent::Exit(c) => encode(EXIT, &c.to_be_bytes()),
            ExecEvent::Error(m) => encode(ERROR, m.as_bytes()),
        }
    }

    pub fn encode_input(i: &ExecInput) -> Vec<u8> {
        match i {
            ExecInput::Stdin(d) => encode(STDIN, d),
            ExecInput::StdinEof => encode(STDIN_EOF, &[]),
            ExecInput::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                encode(RESIZE, &p)
            }
        }
    }

    /// An input frame (None for server-to-client kinds and short resize frames).
    pub fn to_input(kind: u8, payload: Vec<u8>) -> Option<ExecInput> {
        match kind {
            STDIN => Some(ExecInput::Stdin(payload)),
            STDIN_EOF => Some(ExecInput::StdinEof),
            RESIZE => {
                let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
                Some(ExecInput::Resize {
                    rows: u16::from_be_bytes([b[0], b[1]]),
                    cols: u16::from_be_bytes([b[2], b[3]]),
                })
            }
            _ => None,
        }
    }

    /// Splits one frame off the front of `buf`: Ok(None) when it is not complete yet.
    pub fn decode(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, String> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(format!(
                "exec frame of {len} bytes is over the {MAX_PAYLOAD}-byte limit"
            ));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = buf[0];
        let payload = buf[5..5 + len].to_vec();
        buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }

    /// An output frame as an event (None for client-to-server kinds).
    pub fn to_event(kind: u8, payload: Vec<u8>) -> Option<ExecEvent> {
        match kind {
            STDOUT => Some(ExecEvent::Stdout(payload)),
            STDERR => Some(ExecEvent::Stderr(payload)),
            EXIT => {
                let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
                Some(ExecEvent::Exit(i32::from_be_bytes(b)))
            }
            ERROR => Some(ExecEvent::Error(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_round_trip_in_pieces_and_refuse_huge_ones() {
            let mut stream = Vec::new();
            for e in [
                ExecEvent::Stdout(b"hello".to_vec()),
                ExecEvent::Stderr(Vec::new()),
                ExecEvent::Exit(-3),
                ExecEvent::Error("no".into()),
            ] {
                stream.extend(encode_event(&e));
            }
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for b in stream {
                buf.push(b);
                while let Some((k, p)) = decode(&mut buf).unwrap() {
                    got.push(to_event(k, p).unwrap());
                }
            }
            assert_eq!(
                got,
                vec![
                    ExecEvent::Stdout(b"hello".to_vec()),
                    ExecEvent::Stderr(Vec::new()),
                    ExecEvent::Exit(-3),
                    ExecEvent::Error("no".into())
                ]
            );
            let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
            assert!(decode(&mut huge).is_err());
        }

        #[test]
        fn input_frames_round_trip_and_short_resizes_are_dropped() {
            for i in [
                ExecInput::Stdin(b"ls\n".to_vec()),
                ExecInput::StdinEof,
                ExecInput::Resize {
                    rows: 50,
                    cols: 300,
                },
            ] {
                let mut buf = encode_input(&i);
                let (k, p) = decode(&mut buf).unwrap().unwrap();
                assert_eq!(to_input(k, p), Some(i));
                assert!(buf.is_empty());
            }
            assert_eq!(to_input(RESIZE, vec![0, 1]), None);
            assert_eq!(to_input(STDOUT, vec![1]), None);
        }
    }
}

/// `dash service explain`: where each replica is and why, and how every node looks to the
/// service now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceExplain {
    pub service: String,
    pub replicas: Vec<ReplicaExplain>,
    /// Best first: `rank` 1 is where the next replica would go; rejected nodes last.
    pub nodes: Vec<NodeExplain>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaExplain {
    pub replica: String,
    pub node: Option<String>,
    pub state: ReplicaState,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeExplain {
    pub node: String,
    pub state: NodeState,
    /// Which filter rejects the node for one more replica; none when it would take one.
    pub rejected: Option<String>,
    pub rank: usize,
    pub service_replicas: u32,
    pub load_percent: u32,
    pub total_replicas: u32,
}

#[cfg(test)]
#[path = "api_test.rs"]
mod api_test;
