//! agent: the worker agent converges this node's containers on the master's assignments.
//!
//! One supervisor task per replica owns its whole life: address, network, container, the
//! restart policy and health checks, and on removal the teardown in reverse. The agent loop
//! only starts and cancels supervisors, so one slow replica never holds up another.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dash_core::ServiceSpec;
use dash_core::api::{Assignment, DesiredState, ReplicaState};
use dash_core::command::ReplicaStatus;
use dash_core::link::MasterLink;
use dash_core::spec::{PortSpec, Protocol, PullPolicy};
use dash_net::{Network, PortMapping};
use dash_runtime::container::{ContainerRuntime, ContainerSpec, ContainerStatus};
use dash_runtime::image::ImageStore;
use dash_runtime::registry::Puller;
use dash_store::{LocalReplica, WorkerStore};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::sentry::health::{self, Tracker};
use crate::sentry::restart::{AfterExit, after_exit};

/// How often a supervisor looks at its container. Exit detection is a stat of the monitor's
/// exit file, so this is cheap; it bounds the time from a crash to the restart.
const POLL: Duration = Duration::from_millis(50);

pub struct AgentConfig {
    pub node: String,
    pub subnet: (Ipv4Addr, u8),
}

struct Ctx<L> {
    node: String,
    subnet: (Ipv4Addr, u8),
    link: Arc<L>,
    store: WorkerStore,
    runtime: Arc<ContainerRuntime>,
    images: Arc<ImageStore>,
    puller: Arc<Puller>,
    net: Arc<Network>,
}

struct Supervisor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub struct Agent<L> {
    ctx: Arc<Ctx<L>>,
    supervisors: Mutex<HashMap<String, Supervisor>>,
}

impl<L: MasterLink> Agent<L> {
    pub fn new(
        cfg: AgentConfig,
        link: Arc<L>,
        store: WorkerStore,
        runtime: Arc<ContainerRuntime>,
        images: Arc<ImageStore>,
        puller: Arc<Puller>,
        net: Arc<Network>,
    ) -> Self {
        let ctx = Ctx {
            node: cfg.node,
            subnet: cfg.subnet,
            link,
            store,
            runtime,
            images,
            puller,
            net,
        };
        Self {
            ctx: Arc::new(ctx),
            supervisors: Mutex::new(HashMap::new()),
        }
    }

