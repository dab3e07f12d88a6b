//! reconciler: executes the plans of `dash_core::reconcile` with placements from
//! `dash_core::scheduler`. The decisions are pure; this file only reads the store, applies
//! commands and tells workers that their assignments changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{DesiredState, NodeInfo, NodeState, ReplicaInfo, ReplicaState};
use dash_core::command::{Command, NewReplica};
use dash_core::event::{EventDraft, EventKind};
use dash_core::reconcile::{self, Action, ReplicaView};
use dash_core::scheduler::{self, NodeSnapshot, Request};
use dash_core::spec::Mode;
use dash_core::{ReplicaId, ServiceName};
use dash_store::{MasterStore, ServiceRow, StoreError};
use tokio::sync::{Notify, watch};

use crate::job_runner::{JobRunner, JobsView};
use crate::message_queue::MessageQueue;
use crate::now_ms;
use crate::state_log::StateLog;

/// The least time from the start of one pass to the start of the next one woken by a change.
const MIN_GAP: Duration = Duration::from_millis(5);

/// The longest time between two passes.
const IDLE: Duration = Duration::from_secs(1);

pub struct Reconciler {
    log: StateLog,
    store: MasterStore,
    mq: Arc<MessageQueue>,
    wake: Arc<Notify>,
    changes: watch::Sender<u64>,
    updating: HashSet<String>,
    /// Whether replicas were given up since the pass's copy of the nodes was read.
    freed: std::sync::atomic::AtomicBool,
    /// Services of `kind = "job"`: their runs and schedules.
    jobs: JobRunner,
}

impl Reconciler {
    pub fn new(
        log: StateLog,
        mq: Arc<MessageQueue>,
        wake: Arc<Notify>,
        changes: watch::Sender<u64>,
    ) -> Self {
        Self {
            store: log.store().clone(),
            jobs: JobRunner::new(log.clone()),
            log,
            mq,
            wake,
            changes,
            updating: HashSet::new(),
            freed: Default::default(),
        }
    }

