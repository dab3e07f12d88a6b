//! The route feeder: the local node's proxy follows the master's routes.
//!
//! ```text
//!  message_queue event ─┐ (a burst folds into one rebuild)
//!  start ───────────────┴─► route_table::build(store) ─► routes feed ─► the node's proxy
//!                           route_table::endpoints(store) ─► endpoints feed ─► its DNS
//! ```

use std::sync::Arc;

use dash_core::api::{RouteEntry, ServiceEndpoints};
use dash_store::MasterStore;
use tokio::sync::watch;

use crate::message_queue::MessageQueue;
use crate::route_table;

/// Keeps the proxy's table equal to the master's routes: rebuilt at start and after every
/// event (a burst of events is folded into one rebuild).
pub(super) async fn feed(
    store: MasterStore,
    mq: Arc<MessageQueue>,
    routes: watch::Sender<Vec<RouteEntry>>,
    endpoints: watch::Sender<Vec<ServiceEndpoints>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = mq.subscribe();
    loop {
        let started = tokio::time::Instant::now();
        match route_table::build(&store).await {
            Ok(entries) => {
                routes.send_replace(entries);
            }
            Err(e) => tracing::warn!(error = %e, "building the routing table"),
        }
        match route_table::endpoints(&store).await {
            Ok(list) => {
                endpoints.send_if_modified(|now| {
                    let changed = *now != list;
                    if changed {
                        *now = list;
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e, "listing the services' endpoints"),
        }
        tokio::select! {
            r = events.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                // Under a stream of events, rebuilds start 5 ms apart at most; the rest of
                // a burst folds into the same rebuild.
                tokio::time::sleep_until(started + std::time::Duration::from_millis(5)).await;
                while events.try_recv().is_ok() {}
            }
            _ = shutdown.changed() => return,
        }
    }
}