    /// Re-adopts recorded replicas, then follows the assignments until `shutdown`.
    /// On shutdown the containers keep running: they outlive the daemon.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // The masters' word first: a replica they moved away while this node was gone must not
        // be restarted here, not even for a moment (never two copies serving). Without an
        // answer (masters unreachable) everything recorded is adopted, as the masters left it.
        let first = tokio::select! {
            a = self.first_assignments() => a,
            _ = shutdown.changed() => return,
        };
        match self.ctx.store.list().await {
            Ok(locals) => {
                for local in locals {
                    if let Some(list) = &first
                        && !list
                            .iter()
                            .any(|a| a.replica == local.id && a.desired == DesiredState::Run)
                    {
                        tracing::info!(replica = %local.id, "no longer assigned here; tearing down");
                        let ctx = self.ctx.clone();
                        let id = local.id.clone();
                        let spec = local.spec.clone();
                        self.supervisors.lock().await.insert(
                            local.id.clone(),
                            Supervisor {
                                stop: watch::channel(true).0,
                                task: tokio::spawn(async move {
                                    teardown(&ctx, &id, &spec, None).await
                                }),
                            },
                        );
                        continue;
                    }
                    tracing::info!(replica = %local.id, "re-adopting");
                    self.spawn(
                        local.id.clone(),
                        local.service.clone(),
                        local.version,
                        local.spec.clone(),
                        Some(local),
                    )
                    .await;
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the local replica record"),
        }
        loop {
            match self.ctx.link.assignments(&self.ctx.node).await {
                Ok(assignments) => self.converge(assignments).await,
                Err(e) => tracing::warn!(error = %e, "fetching assignments"),
            }
            tokio::select! {
                _ = self.ctx.link.changed() => {}
                _ = shutdown.changed() => break,
            }
        }
        // Leave containers running; just stop watching them.
        for (_, s) in self.supervisors.lock().await.drain() {
            s.task.abort();
        }
    }

    /// The first assignment list, waiting up to 10 s for the masters.
    async fn first_assignments(&self) -> Option<Vec<Assignment>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(list) = self.ctx.link.assignments(&self.ctx.node).await {
                return Some(list);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "no assignments from the masters after 10 s; adopting every recorded replica"
                );
                return None;
            }
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(200),
                self.ctx.link.changed(),
            )
            .await;
        }
    }

    async fn converge(&self, assignments: Vec<Assignment>) {
        let mut sups = self.supervisors.lock().await;
        sups.retain(|_, s| !s.task.is_finished());
        let mut wanted = std::collections::HashSet::new();
        for a in &assignments {
            if a.desired == DesiredState::Run {
                wanted.insert(a.replica.clone());
            }
        }
        // Stop what is no longer wanted (its supervisor tears down and reports `removed`).
        for (id, s) in sups.iter() {
            if !wanted.contains(id) {
                let _ = s.stop.send(true);
            }
        }
        drop(sups);
        for a in assignments {
            let running = self.supervisors.lock().await.contains_key(&a.replica);
            match a.desired {
                DesiredState::Run if !running => {
                    self.spawn(a.replica, a.service, a.version, a.spec, None)
                        .await;
                }
                DesiredState::Remove if !running => {
                    // Nothing runs here (never started, or already torn down): clean up and confirm.
                    let ctx = self.ctx.clone();
                    let id = a.replica.clone();
                    let spec = a.spec.clone();
                    self.supervisors.lock().await.insert(
                        a.replica,
                        Supervisor {
                            stop: watch::channel(true).0,
                            task: tokio::spawn(
                                async move { teardown(&ctx, &id, &spec, None).await },
                            ),
                        },
                    );
                }
                _ => {}
            }
        }
    }

    async fn spawn(
        &self,
        id: String,
        service: String,
        version: u64,
        spec: ServiceSpec,
        adopted: Option<LocalReplica>,
    ) {
        let (stop, stop_rx) = watch::channel(false);
        let ctx = self.ctx.clone();
        let span = tracing::info_span!("replica", replica = %id);
        let task_id = id.clone();
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move { supervise(ctx, task_id, service, version, spec, adopted, stop_rx).await },
            span,
        ));
        self.supervisors
            .lock()
            .await
            .insert(id, Supervisor { stop, task });
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn port_mappings(ports: &[PortSpec]) -> Vec<PortMapping> {
    ports
        .iter()
        .filter_map(|p| {
            p.published.map(|host_port| PortMapping {
                host_port,
                container_port: p.container,
                protocol: match p.protocol {
                    Protocol::Tcp => dash_net::Protocol::Tcp,
                    Protocol::Udp => dash_net::Protocol::Udp,
                },
            })
        })
        .collect()
}

struct Status {
    state: ReplicaState,
    ip: Option<Ipv4Addr>,
    restarts: u32,
    exit_code: Option<i32>,
    started_ms: Option<u64>,
    message: String,
}

impl Status {
    async fn send<L: MasterLink>(&self, ctx: &Ctx<L>, id: &str) {
        let status = ReplicaStatus {
            id: id.to_string(),
            state: self.state,
            ip: self.ip.map(|ip| ip.to_string()),
            restarts: self.restarts,
            exit_code: self.exit_code,
            started_ms: self.started_ms,
            message: self.message.clone(),
        };
        ctx.link.report(&ctx.node, status).await;
    }
}

