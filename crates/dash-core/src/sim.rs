//! `dash sim`'s wire types: what the simulation's control endpoint answers (`dash sim report`,
//! `dash sim kill`). The simulation is `crates/dash-sim`.

use serde::{Deserialize, Serialize};

/// The runtime a simulated worker reports at its join: the masters leave such nodes out of the
/// routes between nodes (they have no data path) and say so in `dash node ls`.
pub const SIMULATED_RUNTIME: &str = "sim";

/// `dash sim report`, as JSON (`-o json`) or as text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub uptime_ms: u64,
    /// Workers asked for.
    pub workers: u64,
    pub joined: u64,
    pub join_failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_refusal: Option<String>,
    /// Workers heartbeating now.
    pub live: u64,
    pub killed: u64,
    /// Replicas the live workers hold.
    pub replicas: u64,
    pub by_state: std::collections::BTreeMap<String, u64>,
    /// Every replica held is running (or healthy).
    pub converged: bool,
    pub placements: u64,
    pub placements_per_s_peak: u64,
    /// Placements over the seconds in which any arrived.
    pub placements_per_s_mean: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_placement_ms: Option<u64>,
    /// From the first placement to the last replica running, once all are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_all_running_ms: Option<u64>,
    pub starts: u64,
    pub start_failures: u64,
    pub reports: u64,
    pub report_failures: u64,
    pub removals: u64,
    pub heartbeats_ok: u64,
    pub heartbeats_failed: u64,
    pub heartbeat_rtt_p50_ms: f64,
    pub heartbeat_rtt_p99_ms: f64,
    pub heartbeat_rtt_max_ms: f64,
    /// The longest a live worker's heartbeat came later than asked.
    pub heartbeat_late_max_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_kill: Option<KillReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillReport {
    pub workers: u64,
    /// Replicas the killed workers held.
    pub replicas: u64,
    /// Replicas serving just before.
    pub running_before: u64,
    pub ago_ms: u64,
    /// When the fleet served as many replicas as before again (their replicas running
    /// elsewhere), after the kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_after_ms: Option<u64>,
    /// When the first and the last replica new to the fleet after the kill arrived (the
    /// masters' replacements reaching their workers), after the kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_new_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_new_after_ms: Option<u64>,
}

/// `POST /v1/sim/kill`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillRequest {
    pub workers: u32,
}

/// What `POST /v1/sim/kill` did: the workers silenced and the replicas they held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Killed {
    pub workers: Vec<String>,
    pub replicas: u64,
}
