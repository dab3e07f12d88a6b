//! service_manager: create, read, update and delete of services.
//!
//! Validates through `dash-core`'s config_parser, turns each request into a
//! [`Command`], applies it through the store's state machine (the one write path) and
//! publishes what changed. Handlers in admin_api only call into here.

use std::sync::Arc;

use dash_core::ServiceSpec;
use dash_core::api::{ApplyAction, ApplyRequest, ApplyResponse, DesiredState, ServiceInfo};
use dash_core::command::Command;
use dash_core::config_parser::{Diagnostics, parse_service};
use dash_core::event::{EventDraft, EventKind};
use dash_core::reconcile::is_ready;
use dash_store::{MasterStore, Rejection, StoreError};
use tokio::sync::Notify;

use crate::now_ms;
use crate::state_log::StateLog;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("invalid service file")]
    Invalid(Diagnostics),
    #[error("service {0:?} not found")]
    NotFound(String),
    #[error("{message}")]
    BadRequest {
        field: std::borrow::Cow<'static, str>,
        message: String,
    },
    /// The state refused the change: it conflicts with what is there (e.g. the service is being
    /// removed).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A secret or config a spec lists that cannot be pinned: refused naming the entry.
fn secret_error(e: crate::secrets::SecretError) -> ManagerError {
    use crate::secrets::SecretError as E;
    match e {
        E::Invalid { field, message } => ManagerError::BadRequest {
            message: format!("{field}: {message}"),
            field: field.into(),
        },
        E::Store(e) => ManagerError::Store(e),
        other => ManagerError::Conflict(other.to_string()),
    }
}

impl From<Rejection> for ManagerError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::NotFound { name, .. } => ManagerError::NotFound(name),
            Rejection::Conflict(m) => ManagerError::Conflict(m),
            Rejection::Invalid { field, message } => ManagerError::BadRequest { field, message },
            Rejection::Exhausted(m) => ManagerError::Conflict(m),
        }
    }
}

#[derive(Clone)]
pub struct ServiceManager {
    log: StateLog,
    store: MasterStore,
    /// Wakes the reconciler after a change of desired state.
    wake: Arc<Notify>,
}

/// A service's own seccomp profile: the file `dash apply` sent with the service file, checked
/// and kept in the spec. Missing or malformed: the service is refused whole, naming the field.
fn attach_seccomp_profile(spec: &mut ServiceSpec, req: &ApplyRequest) -> Result<(), ManagerError> {
    let dash_core::spec::Seccomp::Profile { path, profile } = &mut spec.security.seccomp else {
        return Ok(());
    };
    // Where the file sets it (1-based), for the message.
    let line = req
        .content
        .lines()
        .position(|l| l.trim_start().starts_with("seccomp"))
        .map_or(1, |i| i + 1);
    let refuse = |message: String, help: &str| {
        ManagerError::Invalid(Diagnostics(vec![dash_core::config_parser::Diagnostic {
            file: req.file_name.clone(),
            line,
            column: 1,
            field: "security.seccomp".into(),
            message,
            help: Some(help.into()),
        }]))
    };
    let Some(text) = req.files.get(path.as_str()) else {
        return Err(refuse(
            format!("security.seccomp = {path:?}: the profile was not sent with the service file"),
            "apply with `dash apply -f FILE`, which sends the profile it names (a path relative to the service file)",
        ));
    };
    let parsed = dash_core::seccomp::parse_profile(text).map_err(|e| {
        refuse(
            format!("security.seccomp = {path:?}: {e}"),
            "a profile in Docker's or the OCI runtime spec's JSON format, e.g. Docker's default profile",
        )
    })?;
    // Kept normalized: the same profile written differently is the same spec.
    *profile = serde_json::to_string(&parsed).map_err(|e| refuse(e.to_string(), ""))?;
    Ok(())
}

impl ServiceManager {
    pub fn new(log: StateLog, wake: Arc<Notify>) -> Self {
        let store = log.store().clone();
        Self { log, store, wake }
    }

    pub fn store(&self) -> &MasterStore {
        &self.store
    }

    /// Where writes of the state go.
    pub fn log(&self) -> &StateLog {
        &self.log
    }