async fn supervise<L: MasterLink>(
    ctx: Arc<Ctx<L>>,
    id: String,
    service: String,
    version: u64,
    spec: ServiceSpec,
    adopted: Option<LocalReplica>,
    mut stop: watch::Receiver<bool>,
) {
    let mut st = Status {
        state: ReplicaState::Starting,
        ip: adopted.as_ref().and_then(|a| a.ip),
        restarts: adopted.as_ref().map_or(0, |a| a.restarts),
        exit_code: None,
        started_ms: adopted.as_ref().and_then(|a| a.started_ms),
        message: String::new(),
    };
    let created_ms = adopted.as_ref().map_or_else(now_ms, |a| a.created_ms);
    let record = |st: &Status| LocalReplica {
        id: id.clone(),
        service: service.clone(),
        version,
        spec: spec.clone(),
        ip: st.ip,
        restarts: st.restarts,
        created_ms,
        started_ms: st.started_ms,
    };

    // Re-adopt a running container as it is; anything else (re)starts.
    let status = blocking(&ctx.runtime, &id, |rt, id| rt.status(id)).await;
    let mut running = matches!(status, Ok(ContainerStatus::Running { .. }));
    if running {
        // Re-attaching is idempotent: it restores the published ports of a restarted daemon.
        if let Some(ip) = st.ip
            && let Err(e) = ctx
                .net
                .attach(&id, ip, &port_mappings(&spec.ports), &service)
                .await
        {
            tracing::warn!(error = %e, "re-attaching the network of an adopted replica");
        }
        st.state = ReplicaState::Running;
        st.message = "re-adopted".into();
        st.send(&ctx, &id).await;
    } else if let Ok(ContainerStatus::Exited { code }) = status
        && adopted.is_some()
    {
        // It exited while the daemon was away: the restart policy decides, below.
        st.exit_code = Some(code);
        st.state = ReplicaState::Exited;
    }
    if !running && st.state != ReplicaState::Exited {
        st.send(&ctx, &id).await;
        match start(&ctx, &id, &spec, &mut st).await {
            Ok(()) => {
                running = true;
                let _ = ctx.store.put(&record(&st)).await;
                st.state = ReplicaState::Running;
                st.message.clear();
                if spec.health.is_none() {
                    publish(&ctx, &id, &spec, st.ip, true).await;
                }
                st.send(&ctx, &id).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "starting");
                st.state = ReplicaState::Failed;
                st.message = e;
                st.send(&ctx, &id).await;
            }
        }
    }

    let mut tracker = Tracker::default();
    let mut next_probe = spec
        .health
        .as_ref()
        .map(|h| Instant::now() + h.start_period.max(Duration::from_millis(200)));
    let mut restart_at: Option<Instant> = (st.state == ReplicaState::Exited).then(Instant::now);
    if st.state == ReplicaState::Exited {
        restart_at = decide_restart(&spec, &mut st, &ctx, &id).await;
    }
    let mut failed_start = !running && st.state == ReplicaState::Failed;
    if failed_start {
        // A failed start counts as an exit for the restart policy.
        st.exit_code = Some(-1);
        restart_at = decide_restart(&spec, &mut st, &ctx, &id).await;
    }

    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        if *stop.borrow() {
            break;
        }
        if let Some(at) = restart_at {
            if Instant::now() < at {
                continue;
            }
            restart_at = None;
            st.restarts += 1;
            let _ = blocking(&ctx.runtime, &id, |rt, id| rt.remove(id)).await;
            match start(&ctx, &id, &spec, &mut st).await {
                Ok(()) => {
                    failed_start = false;
                    st.state = ReplicaState::Running;
                    st.exit_code = None;
                    st.message.clear();
                    if spec.health.is_none() {
                        publish(&ctx, &id, &spec, st.ip, true).await;
                    }
                    tracker = Tracker::default();
                    next_probe = spec
                        .health
                        .as_ref()
                        .map(|h| Instant::now() + h.start_period.max(Duration::from_millis(200)));
                }
                Err(e) => {
                    failed_start = true;
                    st.state = ReplicaState::Failed;
                    st.exit_code = Some(-1);
                    st.message = e;
                }
            }
            let _ = ctx.store.put(&record(&st)).await;
            st.send(&ctx, &id).await;
            if failed_start {
                restart_at = decide_restart(&spec, &mut st, &ctx, &id).await;
            }
            continue;
        }
        if matches!(st.state, ReplicaState::Exited | ReplicaState::Failed) {
            continue;
        }
        match blocking(&ctx.runtime, &id, |rt, id| rt.status(id)).await {
            Ok(ContainerStatus::Exited { code }) => {
                publish(&ctx, &id, &spec, st.ip, false).await;
                st.exit_code = Some(code);
                st.state = ReplicaState::Exited;
                st.message.clear();
                st.send(&ctx, &id).await;
                restart_at = decide_restart(&spec, &mut st, &ctx, &id).await;
                continue;
            }
            Ok(ContainerStatus::Missing) => {
                publish(&ctx, &id, &spec, st.ip, false).await;
                st.exit_code = Some(-1);
                st.state = ReplicaState::Exited;
                st.message = "container disappeared".into();
                st.send(&ctx, &id).await;
                restart_at = decide_restart(&spec, &mut st, &ctx, &id).await;
                continue;
            }
            _ => {}
        }
        if let (Some(h), Some(at)) = (&spec.health, next_probe)
            && Instant::now() >= at
        {
            next_probe = Some(Instant::now() + h.interval);
            let result = health::probe(&h.probe, st.ip, h.timeout, &ctx.runtime, &id).await;
            if let Some(healthy) = tracker.record(result.is_ok(), h.retries) {
                st.state = if healthy {
                    ReplicaState::Healthy
                } else {
                    ReplicaState::Unhealthy
                };
                st.message = result.err().unwrap_or_default();
                publish(&ctx, &id, &spec, st.ip, healthy).await;
                st.send(&ctx, &id).await;
            }
        }
    }
    st.state = ReplicaState::Stopping;
    st.send(&ctx, &id).await;
    teardown(&ctx, &id, &spec, st.ip).await;
}

