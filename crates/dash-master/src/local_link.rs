//! The in-process [`MasterLink`]: on a single node (`dash server`) the worker agent talks to
//! the master through this instead of master_api's gRPC.

use std::time::Duration;

use dash_core::api::{Assignment, DesiredState};
use dash_core::command::ReplicaStatus;
use dash_core::link::{LinkError, MasterLink, with_causes};
use dash_store::MasterStore;
use tokio::sync::watch;

use crate::service_state::ServiceState;

pub struct LocalLink {
    store: MasterStore,
    state: ServiceState,
    secrets: crate::secrets::Secrets,
    changes: tokio::sync::Mutex<watch::Receiver<u64>>,
}

impl LocalLink {
    /// `changes` ticks whenever the reconciler changed assignments.
    pub fn new(
        store: MasterStore,
        state: ServiceState,
        secrets: crate::secrets::Secrets,
        changes: watch::Receiver<u64>,
    ) -> Self {
        Self {
            store,
            state,
            secrets,
            changes: tokio::sync::Mutex::new(changes),
        }
    }
}

impl MasterLink for LocalLink {
    async fn assignments(&self, node: &str) -> Result<Vec<Assignment>, LinkError> {
        assignments_of(&self.store, node).await
    }

    async fn changed(&self) {
        let mut rx = self.changes.lock().await;
        // A periodic resync covers anything missed.
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.changed()).await;
    }

    async fn report(&self, node: &str, status: ReplicaStatus) {
        if let Err(e) = self.state.report(node, status).await {
            tracing::warn!(error = %e, "recording a replica status");
        }
    }

    async fn removed(&self, node: &str, replica: &str) {
        if let Err(e) = self.state.removed(node, replica).await {
            tracing::warn!(error = %e, replica, "recording a removed replica");
        }
    }

    async fn replica_files(
        &self,
        node: &str,
        replica: &str,
    ) -> Result<Vec<dash_core::api::ReplicaFile>, LinkError> {
        replica_files_of(&self.store, &self.secrets, node, replica)
            .await
            .map_err(|e| LinkError::BadAnswer(e.into()))
    }
}

/// The files of `replica` for `node` (shared with master_api): refused unless the replica is
/// assigned to that node. The error is for the node's log; it never holds a value.
pub async fn replica_files_of(
    store: &MasterStore,
    secrets: &crate::secrets::Secrets,
    node: &str,
    replica: &str,
) -> Result<Vec<dash_core::api::ReplicaFile>, String> {
    let r = store
        .replica(replica)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no replica {replica}"))?;
    if r.node.as_deref() != Some(node) {
        return Err(format!("replica {replica} is not assigned to node {node}"));
    }
    let spec = store
        .service_version(&r.service, r.version)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("version {} of {} is not stored", r.version, r.service))?;
    secrets.files_of(&spec).await.map_err(|e| e.to_string())
}

/// Everything assigned to `node`, with the spec of each replica's version (shared with
/// master_api, which sends the same list to remote workers). A store failure is
/// [`LinkError::Store`] with the store's error as its source.
pub async fn assignments_of(store: &MasterStore, node: &str) -> Result<Vec<Assignment>, LinkError> {
    let store_error = |e: dash_store::StoreError| LinkError::Store(Box::new(e));
    let replicas = store.node_replicas(node).await.map_err(store_error)?;
    let mut out = Vec::with_capacity(replicas.len());
    for r in replicas {
        let spec = match store
            .service_version(&r.service, r.version)
            .await
            .map_err(store_error)?
        {
            Some(spec) => spec,
            None if r.desired == DesiredState::Remove => continue,
            None => {
                return Err(LinkError::VersionNotStored {
                    replica: r.id,
                    service: r.service,
                    version: r.version,
                });
            }
        };
        out.push(Assignment {
            replica: r.id,
            service: r.service,
            version: r.version,
            spec,
            desired: r.desired,
            start_at_ms: r.start_at_ms,
            run: r.run,
        });
    }
    Ok(out)
}

/// [`assignments_of`] with the error as one line of text, causes included: master_api logs
/// it as such (it moves to the typed one with master_api's own error mapping).
pub async fn node_assignments(store: &MasterStore, node: &str) -> Result<Vec<Assignment>, String> {
    assignments_of(store, node)
        .await
        .map_err(|e| with_causes(&e))
}
