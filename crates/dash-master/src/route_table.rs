//! The proxy's routing table from the master's state: each route of each service, with the
//! replicas that are ready (running, or healthy when the service has a health check), desired
//! to run, and have an address. Rebuilt whenever the message_queue says something changed.

use std::collections::HashMap;

use dash_core::api::{DesiredState, ReplicaInfo, RouteEntry, ServiceEndpoints};
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

/// What every node's DNS knows of the services: each service's virtual IP, networks and
/// ports, the addresses of its ready replicas and of all its live ones. Two reads, however
/// many services there are.
pub async fn endpoints(store: &MasterStore) -> Result<Vec<ServiceEndpoints>, StoreError> {
    let mut replicas: HashMap<String, Vec<ReplicaInfo>> = HashMap::new();
    for r in store.all_replicas().await?.iter() {
        if r.desired == DesiredState::Run && r.ip.is_some() {
            replicas
                .entry(r.service.clone())
                .or_default()
                .push(r.clone());
        }
    }
    let mut out = Vec::new();
    for svc in store.services().await? {
        if svc.removing {
            continue;
        }
        let has_health = svc.spec.health.is_some();
        let live = replicas.remove(svc.spec.name.as_str()).unwrap_or_default();
        let address = |r: &ReplicaInfo| r.ip.clone().unwrap_or_default();
        out.push(ServiceEndpoints {
            service: svc.spec.name.to_string(),
            vip: svc.vip,
            networks: svc.spec.networks.clone(),
            ports: svc.spec.ports.clone(),
            ready: live
                .iter()
                .filter(|r| is_ready(r.state, has_health))
                .map(address)
                .collect(),
            members: live.iter().map(address).collect(),
        });
    }
    Ok(out)
}
