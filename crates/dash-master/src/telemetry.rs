//! The master's /metrics: its instruments (admin API requests and latency by route and code,
//! reconcile and scheduling latency, the service_scaler's decisions, Raft leader changes),
//! and at each scrape the state as it is (services, replicas by state, restarts, nodes, the
//! Raft term and commit index), followed by this master's own node's series.
//!
//! The instruments are process-wide ([`instruments`]): whatever counts reaches them without
//! being handed a registry, as with any Prometheus client library.

use std::sync::{Arc, LazyLock};

use dash_rpc::exposition::{self, Kind, Snapshot};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// This master's node's series (its replicas and proxy), read at scrape time.
pub type NodeSeries = Arc<dyn Fn() -> BoxFuture<'static, Snapshot> + Send + Sync>;

type Labels = Vec<(String, String)>;

/// Counters and histograms that live with the process.
pub struct Instruments {
    registry: Registry,
    api_requests: Family<Labels, Counter>,
    api_latency: Family<Labels, Histogram>,
    reconcile: Histogram,
    schedule: Histogram,
    scaler: Family<Labels, Counter>,
    leader_changes: Counter,
    placements: Counter,
    assignments: Histogram,
    lists_built: Counter,
    watch_bytes: Counter,
    watch_sends: Counter,
    proposals: Histogram,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Instruments {
    fn new() -> Instruments {
        let mut registry = Registry::default();
        let api_requests = Family::<Labels, Counter>::default();
        let api_latency = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let reconcile = latency_histogram();
        let schedule = latency_histogram();
        let scaler = Family::<Labels, Counter>::default();
        let leader_changes = Counter::default();
        registry.register(
            "dash_api_requests",
            "Admin API requests answered, by method, route and status code",
            api_requests.clone(),
        );
        registry.register(
            "dash_api_request_duration_seconds",
            "Admin API time to the response headers, by method and route",
            api_latency.clone(),
        );
        registry.register(
            "dash_reconcile_duration_seconds",
            "Time of one reconcile pass over every service (the leader's)",
            reconcile.clone(),
        );
        registry.register(
            "dash_schedule_duration_seconds",
            "Time to place one batch of new replicas on nodes",
            schedule.clone(),
        );
        registry.register(
            "dash_scaler_decisions",
            "The service_scaler's changes of a service's replica count, by direction",
            scaler.clone(),
        );
        registry.register(
            "dash_raft_leader_changes",
            "Times this master saw the Raft leader change (or become known)",
            leader_changes.clone(),
        );
        let placements = Counter::default();
        registry.register(
            "dash_placements",
            "New replicas placed on nodes by the scheduler (this master, while it led)",
            placements.clone(),
        );
        let assignments = latency_histogram();
        registry.register(
            "dash_assignments_compute_duration_seconds",
            "Time of one computation of every node's assignment list (once per change of the state, while a watch is attached)",
            assignments.clone(),
        );
        let lists_built = Counter::default();
        registry.register(
            "dash_assignment_lists_built",
            "Nodes' assignment lists built again because they changed",
            lists_built.clone(),
        );
        let watch_bytes = Counter::default();
        registry.register(
            "dash_watch_sent_bytes",
            "Bytes of assignment lists sent to the nodes' watches (fan-out)",
            watch_bytes.clone(),
        );
        let watch_sends = Counter::default();
        registry.register(
            "dash_watch_sends",
            "Assignment lists sent to the nodes' watches",
            watch_sends.clone(),
        );
        let proposals = latency_histogram();
        registry.register(
            "dash_raft_apply_duration_seconds",
            "Time from proposing a command to its being applied here (through the Raft log when there are masters)",
            proposals.clone(),
        );
        Instruments {
            placements,
            assignments,
            lists_built,
            watch_bytes,
            watch_sends,
            proposals,
            registry,
            api_requests,
            api_latency,
            reconcile,
            schedule,
            scaler,
            leader_changes,
        }
    }

    /// An admin API request answered: `route` is the matched route template (never the raw
    /// path, which would make a series per service name or replica id).
    pub fn api_request(&self, method: &str, route: &str, code: u16, seconds: f64) {
        let route_labels = vec![
            ("method".to_string(), method.to_string()),
            ("route".to_string(), route.to_string()),
        ];
        self.api_latency
            .get_or_create(&route_labels)
            .observe(seconds);
        let mut l = route_labels;
        l.push(("code".to_string(), code.to_string()));
        self.api_requests.get_or_create(&l).inc();
    }

    pub fn reconciled(&self, seconds: f64) {
        self.reconcile.observe(seconds);
    }

    pub fn scheduled(&self, seconds: f64) {
        self.schedule.observe(seconds);
    }

    /// The service_scaler set `service` from `from` to `to` replicas.
    pub fn scaled(&self, service: &str, from: u32, to: u32) {
        let direction = if to > from { "up" } else { "down" };
        self.scaler
            .get_or_create(&vec![
                ("service".to_string(), service.to_string()),
                ("direction".to_string(), direction.to_string()),
            ])
            .inc();
    }

    /// The scheduler placed `n` new replicas.
    pub fn placed(&self, n: usize) {
        self.placements.inc_by(n as u64);
    }

    /// The assignment feed computed every node's list in `seconds`, building `built` again.
    pub fn assignments_computed(&self, seconds: f64, built: usize) {
        self.assignments.observe(seconds);
        self.lists_built.inc_by(built as u64);
    }

    /// A node's watch was sent a list of `bytes`.
    pub fn watch_sent(&self, bytes: usize) {
        self.watch_sends.inc();
        self.watch_bytes.inc_by(bytes as u64);
    }

    /// A proposal was applied `seconds` after it was made.
    pub fn proposal_applied(&self, seconds: f64) {
        self.proposals.observe(seconds);
    }

    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(Instruments::new);

/// The process's instruments.
pub fn instruments() -> &'static Instruments {
    &INSTRUMENTS
}

/// The state part of a scrape: services, replicas by state, restarts, nodes, Raft.
pub async fn state_series(
    store: &dash_store::MasterStore,
    raft: Option<&crate::raft::node::RaftNode>,
    history_buckets: usize,
) -> Snapshot {
    use std::collections::BTreeMap;
    let mut s = Snapshot::new();
    let services = store.services().await.unwrap_or_default();
    let replicas = store.all_replicas().await.unwrap_or_default();
    let nodes = store.nodes().await.unwrap_or_default();
    s.gauge(
        "dash_services",
        "Services in the cluster",
        Vec::new(),
        services.len() as f64,
    );
    s.declare(
        "dash_service_replicas_desired",
        "Replicas a service asks for",
        Kind::Gauge,
    );
    for svc in &services {
        s.gauge(
            "dash_service_replicas_desired",
            "Replicas a service asks for",
            exposition::labels([("service", svc.spec.name.as_str())]),
            f64::from(svc.spec.replicas),
        );
    }
    job_series(&mut s, store).await;
    let mut by_state: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut restarts: BTreeMap<String, u64> = BTreeMap::new();
    for r in replicas.iter() {
        let state = serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *by_state.entry((r.service.clone(), state)).or_default() += 1;
        *restarts.entry(r.service.clone()).or_default() += u64::from(r.restarts);
    }
    s.declare(
        "dash_replicas",
        "Replicas by service and state",
        Kind::Gauge,
    );
    for ((service, state), n) in by_state {
        s.gauge(
            "dash_replicas",
            "Replicas by service and state",
            exposition::labels([("service", &service), ("state", &state)]),
            n as f64,
        );
    }
    s.declare(
        "dash_service_restarts",
        "Restarts of a service's current replicas, added up",
        Kind::Counter,
    );
    for (service, n) in restarts {
        s.counter(
            "dash_service_restarts",
            "Restarts of a service's current replicas, added up",
            exposition::labels([("service", &service)]),
            n as f64,
        );
    }
    let mut node_states: BTreeMap<String, u64> = BTreeMap::new();
    for n in &nodes {
        let state = serde_json::to_value(n.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *node_states.entry(state).or_default() += 1;
    }
    s.declare("dash_nodes", "Nodes by state", Kind::Gauge);
    for (state, n) in node_states {
        s.gauge(
            "dash_nodes",
            "Nodes by state",
            exposition::labels([("state", &state)]),
            n as f64,
        );
    }
    s.gauge(
        "dash_history_buckets",
        "10 s buckets of service and replica history held in memory",
        Vec::new(),
        history_buckets as f64,
    );
    if let Some(node) = raft {
        let m = node.raft.metrics().borrow().clone();
        s.gauge(
            "dash_raft_term",
            "The current Raft term",
            Vec::new(),
            m.current_term as f64,
        );
        s.gauge(
            "dash_raft_commit_index",
            "The index of the last log entry applied to this master's state",
            Vec::new(),
            m.last_applied.map_or(0, |l| l.index) as f64,
        );
        s.gauge(
            "dash_raft_last_log_index",
            "The index of the last entry in this master's Raft log",
            Vec::new(),
            m.last_log_index.unwrap_or(0) as f64,
        );
        s.gauge(
            "dash_raft_is_leader",
            "1 on the Raft leader, else 0",
            Vec::new(),
            if node.is_leader() { 1.0 } else { 0.0 },
        );
        s.gauge(
            "dash_raft_members",
            "Voting masters in the Raft membership",
            Vec::new(),
            m.membership_config.membership().voter_ids().count() as f64,
        );
    }
    s
}

/// The whole scrape: instruments, state, then the node's series.
pub fn render(state: Snapshot, node: Option<Snapshot>) -> String {
    let mut all = state;
    if let Some(n) = node {
        all.extend(n);
    }
    exposition::render(Some(&instruments().registry), all)
}

/// Counts leader changes as this master sees them, until `shutdown`.
pub async fn watch_leader(
    node: crate::raft::node::RaftNode,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut metrics = node.raft.metrics();
    let mut leader = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = shutdown.changed() => return,
        }
        let now = metrics.borrow().current_leader;
        if now != leader && now.is_some() {
            instruments().leader_changed();
        }
        leader = now;
    }
}

/// Jobs: slots skipped (as the replicated state counts them: the same on every master, across
/// failovers) and runs kept by state.
async fn job_series(s: &mut Snapshot, store: &dash_store::MasterStore) {
    let jobs = store.jobs().await.unwrap_or_default();
    if jobs.is_empty() {
        return;
    }
    const SKIPPED: &str = "Slots of a job's schedule skipped (missed, superseded, forbidden)";
    s.declare("dash_job_slots_skipped", SKIPPED, Kind::Counter);
    for j in &jobs {
        s.counter(
            "dash_job_slots_skipped",
            SKIPPED,
            exposition::labels([("job", j.service.as_str())]),
            j.skipped as f64,
        );
    }
    const RUNS: &str = "Runs of a job in its history, by state";
    let mut by_state: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
    for r in store.job_runs(None).await.unwrap_or_default() {
        *by_state.entry((r.service, r.state.as_str())).or_default() += 1;
    }
    s.declare("dash_job_runs", RUNS, Kind::Gauge);
    for ((job, state), n) in by_state {
        s.gauge(
            "dash_job_runs",
            RUNS,
            exposition::labels([("job", job.as_str()), ("state", state)]),
            n as f64,
        );
    }
}