    /// Runs until `shutdown` resolves: a pass on every wake-up and every second. Under a
    /// stream of changes passes start [`MIN_GAP`] apart at most: the wake-ups meanwhile fold
    /// into the next pass (a change after a quiet spell is acted on at once).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let started = tokio::time::Instant::now();
            let read = match self.pass().await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile pass failed");
                    started.elapsed()
                }
            };
            crate::telemetry::instruments().reconciled(started.elapsed().as_secs_f64());
            // A job's slot (or back-off, or deadline) may come before the next second.
            let idle = match self.jobs.wake_at_ms() {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())).min(IDLE),
                None => IDLE,
            };
            // Under load a pass costs more (every replica is read): the next one waits twice
            // what its reading took, so that reading never takes more than a third of the
            // time. Not twice the whole pass: most of a busy pass is waiting for its entries
            // to be committed, and after 50 nodes died a pass of 1.3 s (1 s of it waiting on
            // the log) held the next one back 2.6 s while replacements were still missing.
            let gap = MIN_GAP.max(read * 2).min(IDLE);
            tokio::select! {
                _ = self.wake.notified() => {
                    tokio::time::sleep_until(started + gap).await;
                }
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over every service. The nodes and the replicas are read once for the pass
    /// (a few statements, however many services there are); what a pass changes wakes the
    /// next one, which reads them again. Returns the time the pass spent reading the state.
    pub async fn pass(&mut self) -> Result<Duration, StoreError> {
        let began = tokio::time::Instant::now();
        // Read once for the pass; what the pass places is charged to them as it goes.
        let mut nodes = self.store.nodes().await?;
        self.freed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut replicas = self.store.replicas(None).await?;
        let mut read = began.elapsed();
        let mut changed = self.evacuate_lost_nodes(&nodes, &replicas).await?;
        if changed {
            let again = tokio::time::Instant::now();
            replicas = self.store.replicas(None).await?;
            read += again.elapsed();
        }
        let mut by_service: HashMap<String, Vec<ReplicaInfo>> = HashMap::new();
        for r in replicas {
            by_service.entry(r.service.clone()).or_default().push(r);
        }
        let services = self.store.services().await?;
        self.jobs.begin_pass();
        let jobs = match services.iter().any(|s| s.spec.is_job()) {
            true => Some(JobsView::read(&self.store).await?),
            false => None,
        };
        for row in services {
            if row.removing {
                continue;
            }
            let replicas = by_service
                .remove(row.spec.name.as_str())
                .unwrap_or_default();
            changed |= match &jobs {
                Some(view) if row.spec.is_job() => {
                    // A job places its attempts from a read of its own: the pass's copy of
                    // the nodes is read again after it did anything.
                    let placed = self.jobs.reconcile(&row, view, &replicas).await?;
                    if placed {
                        nodes = self.store.nodes().await?;
                    }
                    placed
                }
                _ => self.reconcile(&row, &mut nodes, replicas).await?,
            };
        }
        if changed {
            self.changes.send_modify(|v| *v += 1);
        }
        Ok(read)
    }

    /// Replicas on nodes that are down (or gone) are given up: marked for removal, so the plan
    /// starts replacements on nodes that are up. When the node comes back its agent sees the
    /// removal and stops them: never two copies serving once it is reachable again.
    async fn evacuate_lost_nodes(
        &self,
        nodes: &[NodeInfo],
        replicas: &[ReplicaInfo],
    ) -> Result<bool, StoreError> {
        let up: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.state != NodeState::Down)
            .map(|n| n.id.as_str())
            .collect();
        let mut doomed = Vec::new();
        let mut lost_attempts = Vec::new();
        for r in replicas {
            let Some(node) = &r.node else { continue };
            if r.desired != DesiredState::Run || up.contains(node.as_str()) {
                continue;
            }
            if r.run.is_some() {
                // A job's attempt: one that ended has nothing to move (its result stands);
                // one in progress is given up (a failed attempt, retried elsewhere by its
                // run) but kept, so that it still counts, and stopped if its node comes back.
                if !matches!(r.state, ReplicaState::Exited | ReplicaState::Failed) {
                    lost_attempts.push((r.service.clone(), r.id.clone(), node.clone()));
                }
                continue;
            }
            doomed.push((
                r.service.clone(),
                r.id.clone(),
                format!("node {node} is down; replaced elsewhere"),
            ));
        }
        let changed = !doomed.is_empty() || !lost_attempts.is_empty();
        if !doomed.is_empty() {
            tracing::info!(
                replicas = doomed.len(),
                "replicas of nodes that are down given up; replaced elsewhere"
            );
        }
        self.remove(doomed).await?;
        if !lost_attempts.is_empty() {
            let events = lost_attempts
                .iter()
                .map(|(service, id, node)| {
                    EventDraft::service(
                        EventKind::ReplicaStopping,
                        service,
                        Some(id),
                        format!("node {node} is down: the attempt counts as failed"),
                    )
                })
                .collect();
            self.log
                .propose_with(
                    Command::SetReplicasDesired {
                        ids: lost_attempts.into_iter().map(|(_, id, _)| id).collect(),
                        desired: DesiredState::Stop,
                        at_ms: now_ms(),
                    },
                    events,
                )
                .await?;
        }
        Ok(changed)
    }

    async fn reconcile(
        &mut self,
        row: &ServiceRow,
        nodes: &mut Vec<NodeInfo>,
        replicas: Vec<ReplicaInfo>,
    ) -> Result<bool, StoreError> {
        let name = row.spec.name.to_string();
        // Attempts of the runs of the job it was: not replicas of the service it is now.
        let (attempts, replicas): (Vec<ReplicaInfo>, Vec<ReplicaInfo>) =
            replicas.into_iter().partition(|r| r.run.is_some());
        let strays: Vec<(String, String, String)> = attempts
            .iter()
            .filter(|r| r.desired != DesiredState::Remove)
            .map(|r| {
                (
                    name.clone(),
                    r.id.clone(),
                    "the job became a service".to_string(),
                )
            })
            .collect();
        let mut changed = !strays.is_empty();
        self.remove(strays).await?;
        let drained: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Drained)
            .map(|n| n.id.as_str())
            .collect();
        let now = now_ms();
        let mut spec = row.spec.clone();
        // Replicas of an older version whose container is what the current spec asks for (a
        // rollback brings back their spec) count as current: nothing to replace.
        let mut same_container: HashSet<u64> = HashSet::new();
        let older: HashSet<u64> = replicas
            .iter()
            .map(|r| r.version)
            .filter(|v| *v < row.version)
            .collect();
        for v in older {
            if let Some(old) = self.store.service_version(&name, v).await?
                && !old.needs_replacement(&row.spec)
            {
                same_container.insert(v);
            }
        }
        // Nodes that will stop a replica marked for removal (not down, still known).
        let up: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.state != NodeState::Down)
            .map(|n| n.id.as_str())
            .collect();
        let view = |r: &ReplicaInfo, evict: bool| {
            let mut v = view(r, evict);
            v.stopping = r.desired == DesiredState::Remove
                && r.node.as_deref().is_some_and(|n| up.contains(n));
            if same_container.contains(&r.version) {
                v.version = row.version;
            }
            v
        };
        let mut views: Vec<ReplicaView> = Vec::with_capacity(replicas.len());
        if spec.mode == Mode::Global {
            // One per eligible node: the count is the eligible nodes; a replica on a node that
            // is no longer eligible (drained, down, constraints, removed) just goes; updates are
            // stop-first, since a node holds one replica of the service at most. An
            // unreachable node stays eligible: a late heartbeat must not cost its replica.
            let eligible: HashSet<&str> = nodes
                .iter()
                .filter(|n| {
                    matches!(n.state, NodeState::Ready | NodeState::Unreachable)
                        && n.role.runs_replicas()
                        && spec
                            .placement
                            .constraints
                            .iter()
                            .all(|c| c.matches(&n.id, &n.labels))
                })
                .map(|n| n.id.as_str())
                .collect();
            spec.replicas = eligible.len() as u32;
            spec.update.order = dash_core::spec::UpdateOrder::StopFirst;
            let mut doomed = Vec::new();
            for r in &replicas {
                let on_eligible = r.node.as_deref().is_some_and(|n| eligible.contains(n));
                if r.desired == DesiredState::Run && !on_eligible && r.node.is_some() {
                    doomed.push((
                        name.clone(),
                        r.id.clone(),
                        "its node is no longer eligible for this global service".to_string(),
                    ));
                    continue;
                }
                views.push(view(r, false));
            }
            changed |= !doomed.is_empty();
            self.remove(doomed).await?;
        } else {
            views.extend(
                replicas
                    .iter()
                    .map(|r| view(r, r.node.as_deref().is_some_and(|n| drained.contains(n)))),
            );
        }
        if let Some(why) = self.failed_update(row, &replicas) {
            match crate::service_manager::rollback(&self.log, &name, &why, true).await {
                Ok(v) => {
                    tracing::warn!(service = %name, from = row.version, to = v, reason = %why, "update failed; rolled back");
                    self.wake.notify_one();
                    return Ok(true);
                }
                Err(e) => {
                    tracing::error!(service = %name, error = %e, "rolling back a failed update")
                }
            }
        }
        let plan = reconcile::plan(&spec, row.version, &views, now, row.last_batch_ms);

        if plan.update_status.is_empty() {
            if self.updating.remove(&name) {
                self.mq.publish(
                    EventKind::UpdateCompleted,
                    Some(&name),
                    None,
                    format!("all replicas at version {}", row.version),
                );
            }
        } else if self.updating.insert(name.clone()) {
            self.mq.publish(
                EventKind::UpdateStarted,
                Some(&name),
                None,
                format!("rolling update to version {}", row.version),
            );
        }
        if plan.batch_started {
            self.log
                .propose(Command::SetUpdateBatch {
                    name: name.clone(),
                    at_ms: now,
                })
                .await?;
        }
        // The removals in one entry of the log, then the creations.
        let mut doomed = Vec::new();
        let mut creates = Vec::new();
        for action in plan.actions {
            match action {
                Action::Remove { replica, reason } => {
                    doomed.push((name.clone(), replica, reason.to_string()));
                }
                Action::Create { count } => creates.push(count),
            }
        }
        changed |= !doomed.is_empty() || !creates.is_empty();
        self.remove(doomed).await?;
        let unplaced = replicas
            .iter()
            .any(|r| r.node.is_none() && r.desired == DesiredState::Run);
        // Replicas given up earlier in the pass (this service's or another's) free their share
        // of their nodes, which the pass's copy still counts: read again before placing.
        if (!creates.is_empty() || unplaced)
            && self.freed.swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            *nodes = self.store.nodes().await?;
        }
        for count in creates {
            self.create(row, nodes, &replicas, count).await?;
        }
        // Replicas that could not be placed before: try again.
        for r in replicas
            .iter()
            .filter(|r| r.node.is_none() && r.desired == DesiredState::Run)
        {
            let snapshots = snapshots_of(nodes, &replicas);
            if let Some(Ok(node)) = scheduler::place(&snapshots, &request(row), 1)
                .into_iter()
                .next()
            {
                charge(nodes, &node, &row.spec.resources);
                let event = EventDraft::service(
                    EventKind::ReplicaScheduled,
                    &name,
                    Some(&r.id),
                    format!("on {node}"),
                );
                self.log
                    .propose_with(
                        Command::PlaceReplica {
                            id: r.id.clone(),
                            node: Some(node.clone()),
                            message: String::new(),
                        },
                        vec![event],
                    )
                    .await?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Why the rolling update in flight has failed: a replica of the new version turned
    /// unhealthy, failed, or crashed, while replicas of an older version still run. None when
    /// no update is in flight, or the version is itself an automatic rollback.
    fn failed_update(&self, row: &ServiceRow, replicas: &[ReplicaInfo]) -> Option<String> {
        if row.auto_rollback_version == row.version {
            return None;
        }
        let live = |r: &&ReplicaInfo| r.desired == DesiredState::Run;
        if !replicas
            .iter()
            .filter(live)
            .any(|r| r.version < row.version)
        {
            return None;
        }
        replicas
            .iter()
            .filter(live)
            .filter(|r| r.version == row.version)
            .find_map(|r| match r.state {
                ReplicaState::Unhealthy => Some(format!(
                    "replica {} of version {} is unhealthy",
                    r.id, row.version
                )),
                ReplicaState::Failed => Some(format!(
                    "replica {} of version {} failed",
                    r.id, row.version
                )),
                _ if r.restarts > 0 => Some(format!(
                    "replica {} of version {} exited (code {}) and was restarted",
                    r.id,
                    row.version,
                    r.exit_code.unwrap_or(-1)
                )),
                _ => None,
            })
    }

    /// Marks replicas for removal (their nodes stop them), each with an event saying why, in
    /// one entry of the log: `(service, replica, reason)`.
    async fn remove(&self, doomed: Vec<(String, String, String)>) -> Result<(), StoreError> {
        if doomed.is_empty() {
            return Ok(());
        }
        let events = doomed
            .iter()
            .map(|(service, replica, reason)| {
                EventDraft::service(EventKind::ReplicaStopping, service, Some(replica), reason)
            })
            .collect();
        self.freed.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut ids: Vec<String> = doomed.into_iter().map(|(_, id, _)| id).collect();
        let cmd = if ids.len() == 1 {
            Command::SetReplicaDesired {
                id: ids.remove(0),
                desired: DesiredState::Remove,
                at_ms: now_ms(),
            }
        } else {
            Command::SetReplicasDesired {
                ids,
                desired: DesiredState::Remove,
                at_ms: now_ms(),
            }
        };
        self.log.propose_with(cmd, events).await?;
        Ok(())
    }

    async fn create(
        &self,
        row: &ServiceRow,
        nodes: &mut [NodeInfo],
        replicas: &[ReplicaInfo],
        count: usize,
    ) -> Result<(), StoreError> {
        let snapshots = snapshots_of(nodes, replicas);
        let service = &row.spec.name;
        let timer = std::time::Instant::now();
        let placed = scheduler::place(&snapshots, &request(row), count);
        for node in placed.iter().flatten() {
            charge(nodes, node, &row.spec.resources);
        }
        crate::telemetry::instruments().scheduled(timer.elapsed().as_secs_f64());
        let n = placed.iter().filter(|p| p.is_ok()).count();
        crate::telemetry::instruments().placed(n);
        tracing::debug!(service = %service, placed = n, asked = count, "new replicas");
        let new = new_replicas(service, row.version, placed, None, None);
        propose_new_replicas(&self.log, new, |_| String::new()).await
    }
}

/// The most replicas one entry of the log creates: a service of 100,000 replicas is 200
/// entries proposed together, each small enough for a follower to take within Raft's
/// heartbeat (a single entry of 10,000 replicas was megabytes of JSON, and its replication
/// timed out again and again on a loaded machine).
pub const REPLICAS_PER_ENTRY: usize = 500;

/// New replicas of `service` at `version`, one for each of the scheduler's placements: on its
/// node, or pending with why it could not be placed. `run` and `start_at_ms`: a job's attempts.
pub fn new_replicas(
    service: &ServiceName,
    version: u64,
    placed: Vec<Result<String, scheduler::Unplaced>>,
    run: Option<u64>,
    start_at_ms: Option<u64>,
) -> Vec<NewReplica> {
    placed
        .into_iter()
        .map(|p| NewReplica {
            id: ReplicaId::generate(service).to_string(),
            service: service.to_string(),
            version,
            message: p
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
            node: p.ok(),
            run,
            start_at_ms,
        })
        .collect()
}

/// Records new replicas, each with its event (scheduled on its node, or pending and why), in
/// entries of at most [`REPLICAS_PER_ENTRY`] proposed at once; `prefix(r)` starts each message
/// (a job's run and attempt). The first error is returned; entries that were applied stand
/// (the next pass creates what is still missing).
pub async fn propose_new_replicas(
    log: &StateLog,
    mut new: Vec<NewReplica>,
    prefix: impl Fn(usize) -> String,
) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    let mut first = 0;
    while !new.is_empty() {
        let rest = new.split_off(new.len().min(REPLICAS_PER_ENTRY));
        let chunk = std::mem::replace(&mut new, rest);
        let n = chunk.len();
        entries.push(propose_chunk(log, chunk, first, &prefix));
        first += n;
    }
    for r in futures::future::join_all(entries).await {
        r?;
    }
    Ok(())
}

