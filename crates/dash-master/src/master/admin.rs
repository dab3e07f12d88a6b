//! The admin API's reach into replicas: log reads and exec sessions run on this process's
//! node for its own replicas, through worker_api for replicas on other nodes.
//!
//! ```text
//!  GET /v1/replicas/{id}/logs ─► LogReader ─┬─ replica here ─► LocalLogs (blocking)
//!                                           └─ elsewhere ────► WorkerClients::read_log
//!  exec ───────────────────────► ExecStarter ┬─ replica here ─► LocalExec (dash-worker's exec)
//!                                            └─ elsewhere ────► WorkerClients::exec
//!                                               (no master_api: refused, saying why)
//! ```

use std::sync::Arc;

use super::{LocalExec, LocalLogs};
use crate::admin_api::{ExecStarter, LogReader};
use crate::worker_clients::WorkerClients;
use dash_core::api::{ExecRequest, ReplicaInfo};

/// Reads a replica's log: from the local file when it runs on `local` (or on no node), else
/// through worker_api (`remote`, when master_api is on).
pub(super) fn log_reader(
    logs: LocalLogs,
    local: String,
    remote: Option<Arc<WorkerClients>>,
) -> LogReader {
    Arc::new(move |r: ReplicaInfo, offset: u64| {
        let logs = logs.clone();
        let local = local.clone();
        let remote = remote.clone();
        Box::pin(async move {
            match (&r.node, &remote) {
                (Some(node), Some(remote)) if *node != local => {
                    remote.read_log(node, &r.id, offset).await
                }
                _ => tokio::task::spawn_blocking(move || {
                    let (data, end) = logs(&r.id, offset);
                    (String::from_utf8_lossy(&data).into_owned(), end)
                })
                .await
                .map_err(|e| e.to_string()),
            }
        })
    })
}

/// Starts an exec session: here through `exec` when the replica runs on `local` (or on no
/// node), else through worker_api; refused for another node's replica without master_api.
pub(super) fn exec_starter(
    exec: LocalExec,
    local: String,
    remote: Option<Arc<WorkerClients>>,
) -> ExecStarter {
    Arc::new(move |r: ReplicaInfo, req: ExecRequest| {
        let exec = exec.clone();
        let local = local.clone();
        let remote = remote.clone();
        Box::pin(async move {
            match (&r.node, &remote) {
                (Some(node), Some(remote)) if *node != local => {
                    remote.exec(node, &r.id, &req).await
                }
                (Some(node), None) if *node != local => Err(format!(
                    "replica {} is on node {node}, and this server runs without master_api",
                    r.id
                )),
                _ => exec(r.id, req).await,
            }
        })
    })
}
