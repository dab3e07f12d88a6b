//! reconciler: executes the plans of `dash_core::reconcile` with placements from
//! `dash_core::scheduler`. The decisions are pure; this file only reads the store, applies
//! commands and tells workers that their assignments changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{DesiredState, NodeState, ReplicaInfo};
use dash_core::command::{Command, NewReplica};
use dash_core::event::EventKind;
use dash_core::reconcile::{self, Action, ReplicaView};
use dash_core::scheduler::{self, NodeSnapshot, Request};
use dash_core::{ReplicaId, ServiceName};
use dash_store::{MasterStore, ServiceRow, StoreError};
use tokio::sync::{Notify, watch};

use crate::message_queue::MessageQueue;
use crate::now_ms;

pub struct Reconciler {
    store: MasterStore,
    mq: Arc<MessageQueue>,
    wake: Arc<Notify>,
    changes: watch::Sender<u64>,
    updating: HashSet<String>,
}

impl Reconciler {
    pub fn new(
        store: MasterStore,
        mq: Arc<MessageQueue>,
        wake: Arc<Notify>,
        changes: watch::Sender<u64>,
    ) -> Self {
        Self {
            store,
            mq,
            wake,
            changes,
            updating: HashSet::new(),
        }
    }

    /// Runs until `shutdown` resolves: a pass on every wake-up and every second.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over every service.
    pub async fn pass(&mut self) -> Result<(), StoreError> {
        let mut changed = self.evacuate_lost_nodes().await?;
        for row in self.store.services().await? {
            if row.removing {
                continue;
            }
            changed |= self.reconcile(&row).await?;
        }
        if changed {
            self.changes.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Replicas on nodes that are down (or gone) are given up: marked for removal, so the plan
    /// starts replacements on nodes that are up. When the node comes back its agent sees the
    /// removal and stops them: never two copies serving once it is reachable again.
    async fn evacuate_lost_nodes(&self) -> Result<bool, StoreError> {
        let nodes = self.store.nodes().await?;
        let up: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.state != NodeState::Down)
            .map(|n| n.id.as_str())
            .collect();
        let mut changed = false;
        for r in self.store.replicas(None).await? {
            let Some(node) = &r.node else { continue };
            if r.desired != DesiredState::Run || up.contains(node.as_str()) {
                continue;
            }
            self.store
                .apply(&Command::SetReplicaDesired {
                    id: r.id.clone(),
                    desired: DesiredState::Remove,
                    at_ms: now_ms(),
                })
                .await?;
            self.mq.publish(
                EventKind::ReplicaStopping,
                Some(&r.service),
                Some(&r.id),
                format!("node {node} is down; replaced elsewhere"),
            );
            changed = true;
        }
        Ok(changed)
    }

    async fn reconcile(&mut self, row: &ServiceRow) -> Result<bool, StoreError> {
        let name = row.spec.name.to_string();
        let replicas = self.store.replicas(Some(&name)).await?;
        let views: Vec<ReplicaView> = replicas
            .iter()
            .map(|r| ReplicaView {
                id: r.id.clone(),
                version: r.version,
                desired: r.desired,
                state: r.state,
                created_ms: r.created_ms,
            })
            .collect();
        let now = now_ms();
        let plan = reconcile::plan(&row.spec, row.version, &views, now, row.last_batch_ms);
        let mut changed = false;

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
            self.store
                .apply(&Command::SetUpdateBatch {
                    name: name.clone(),
                    at_ms: now,
                })
                .await?;
        }
        for action in plan.actions {
            match action {
                Action::Remove { replica, reason } => {
                    self.store
                        .apply(&Command::SetReplicaDesired {
                            id: replica.clone(),
                            desired: DesiredState::Remove,
                            at_ms: now,
                        })
                        .await?;
                    self.mq.publish(
                        EventKind::ReplicaStopping,
                        Some(&name),
                        Some(&replica),
                        reason,
                    );
                    changed = true;
                }
                Action::Create { count } => {
                    self.create(row, &replicas, count).await?;
                    changed = true;
                }
            }
        }
        // Replicas that could not be placed before: try again.
        for r in replicas
            .iter()
            .filter(|r| r.node.is_none() && r.desired == DesiredState::Run)
        {
            let nodes = self.snapshot(row, &replicas).await?;
            if let Some(Ok(node)) = scheduler::place(&nodes, &request(row), 1)
                .into_iter()
                .next()
            {
                self.store
                    .apply(&Command::PlaceReplica {
                        id: r.id.clone(),
                        node: Some(node.clone()),
                        message: String::new(),
                    })
                    .await?;
                self.mq.publish(
                    EventKind::ReplicaScheduled,
                    Some(&name),
                    Some(&r.id),
                    format!("on {node}"),
                );
                changed = true;
            }
        }
        Ok(changed)
    }

    async fn create(
        &self,
        row: &ServiceRow,
        replicas: &[ReplicaInfo],
        count: usize,
    ) -> Result<(), StoreError> {
        let nodes = self.snapshot(row, replicas).await?;
        let service = &row.spec.name;
        let placed = scheduler::place(&nodes, &request(row), count);
        let new: Vec<NewReplica> = placed
            .into_iter()
            .map(|p| NewReplica {
                id: ReplicaId::generate(service).to_string(),
                service: service.to_string(),
                version: row.version,
                message: p
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                node: p.ok(),
            })
            .collect();
        self.store
            .apply(&Command::CreateReplicas {
                replicas: new.clone(),
                at_ms: now_ms(),
            })
            .await?;
        for r in &new {
            match &r.node {
                Some(node) => self.mq.publish(
                    EventKind::ReplicaScheduled,
                    Some(service.as_str()),
                    Some(&r.id),
                    format!("on {node}"),
                ),
                None => self.mq.publish(
                    EventKind::ReplicaPending,
                    Some(service.as_str()),
                    Some(&r.id),
                    r.message.clone(),
                ),
            }
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        row: &ServiceRow,
        replicas: &[ReplicaInfo],
    ) -> Result<Vec<NodeSnapshot>, StoreError> {
        let mut per_node: HashMap<&str, u32> = HashMap::new();
        for r in replicas.iter().filter(|r| r.desired == DesiredState::Run) {
            if let Some(n) = &r.node {
                *per_node.entry(n.as_str()).or_default() += 1;
            }
        }
        let _ = &row.spec;
        Ok(self
            .store
            .nodes()
            .await?
            .into_iter()
            .map(|n| NodeSnapshot {
                service_replicas: per_node.get(n.id.as_str()).copied().unwrap_or(0),
                ready: n.state == NodeState::Ready,
                total_replicas: n.replicas,
                id: n.id,
                labels: n.labels,
                capacity: n.capacity,
                allocated: n.allocated,
            })
            .collect())
    }
}

fn request(row: &ServiceRow) -> Request {
    Request {
        service: ServiceName::to_string(&row.spec.name),
        resources: row.spec.resources,
        constraints: row.spec.placement.constraints.clone(),
        max_per_node: row.spec.placement.max_per_node,
    }
}
