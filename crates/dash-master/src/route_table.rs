//! The proxy's routing table from the master's state: each route of each service, with the
//! replicas that are ready (running, or healthy when the service has a health check), desired
//! to run, and have an address. Rebuilt whenever the message_queue says something changed.

use dash_core::api::{DesiredState, RouteEntry};
use dash_core::reconcile::is_ready;
use dash_store::{MasterStore, StoreError};

/// The current routing table.
pub async fn build(store: &MasterStore) -> Result<Vec<RouteEntry>, StoreError> {
    let mut out = Vec::new();
    for svc in store.services().await? {
        if svc.removing || svc.spec.routes.is_empty() {
            continue;
        }
        let name = svc.spec.name.to_string();
        let has_health = svc.spec.health.is_some();
        let upstreams: Vec<(String, String)> = store
            .replicas(Some(&name))
            .await?
            .into_iter()
            .filter(|r| r.desired == DesiredState::Run && is_ready(r.state, has_health))
            .filter_map(|r| r.ip.map(|ip| (r.id, ip)))
            .collect();
        for route in &svc.spec.routes {
            out.push(RouteEntry {
                service: name.clone(),
                route: route.clone(),
                upstreams: upstreams.clone(),
            });
        }
    }
    Ok(out)
}