    /// Asks the reconciler for a pass (after a change it cannot see in services).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Creates or updates a service from a service file. Idempotent.
    pub async fn apply(&self, req: &ApplyRequest) -> Result<ApplyResponse, ManagerError> {
        let mut spec =
            parse_service(&req.file_name, &req.content).map_err(ManagerError::Invalid)?;
        attach_seccomp_profile(&mut spec, req)?;
        crate::secrets::pin(&self.store, &mut spec)
            .await
            .map_err(secret_error)?;
        let existing = self.store.service(spec.name.as_str()).await?;
        // An autoscaled service keeps the count it runs (within the new bounds): applying the
        // same file again must not undo the scaling, nor adding [autoscale] drop a busy
        // service to its minimum at once.
        if let (Some(a), Some(old)) = (&spec.autoscale, &existing) {
            spec.replicas = old.spec.replicas.clamp(a.min, a.max);
        }
        let name = spec.name.to_string();
        let (action, changes, plan) = match &existing {
            None => (
                ApplyAction::Created,
                vec![format!("new service {name}")],
                vec![format!("create {} replicas", spec.replicas)],
            ),
            Some(old) if old.spec == spec => (ApplyAction::Unchanged, Vec::new(), Vec::new()),
            Some(old) => {
                let changes = diff(&old.spec, &spec);
                let mut plan = Vec::new();
                if old.spec.needs_replacement(&spec) {
                    plan.push(format!(
                        "replace {} replicas, {} at a time ({})",
                        spec.replicas,
                        spec.update.parallelism,
                        match spec.update.order {
                            dash_core::spec::UpdateOrder::StopFirst => "stop-first",
                            dash_core::spec::UpdateOrder::StartFirst => "start-first",
                        }
                    ));
                } else if old.spec.replicas < spec.replicas {
                    plan.push(format!(
                        "create {} replicas",
                        spec.replicas - old.spec.replicas
                    ));
                } else if old.spec.replicas > spec.replicas {
                    plan.push(format!(
                        "remove {} replicas",
                        old.spec.replicas - spec.replicas
                    ));
                }
                (ApplyAction::Updated, changes, plan)
            }
        };
        // A job's replicas are its runs' attempts: what the apply means for its runs instead.
        let plan = match (&spec.job, action) {
            (_, ApplyAction::Unchanged) | (None, _) => plan,
            (Some(job), _) => vec![job_plan(job, existing.as_ref().map(|e| &e.spec), &spec)],
        };
        // The version the change makes (as the state machine counts it): a new one only
        // when what runs in the container changes.
        let mut version = existing.as_ref().map_or(1, |e| {
            e.version + u64::from(e.spec.needs_replacement(&spec))
        });
        if !req.dry_run && action != ApplyAction::Unchanged {
            let kind = if action == ApplyAction::Created {
                EventKind::ServiceCreated
            } else {
                EventKind::ServiceUpdated
            };
            let event = EventDraft::service(
                kind,
                &name,
                None,
                // `{version}`: the version the state machine gives it (see state_log::announce).
                format!("version {{version}}: {}", changes.join("; ")),
            );
            let applied = self
                .log
                .propose_with(
                    Command::PutService {
                        spec: Box::new(spec.clone()),
                        at_ms: now_ms(),
                    },
                    vec![event],
                )
                .await?
                .accepted()?;
            version = applied.version.unwrap_or(version);
            self.wake.notify_one();
        }
        Ok(ApplyResponse {
            service: name,
            action,
            version,
            changes,
            plan,
            dry_run: req.dry_run,
        })
    }

    /// `dash service rollback`: back to the spec of the previous version (the replica count
    /// stays), as a new version that replaces the current replicas by the update policy.
    pub async fn rollback(&self, name: &str, reason: &str) -> Result<u64, ManagerError> {
        let v = rollback(&self.log, name, reason, false).await?;
        self.wake.notify_one();
        Ok(v)
    }

    pub async fn scale(&self, name: &str, replicas: u32) -> Result<(), ManagerError> {
        self.scale_because(name, replicas, None).await
    }

    /// Scales on the service_scaler's behalf; the event says why.
    pub async fn autoscale(
        &self,
        name: &str,
        replicas: u32,
        reason: &str,
    ) -> Result<(), ManagerError> {
        self.scale_because(name, replicas, Some(reason)).await
    }

    async fn scale_because(
        &self,
        name: &str,
        replicas: u32,
        reason: Option<&str>,
    ) -> Result<(), ManagerError> {
        if replicas > dash_core::config_parser::MAX_REPLICAS {
            return Err(ManagerError::BadRequest {
                field: "replicas".into(),
                message: format!(
                    "replicas = {replicas}: must be between 0 and {}",
                    dash_core::config_parser::MAX_REPLICAS
                ),
            });
        }
        let old = self
            .store
            .service(name)
            .await?
            .ok_or_else(|| ManagerError::NotFound(name.into()))?;
        let event = EventDraft::service(
            EventKind::ServiceScaled,
            name,
            None,
            match reason {
                Some(why) => format!(
                    "replicas {} -> {replicas} (autoscale: {why})",
                    old.spec.replicas
                ),
                None => format!("replicas {} -> {replicas}", old.spec.replicas),
            },
        );
        let applied = self
            .log
            .propose_with(
                Command::ScaleService {
                    name: name.into(),
                    replicas,
                    at_ms: now_ms(),
                },
                vec![event],
            )
            .await?
            .accepted()?;
        if applied.changed {
            self.wake.notify_one();
        }
        Ok(())
    }