/// One entry of [`propose_new_replicas`]; `first` is the index of its first replica.
async fn propose_chunk(
    log: &StateLog,
    new: Vec<NewReplica>,
    first: usize,
    prefix: &impl Fn(usize) -> String,
) -> Result<(), StoreError> {
    let events = new
        .iter()
        .enumerate()
        .map(|(i, r)| (first + i, r))
        .map(|(i, r)| match &r.node {
            Some(node) => EventDraft::service(
                EventKind::ReplicaScheduled,
                &r.service,
                Some(&r.id),
                format!("{}on {node}", prefix(i)),
            ),
            None => EventDraft::service(
                EventKind::ReplicaPending,
                &r.service,
                Some(&r.id),
                format!("{}{}", prefix(i), r.message),
            ),
        })
        .collect();
    log.propose_with(
        Command::CreateReplicas {
            replicas: new,
            at_ms: now_ms(),
        },
        events,
    )
    .await?;
    Ok(())
}

/// The cluster as the scheduler sees it for one service (`replicas`: the service's).
pub async fn node_snapshots(
    store: &MasterStore,
    replicas: &[ReplicaInfo],
) -> Result<Vec<NodeSnapshot>, StoreError> {
    Ok(snapshots_of(&store.nodes().await?, replicas))
}

