//! service_scaler: every `interval`, each service with `[autoscale]` gets the replica count
//! its load calls for (`dash_core::autoscale`): the average CPU and memory use of its running
//! replicas against `cpu_percent` and `memory_percent`, its requests per second through every node's proxy against
//! `requests_per_second` per replica. Growth applies at once; shrinking once the load has
//! called for fewer replicas for all of `scale_down_delay`. Each change is a `dash scale`
//! with an event that says why. A service in the middle of a rolling update is left alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dash_core::api::{DesiredState, ReplicaState};
use dash_core::autoscale::{self, Load};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::service_manager::ServiceManager;

pub struct ServiceScaler {
    manager: ServiceManager,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// Per service: the recent proposals `(at_ms, replicas)`, oldest first.
    history: HashMap<String, Vec<(u64, u32)>>,
}

impl ServiceScaler {
    pub fn new(manager: ServiceManager, metrics: Arc<Metrics>, interval: Duration) -> Self {
        ServiceScaler {
            manager,
            metrics,
            interval,
            history: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.tick(now_ms()).await {
                tracing::warn!(error = %e, "autoscaling");
            }
        }
    }

    /// One round over every autoscaled service.
    pub async fn tick(&mut self, now_ms: u64) -> Result<(), String> {
        let store = self.manager.store();
        let services = store.services().await.map_err(|e| e.to_string())?;
        let samples = self.metrics.replicas();
        let mut autoscaled = Vec::new();
        for svc in services.iter().filter(|s| !s.removing) {
            let Some(policy) = svc.spec.autoscale else {
                continue;
            };
            let name = svc.spec.name.to_string();
            autoscaled.push(name.clone());
            let replicas = store
                .replicas(Some(&name))
                .await
                .map_err(|e| e.to_string())?;
            // Mid-update the load is shared with the old version's replicas: wait for the
            // update to finish rather than scale on a skewed measurement.
            if replicas
                .iter()
                .any(|r| r.desired == DesiredState::Run && r.version != svc.version)
            {
                // A gap in the proposals: scaling down waits for a whole delay again after it.
                self.history.remove(&name);
                continue;
            }
            let running: Vec<_> = replicas
                .iter()
                .filter(|r| {
                    // Serving or able to: an unhealthy replica is not measured.
                    matches!(r.state, ReplicaState::Running | ReplicaState::Healthy)
                        && r.desired == DesiredState::Run
                        && r.version == svc.version
                })
                .collect();
            // Only the replica's own node speaks for it.
            let measured: Vec<_> = running
                .iter()
                .filter_map(|r| {
                    let (node, sample, _) = samples.get(&r.id)?;
                    (r.node.as_deref() == Some(node.as_str())).then_some(sample)
                })
                .collect();
            let cpu: Vec<f64> = measured
                .iter()
                .filter_map(|s| s.cpu_percent)
                .map(|c| autoscale::cpu_of_limit(c, svc.spec.resources.cpu_millis))
                .collect();
            let limit = svc.spec.resources.memory_bytes;
            let memory: Vec<f64> = measured
                .iter()
                .filter(|_| limit > 0)
                .map(|s| s.memory_bytes as f64 / limit as f64 * 100.0)
                .collect();
            let average =
                |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let load = Load {
                running: running.len() as u32,
                cpu_percent: average(&cpu),
                memory_percent: average(&memory),
                requests_per_second: self.metrics.requests_per_second(&name),
            };
            let current = svc.spec.replicas;
            let Some(proposal) = autoscale::propose(&policy, current, &load) else {
                self.history.remove(&name);
                continue;
            };
            let delay = policy.scale_down_delay;
            let history = self.history.entry(name.clone()).or_default();
            history.push((now_ms, proposal.replicas));
            // Keep the window and one entry before it (it shows the window is covered).
            let since = now_ms.saturating_sub(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            while history.len() > 1 && history[1].0 <= since {
                history.remove(0);
            }
            let target = autoscale::stabilize(history, now_ms, delay, current);
            if target != current {
                tracing::info!(service = %name, from = current, to = target, reason = %proposal.reason, "autoscaling");
                crate::telemetry::instruments().scaled(&name, current, target);
                // One service's failure (removed meanwhile, say) does not stop the others.
                if let Err(e) = self
                    .manager
                    .autoscale(&name, target, &proposal.reason)
                    .await
                {
                    tracing::warn!(service = %name, error = %e, "autoscaling");
                }
            }
        }
        self.history.retain(|name, _| autoscaled.contains(name));
        Ok(())
    }
}

use dash_core::clock::now_ms;