    pub async fn remove(&self, name: &str) -> Result<(), ManagerError> {
        self.log
            .propose_with(
                Command::RemoveService {
                    name: name.into(),
                    at_ms: now_ms(),
                },
                vec![EventDraft::service(
                    EventKind::ServiceRemoved,
                    name,
                    None,
                    "removing its replicas",
                )],
            )
            .await?
            .accepted()?;
        self.wake.notify_one();
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<ServiceInfo>, ManagerError> {
        let mut out = Vec::new();
        for row in self.store.services().await? {
            out.push(self.info(row).await?);
        }
        Ok(out)
    }

    pub async fn inspect(&self, name: &str) -> Result<ServiceInfo, ManagerError> {
        let row = self
            .store
            .service(name)
            .await?
            .ok_or_else(|| ManagerError::NotFound(name.into()))?;
        self.info(row).await
    }

    async fn info(&self, row: dash_store::ServiceRow) -> Result<ServiceInfo, ManagerError> {
        let replicas = self.store.replicas(Some(row.spec.name.as_str())).await?;
        let has_health = row.spec.health.is_some();
        let ready = replicas
            .iter()
            .filter(|r| r.desired == DesiredState::Run && is_ready(r.state, has_health))
            .count() as u32;
        let stale = replicas
            .iter()
            .filter(|r| r.desired == DesiredState::Run && r.version < row.version)
            .count();
        let update_status = if row.removing {
            "removing".to_string()
        } else if stale > 0 {
            format!("updating to version {}: {stale} replicas left", row.version)
        } else {
            String::new()
        };
        let dns_names = dash_core::spec::dns_names(&row.spec);
        Ok(ServiceInfo {
            spec: row.spec,
            version: row.version,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            ready,
            replicas,
            update_status,
            vip: row.vip,
            dns_names,
        })
    }
}

/// One line per top-level field that differs: `replicas: 3 -> 5`.
fn diff(old: &ServiceSpec, new: &ServiceSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["spec changed".into()];
    };
    let mut out = Vec::new();
    for (k, v) in &b {
        let before = a.get(k).unwrap_or(&serde_json::Value::Null);
        if before != v {
            out.push(format!("{k}: {before} -> {v}"));
        }
    }
    out
}

/// Puts the previous version's spec back (keeping the replica count); returns the new version.
/// An `automatic` rollback's version is recorded as one: it is never rolled back automatically.
pub async fn rollback(
    log: &StateLog,
    name: &str,
    reason: &str,
    automatic: bool,
) -> Result<u64, ManagerError> {
    let store = log.store();
    let row = store
        .service(name)
        .await?
        .ok_or_else(|| ManagerError::NotFound(name.to_string()))?;
    let previous = match row.version.checked_sub(1).filter(|v| *v >= 1) {
        Some(v) => store.service_version(name, v).await?,
        None => None,
    };
    let Some(mut spec) = previous else {
        return Err(ManagerError::BadRequest {
            field: "name".into(),
            message: format!(
                "service {name} is at version {}: there is no previous version to roll back to",
                row.version
            ),
        });
    };
    spec.replicas = row.spec.replicas;
    // Secrets and configs at the versions it had while kept (else the current ones).
    crate::secrets::pin_kept(store, &mut spec)
        .await
        .map_err(secret_error)?;
    if spec == row.spec {
        return Err(ManagerError::BadRequest {
            field: "name".into(),
            message: format!("service {name}: the previous version is the same as the current one"),
        });
    }
    let new_version = row.version + u64::from(row.spec.needs_replacement(&spec));
    let event = EventDraft::service(
        EventKind::UpdateRolledBack,
        name,
        None,
        format!(
            "version {} rolled back to the spec of version {} as version {{version}}: {reason}",
            row.version,
            row.version - 1
        ),
    );
    let (spec, at_ms) = (Box::new(spec), now_ms());
    let cmd = if automatic {
        Command::RollBackService { spec, at_ms }
    } else {
        Command::PutService { spec, at_ms }
    };
    let applied = log.propose_with(cmd, vec![event]).await?.accepted()?;
    Ok(applied.version.unwrap_or(new_version))
}

/// What applying job `spec` does to its runs (for `dash apply`'s plan).
fn job_plan(
    job: &dash_core::job::JobSpec,
    old: Option<&ServiceSpec>,
    spec: &ServiceSpec,
) -> String {
    match &job.schedule {
        Some(s) => {
            let zone = if s.timezone == "UTC" {
                String::new()
            } else {
                format!(" ({})", s.timezone)
            };
            format!(
                "runs on its schedule {}{zone}; runs in progress finish at their version",
                s.cron
            )
        }
        None if old.is_none_or(|o| o.needs_replacement(spec)) => format!(
            "start a run now ({} completion{}, {} at a time)",
            job.completions,
            if job.completions == 1 { "" } else { "s" },
            job.parallelism
        ),
        None => "no new run: what runs in its containers is unchanged".to_string(),
    }
}