/// A replica of `resources` was placed on `node`: its share of the node, in a pass's view of
/// the nodes (read once per pass; what one service places counts for the next).
fn charge(nodes: &mut [NodeInfo], node: &str, resources: &dash_core::spec::Resources) {
    if let Some(n) = nodes.iter_mut().find(|n| n.id == node) {
        n.replicas = n.replicas.saturating_add(1);
        n.allocated.cpu_millis = n.allocated.cpu_millis.saturating_add(resources.cpu_millis);
        n.allocated.memory_bytes = n
            .allocated
            .memory_bytes
            .saturating_add(resources.memory_bytes);
    }
}

/// The scheduler's view of `nodes` for a service whose replicas are `replicas`.
pub fn snapshots_of(nodes: &[NodeInfo], replicas: &[ReplicaInfo]) -> Vec<NodeSnapshot> {
    let mut per_node: HashMap<&str, u32> = HashMap::new();
    for r in replicas.iter().filter(|r| r.desired == DesiredState::Run) {
        if let Some(n) = &r.node {
            *per_node.entry(n.as_str()).or_default() += 1;
        }
    }
    nodes
        .iter()
        .map(|n| NodeSnapshot {
            service_replicas: per_node.get(n.id.as_str()).copied().unwrap_or(0),
            // A master started with --no-worker (role "master") runs no replicas.
            ready: n.state == NodeState::Ready && n.role.runs_replicas(),
            total_replicas: n.replicas,
            id: n.id.clone(),
            labels: n.labels.clone(),
            capacity: n.capacity,
            allocated: n.allocated,
        })
        .collect()
}