/// Applies the restart policy after an exit; returns when to restart, if at all.
async fn decide_restart<L: MasterLink>(
    spec: &ServiceSpec,
    st: &mut Status,
    ctx: &Ctx<L>,
    id: &str,
) -> Option<Instant> {
    match after_exit(&spec.restart, st.exit_code.unwrap_or(-1), st.restarts) {
        AfterExit::RestartIn(d) => {
            if !d.is_zero() {
                let next = format!("restarting in {}", dash_core::units::format_age(d));
                // Keep why it failed in view: "image …: not found; restarting in 400ms".
                st.message = match st.message.split("; restarting in ").next() {
                    Some(why) if !why.is_empty() && !why.starts_with("restarting in") => {
                        format!("{why}; {next}")
                    }
                    _ => next,
                };
                st.send(ctx, id).await;
            }
            Some(Instant::now() + d)
        }
        AfterExit::Stay => None,
        AfterExit::GiveUp => {
            st.state = ReplicaState::Failed;
            st.message = format!("gave up after {} restarts", st.restarts);
            st.send(ctx, id).await;
            None
        }
    }
}

async fn blocking<T: Send + 'static>(
    rt: &Arc<ContainerRuntime>,
    id: &str,
    f: impl FnOnce(&ContainerRuntime, &str) -> Result<T, dash_runtime::error::RuntimeError>
    + Send
    + 'static,
) -> Result<T, String> {
    let rt = rt.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || f(&rt, &id).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// Address, network, image, container: everything a replica needs to run.
async fn start<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
    st: &mut Status,
) -> Result<(), String> {
    let ip = match st.ip {
        Some(ip) => ip,
        None => ctx
            .store
            .allocate_ip(id, ctx.subnet.0, ctx.subnet.1)
            .await
            .map_err(|e| e.to_string())?,
    };
    st.ip = Some(ip);
    let attachment = ctx
        .net
        // Published ports come later (`publish`), once the replica runs or is healthy, so
        // that no connection is sent to a replica that cannot answer yet.
        .attach(id, ip, &[], spec.name.as_str())
        .await
        .map_err(|e| format!("network: {e}"))?;
    let image = ensure_image(ctx, id, spec, st).await?;
    let entrypoint = if spec.command.is_empty() {
        image.config.entrypoint.clone()
    } else {
        spec.command.clone()
    };
    let cmd = if !spec.args.is_empty() {
        spec.args.clone()
    } else if spec.command.is_empty() {
        image.config.cmd.clone()
    } else {
        Vec::new()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(format!(
            "image {} has no entrypoint or cmd; set `command` in the service file",
            spec.image
        ));
    }
    let mut env: Vec<String> = image
        .config
        .env
        .iter()
        .filter(|e| {
            e.split_once('=')
                .is_none_or(|(k, _)| !spec.env.contains_key(k))
        })
        .cloned()
        .collect();
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let cspec = ContainerSpec {
        id: id.to_string(),
        layer_dirs: image.layer_dirs.clone(),
        args,
        env,
        cwd: image
            .config
            .working_dir
            .clone()
            .filter(|w| w.starts_with('/'))
            .unwrap_or_else(|| "/".into()),
        hostname: id.chars().take(63).collect(),
        memory_bytes: (spec.resources.memory_bytes > 0).then_some(spec.resources.memory_bytes),
        cpu_millis: (spec.resources.cpu_millis > 0).then_some(spec.resources.cpu_millis),
        netns_path: Some(attachment.netns_path),
        log_max_bytes: 0,
    };
    let rt = ctx.runtime.clone();
    tokio::task::spawn_blocking(move || {
        rt.create(&cspec)?;
        rt.start(&cspec.id)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    st.started_ms = Some(now_ms());
    Ok(())
}

/// The service's image, pulled first when its pull policy says so.
async fn ensure_image<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
    st: &mut Status,
) -> Result<dash_runtime::image::ResolvedImage, String> {
    let resolve = || {
        let images = ctx.images.clone();
        let image_ref = spec.image.clone();
        async move {
            tokio::task::spawn_blocking(move || images.resolve(&image_ref))
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut local = resolve().await?;
    if local.is_err() && spec.pull_policy != PullPolicy::Always {
        // In a cluster the masters may hold it (imported or pulled there): fetch it from them.
        st.message = format!("fetching {} from the masters", spec.image);
        st.send(ctx, id).await;
        if ctx.link.fetch_image(&spec.image).await? {
            local = resolve().await?;
        }
        st.message.clear();
    }
    let must_pull = match (spec.pull_policy, &local) {
        (PullPolicy::Always, _) => true,
        (PullPolicy::IfNotPresent | PullPolicy::Never, Ok(_)) => false,
        (PullPolicy::IfNotPresent, Err(_)) => true,
        (PullPolicy::Never, Err(e)) => {
            return Err(format!(
                "image {}: {e}; pull_policy is never: run `dash image pull` or `dash image import` first",
                spec.image
            ));
        }
    };
    if !must_pull {
        return local.map_err(|e| e.to_string());
    }
    st.message = format!("pulling {}", spec.image);
    st.send(ctx, id).await;
    // Replicas asking for the same image share one pull (the puller is single-flight).
    ctx.puller
        .pull(&spec.image, &|_| {})
        .await
        .map_err(|e| format!("pulling {}: {e}", spec.image))?;
    st.message.clear();
    resolve()
        .await?
        .map_err(|e| format!("image {}: {e}", spec.image))
}

/// Makes the replica a backend of its service's published ports (`on`), or takes it out.
/// Re-attaching is idempotent and leaves the running container's network as it is.
async fn publish<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
    ip: Option<Ipv4Addr>,
    on: bool,
) {
    let Some(ip) = ip else { return };
    if spec.ports.iter().all(|p| p.published.is_none()) {
        return;
    }
    let ports = if on {
        port_mappings(&spec.ports)
    } else {
        Vec::new()
    };
    if let Err(e) = ctx.net.attach(id, ip, &ports, spec.name.as_str()).await {
        tracing::warn!(replica = id, error = %e, on, "publishing ports");
    }
}

/// How long a routed replica keeps serving after it left the routing tables, before it gets
/// SIGTERM: every node's proxy must have its new table first (workers poll the masters'
/// table every second), or a replica that exits at once on SIGTERM would still be sent
/// requests. Like Nomad's `shutdown_delay`, or the `preStop` sleep Kubernetes users add.
pub const ROUTE_DRAIN: Duration = Duration::from_secs(2);

/// Stops and removes the container, releases the network and the address, tells the master.
async fn teardown<L: MasterLink>(ctx: &Ctx<L>, id: &str, spec: &ServiceSpec, ip: Option<Ipv4Addr>) {
    // No new connections to a replica that is about to stop.
    publish(ctx, id, spec, ip, false).await;
    // (It was reported `stopping` before this, which takes it out of the routes.)
    let running = {
        let rt = ctx.runtime.clone();
        let cid = id.to_string();
        tokio::task::spawn_blocking(move || {
            matches!(rt.status(&cid), Ok(ContainerStatus::Running { .. }))
        })
        .await
        .unwrap_or(false)
    };
    if !spec.routes.is_empty() && running {
        tokio::time::sleep(ROUTE_DRAIN).await;
    }
    let rt = ctx.runtime.clone();
    let cid = id.to_string();
    let grace = spec.stop_grace;
    let res = tokio::task::spawn_blocking(move || {
        rt.stop(&cid, grace)?;
        rt.remove(&cid)?;
        rt.remove_logs(&cid)
    })
    .await;
    if let Ok(Err(e)) = res {
        tracing::warn!(replica = id, error = %e, "removing container");
    }
    let ip = match ip {
        Some(ip) => Some(ip),
        None => ctx
            .store
            .list()
            .await
            .ok()
            .and_then(|l| l.into_iter().find(|r| r.id == id).and_then(|r| r.ip)),
    };
    if let Some(ip) = ip
        && let Err(e) = ctx.net.detach(id, ip, &port_mappings(&spec.ports)).await
    {
        tracing::warn!(replica = id, error = %e, "detaching network");
    }
    if let Err(e) = ctx.store.remove(id).await {
        tracing::warn!(replica = id, error = %e, "forgetting replica");
    }
    ctx.link.removed(&ctx.node, id).await;
}
