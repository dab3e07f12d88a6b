//! State-machine commands: every change of the master's state is one of these, applied by one
//! function in `dash-store`, so that a Raft log can later sit in front of it unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{DesiredState, NodeState, ReplicaState};
use crate::spec::{Resources, ServiceSpec};

/// A new replica, placed (or not) by the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReplica {
    pub id: String,
    pub service: String,
    pub version: u64,
    pub node: Option<String>,
    /// Why it is pending, when `node` is None.
    pub message: String,
    /// The run of a job it is an attempt of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// Not started before this instant (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_ms: Option<u64>,
}

/// What a worker reports about one of its replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub state: ReplicaState,
    pub ip: Option<String>,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub started_ms: Option<u64>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub address: String,
    pub role: crate::api::NodeRole,
    pub state: NodeState,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub subnet: String,
    pub runtime: String,
}

/// Every write to the master's state. `at_ms` is the leader's clock when it proposed it, so
/// applying a command again (a replay) gives the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create or update a service; the version grows by one when the spec changes.
    PutService {
        spec: Box<ServiceSpec>,
        at_ms: u64,
    },
    /// An automatic rollback: as `PutService`, and the version it makes is recorded as one,
    /// so that it is never rolled back automatically in turn (on any master, after any
    /// failover).
    RollBackService {
        spec: Box<ServiceSpec>,
        at_ms: u64,
    },
    ScaleService {
        name: String,
        replicas: u32,
        at_ms: u64,
    },
    /// Marks every replica for removal; the service row goes once they are gone.
    RemoveService {
        name: String,
        at_ms: u64,
    },
    SetUpdateBatch {
        name: String,
        at_ms: u64,
    },
    CreateReplicas {
        replicas: Vec<NewReplica>,
        at_ms: u64,
    },
    SetReplicaDesired {
        id: String,
        desired: DesiredState,
        at_ms: u64,
    },
    /// `SetReplicaDesired` for several replicas in one entry (a scale-down, a lost node): one
    /// commit instead of one per replica.
    SetReplicasDesired {
        ids: Vec<String>,
        desired: DesiredState,
        at_ms: u64,
    },
    PlaceReplica {
        id: String,
        node: Option<String>,
        message: String,
    },
    ReportReplica {
        status: ReplicaStatus,
        at_ms: u64,
    },
    /// What nodes reported about their replicas meanwhile, in one entry (the masters group
    /// the reports that arrive while the previous group is being written): statuses, applied
    /// in order, then replicas released (each as `DeleteReplica`).
    ReplicaReports {
        statuses: Vec<ReplicaStatus>,
        removed: Vec<String>,
        at_ms: u64,
    },
    DeleteReplica {
        id: String,
        /// When it was removed (kept with its record in `removed_replicas`).
        #[serde(default)]
        at_ms: u64,
    },
    UpsertNode {
        node: Box<NodeRecord>,
        at_ms: u64,
    },
    /// A node joins, or joins again: recorded with a container subnet the state picks (its own
    /// again on a re-join, else the first free /24 of `pool`) and the serial of the certificate
    /// it was just issued, in one step: two joins never get the same subnet, whichever master
    /// proposed them. `node.subnet` is ignored. Refused for the name of a master, or when the
    /// pool has no free /24 left.
    JoinNode {
        node: Box<NodeRecord>,
        pool: crate::subnet::SubnetPool,
        serial: String,
        at_ms: u64,
    },
    /// A node's state as the masters judge it (heartbeats, drain).
    SetNodeState {
        id: String,
        state: NodeState,
        at_ms: u64,
        /// Only if the node is in this state now (a judgement made on what was read must not
        /// overwrite what happened since, e.g. a heartbeat).
        #[serde(default)]
        from: Option<NodeState>,
    },
    /// Sets labels (added or replaced) after removing the keys in `remove`: merged with the
    /// node's labels by the state, so that two label changes never undo each other.
    SetNodeLabels {
        id: String,
        #[serde(default)]
        set: BTreeMap<String, String>,
        #[serde(default)]
        remove: Vec<String>,
    },
    /// Takes no new replicas; its replicas move to other nodes.
    DrainNode {
        id: String,
        at_ms: u64,
    },
    /// A drained node takes replicas again. Refused for a node that is not drained.
    ActivateNode {
        id: String,
        at_ms: u64,
    },
    /// The certificate a node now presents; the previous one stays valid until the next.
    SetNodeCert {
        id: String,
        serial: String,
    },
    /// Forgets a node: its certificates are refused from now on, its replicas are gone.
    /// Refused for a node that is ready unless `force`.
    RemoveNode {
        id: String,
        #[serde(default)]
        force: bool,
    },
    CreateToken {
        id: String,
        role: String,
        secret_hash: String,
        expires_ms: Option<u64>,
        at_ms: u64,
    },
    RevokeToken {
        id: String,
        at_ms: u64,
    },
    /// An image imported or pulled at a master (the image index of the state): every master
    /// that lacks it fetches it, by digest, from `origin` (that master's master_api address)
    /// or from another master that has it.
    RecordImage {
        tag: String,
        manifest_digest: String,
        origin: String,
        at_ms: u64,
    },
    /// `dash image rm` at a master: the tag leaves the image index, and every master that
    /// fetched it because of the index removes it too.
    ForgetImage {
        tag: String,
        /// When (0 in entries of the release before it was recorded).
        #[serde(default)]
        at_ms: u64,
    },
    /// The range services' virtual IPs come from (a master's `--service-cidr`): recorded
    /// once, the first master's; then every service with ports that has none gets one.
    SetServiceCidr {
        cidr: crate::subnet::VipPool,
    },
    /// `dash image prune` at a master: every master prunes its own image store.
    PruneImages {
        at_ms: u64,
    },
    /// `dash login` at a master: a registry's credentials, sealed with the cluster's data key
    /// (only masters hold it), so that every master pulls with them.
    KeepRegistryLogin {
        /// Canonical `host[:port]`.
        registry: String,
        /// The user name and password, sealed (`dash_master::sealing`).
        sealed: String,
        at_ms: u64,
    },
    /// `dash logout`: the registry's credentials leave the state.
    ForgetRegistryLogin {
        registry: String,
    },
    /// A new data key (sealed with the key derived from the CA's), made by the first master
    /// that needs one: kept only if no key with `id` exists yet.
    AddDataKey {
        id: u64,
        sealed: String,
        at_ms: u64,
    },
    /// `dash secret create` (`create`) or `update`: a new version of a secret or config,
    /// sealed with the current data key; an update moves every service that lists it to the
    /// new version (a rolling update, by their update policies).
    PutSecret {
        kind: crate::secret::Kind,
        name: String,
        /// `k<data key id>:v1:…` (dash_master::sealing).
        sealed: String,
        size: u64,
        create: bool,
        at_ms: u64,
    },
    /// `dash secret rm`: refused while a service lists it.
    RemoveSecret {
        kind: crate::secret::Kind,
        name: String,
    },
    /// `dash secret rotate-key`: data key `id` replaces every other, and every kept version
    /// is sealed again with it.
    RotateDataKey {
        id: u64,
        sealed_key: String,
        resealed: Vec<Resealed>,
        at_ms: u64,
    },
    /// A run of a job starts: recorded (numbered by the state, the next of the job) before
    /// any of its replicas exists. Refused for a slot already decided (at most once per slot,
    /// whichever master proposed it), and while a run is in progress when the job's
    /// concurrency is `forbid`; with `replace` the runs in progress are stopped in the same
    /// step.
    StartJobRun {
        service: String,
        trigger: crate::job::RunTrigger,
        /// A scheduled run's slot (ms since the epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot_ms: Option<u64>,
        at_ms: u64,
    },
    /// Slots decided not to run, each with why (recorded as decided, counted as skipped).
    SkipJobSlots {
        service: String,
        slots: Vec<u64>,
        at_ms: u64,
    },
    /// A run is over: its attempts still running are stopped (kept, with their logs), and
    /// finished runs beyond the job's `history` leave the state with their replicas.
    FinishJobRun {
        service: String,
        run: u64,
        state: crate::job::RunState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
        at_ms: u64,
    },
    /// `dash job suspend` (`true`) / `resume`: a suspended job starts no scheduled run; on
    /// resume the slots it missed are not run (its schedule starts again from `at_ms`).
    SetJobSuspended {
        service: String,
        suspended: bool,
        at_ms: u64,
    },
    /// A write through the admin API (or a refusal of one), for `dash audit`; the state keeps
    /// the latest [`AUDIT_KEPT`] (the entry's `seq` is given by the state).
    RecordAudit {
        entry: crate::api::AuditEntry,
    },
}

/// A kept version of a secret or config sealed again (`Command::RotateDataKey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resealed {
    pub kind: crate::secret::Kind,
    pub name: String,
    pub version: u64,
    pub sealed: String,
}

/// How many audit entries the state keeps (older ones are dropped as new ones come).
pub const AUDIT_KEPT: u64 = 10_000;