/// What one replica of the service asks of a node.
pub fn request(row: &ServiceRow) -> Request {
    request_of(&row.spec)
}

/// What one replica of a service of spec `spec` asks of a node.
pub fn request_of(spec: &dash_core::ServiceSpec) -> Request {
    Request {
        service: ServiceName::to_string(&spec.name),
        resources: spec.resources,
        constraints: spec.placement.constraints.clone(),
        max_per_node: if spec.mode == Mode::Global {
            1
        } else {
            spec.placement.max_per_node
        },
    }
}

fn view(r: &ReplicaInfo, evict: bool) -> ReplicaView {
    ReplicaView {
        id: r.id.clone(),
        version: r.version,
        desired: r.desired,
        state: r.state,
        created_ms: r.created_ms,
        evict,
        stopping: false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dash_core::api::NodeRole;
    use dash_core::command::NodeRecord;
    use dash_core::config_parser::parse_service;

    use super::*;

    async fn put(log: &StateLog, name: &str, replicas: u32) {
        let toml = format!(
            "name = \"{name}\"\nimage = \"busybox\"\nreplicas = {replicas}\n[resources]\nmemory = \"64MiB\"\n"
        );
        let spec = parse_service("s.toml", &toml).unwrap();
        let a = log
            .propose(Command::PutService {
                spec: Box::new(spec),
                at_ms: now_ms(),
            })
            .await
            .unwrap();
        assert!(a.rejected.is_none(), "{a:?}");
    }

    async fn placed(log: &StateLog, service: &str) -> (usize, usize) {
        let all = log.store().replicas(Some(service)).await.unwrap();
        let run: Vec<_> = all
            .iter()
            .filter(|r| r.desired == DesiredState::Run)
            .collect();
        (
            run.iter().filter(|r| r.node.is_some()).count(),
            run.iter().filter(|r| r.node.is_none()).count(),
        )
    }

    #[tokio::test]
    async fn replicas_given_up_in_a_pass_make_room_for_another_services_in_the_same_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mq = Arc::new(MessageQueue::new());
        let log = StateLog::new(
            dash_store::open(&dir.path().join("dash.db")).await.unwrap(),
            mq.clone(),
        );
        // One node with room for two replicas of 64 MiB.
        let node = NodeRecord {
            id: "n1".into(),
            address: "127.0.0.1:9".into(),
            role: NodeRole::Worker,
            state: NodeState::Ready,
            labels: Default::default(),
            capacity: dash_core::spec::Resources {
                cpu_millis: 1000,
                memory_bytes: 128 << 20,
            },
            subnet: "10.0.1.0/24".into(),
            runtime: "sim".into(),
        };
        log.propose(Command::UpsertNode {
            node: Box::new(node),
            at_ms: now_ms(),
        })
        .await
        .unwrap();
        let mut r = Reconciler::new(
            log.clone(),
            mq,
            Arc::new(Notify::new()),
            watch::channel(0).0,
        );
        put(&log, "a", 2).await;
        r.pass().await.unwrap();
        assert_eq!(placed(&log, "a").await, (2, 0), "the node is full");
        // In one pass "a" gives one up and "b" (reconciled after it) asks for one: the pass's
        // view of the node must see the room "a" left.
        put(&log, "a", 1).await;
        put(&log, "b", 1).await;
        r.pass().await.unwrap();
        assert_eq!(placed(&log, "a").await, (1, 0));
        assert_eq!(placed(&log, "b").await, (1, 0), "placed in the same pass");
    }
}
