//! agent: the worker agent converges this node's containers on the master's assignments.
//!
//! One supervisor task per replica owns its whole life: address, network, container, the
//! restart policy and health checks, and on removal the teardown in reverse. The agent loop
//! only starts and cancels supervisors, so one slow replica never holds up another.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dash_core::ServiceSpec;
use dash_core::api::{Assignment, DesiredState, ReplicaState};
use dash_core::command::ReplicaStatus;
use dash_core::link::{MasterLink, with_causes};
use dash_core::spec::{PortSpec, Protocol, PullPolicy};
use dash_image::ImageStore;
use dash_image::registry::Puller;
use dash_net::{Network, PortMapping};
use dash_runtime::container::{
    ContainerRuntime, ContainerSpec, ContainerStatus, ExitWatch, Prepared,
};
use dash_store::{LocalReplica, WorkerStore};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::sentry::health;
use crate::sentry::machine::{Action, Input, Sentry};

pub struct AgentConfig {
    pub node: String,
    pub subnet: (Ipv4Addr, u8),
    /// The node's cluster DNS (its gateway address), if it serves one.
    pub dns: Option<Ipv4Addr>,
    /// Replicas get a user namespace unless their service says otherwise.
    pub default_userns: bool,
}

struct Ctx<L> {
    cfg: AgentConfig,
    link: Arc<L>,
    store: WorkerStore,
    runtime: Arc<ContainerRuntime>,
    images: Arc<ImageStore>,
    puller: Arc<Puller>,
    net: Arc<Network>,
}

struct Supervisor {
    /// Tear down: stop, remove the container and forget the replica.
    stop: watch::Sender<bool>,
    /// Stop the container and keep it (and its logs): an attempt of a job's run that is over.
    halt: watch::Sender<bool>,
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
            cfg,
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
                            .any(|a| a.replica == local.id && a.desired != DesiredState::Remove)
                    {
                        tracing::info!(replica = %local.id, "no longer assigned here; tearing down");
                        let ctx = self.ctx.clone();
                        let id = local.id.clone();
                        let spec = local.spec.clone();
                        self.supervisors.lock().await.insert(
                            local.id.clone(),
                            Supervisor {
                                stop: watch::channel(true).0,
                                halt: watch::channel(false).0,
                                task: tokio::spawn(async move {
                                    teardown(&ctx, &id, &spec, None).await
                                }),
                            },
                        );
                        continue;
                    }
                    tracing::info!(replica = %local.id, "re-adopting");
                    let halted = first.as_ref().is_some_and(|list| {
                        list.iter()
                            .any(|a| a.replica == local.id && a.desired == DesiredState::Stop)
                    });
                    self.spawn(
                        local.id.clone(),
                        local.service.clone(),
                        local.version,
                        local.spec.clone(),
                        Some(local),
                        (None, halted),
                    )
                    .await;
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the local replica record"),
        }
        let mut sweep =
            tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.sweep().await;
        loop {
            match self.ctx.link.assignments(&self.ctx.cfg.node).await {
                Ok(assignments) => self.converge(assignments).await,
                Err(e) => tracing::warn!(error = %with_causes(&e), "fetching assignments"),
            }
            loop {
                tokio::select! {
                    _ = self.ctx.link.changed() => break,
                    _ = sweep.tick() => self.sweep().await,
                    _ = shutdown.changed() => return self.stop_watching().await,
                }
            }
        }
    }

    /// On shutdown the containers keep running: they outlive the daemon. Only their
    /// supervisors stop.
    async fn stop_watching(&self) {
        for (_, s) in self.supervisors.lock().await.drain() {
            s.task.abort();
        }
    }

    /// Removes every container and network namespace on this node that no replica owns: what a
    /// removal cut short (a daemon killed mid-teardown, a runtime error) left behind.
    async fn sweep(&self) {
        // Listed before the owners are read: a replica started after the listing is not in it.
        let rt = self.ctx.runtime.clone();
        let containers = match tokio::task::spawn_blocking(move || rt.list()).await {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sweep: listing containers");
                return;
            }
            Err(_) => return,
        };
        let namespaces = self.ctx.net.attached().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "sweep: listing network namespaces");
            Vec::new()
        });
        let mut owned: std::collections::HashSet<String> = {
            let sups = self.supervisors.lock().await;
            sups.keys().cloned().collect()
        };
        match self.ctx.store.list().await {
            Ok(locals) => owned.extend(locals.into_iter().map(|l| l.id)),
            Err(e) => {
                tracing::warn!(error = %e, "sweep: reading the replica record");
                return;
            }
        }
        for id in containers.iter().filter(|id| !owned.contains(*id)) {
            tracing::info!(container = %id, "sweep: removing a container no replica owns");
            remove_container(&self.ctx, id, Duration::ZERO).await;
        }
        for id in namespaces.iter().filter(|id| !owned.contains(*id)) {
            tracing::info!(replica = %id, "sweep: removing a network namespace no replica owns");
            if let Err(e) = self.ctx.net.detach(id, Ipv4Addr::UNSPECIFIED, &[]).await {
                tracing::warn!(replica = %id, error = %e, "sweep: detaching");
            }
        }
    }

    /// The first assignment list, waiting up to 10 s for the masters.
    async fn first_assignments(&self) -> Option<Vec<Assignment>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(list) = self.ctx.link.assignments(&self.ctx.cfg.node).await {
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
            if a.desired != DesiredState::Remove {
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
                DesiredState::Run | DesiredState::Stop if !running => {
                    let halted = a.desired == DesiredState::Stop;
                    let mut spec = a.spec;
                    if let Some(run) = a.run {
                        // A job's attempt knows its run (as a Kubernetes Job's pod knows its
                        // completion index).
                        spec.env.insert(JOB_RUN_ENV.into(), run.to_string());
                    }
                    self.spawn(
                        a.replica,
                        a.service,
                        a.version,
                        spec,
                        None,
                        (a.start_at_ms, halted),
                    )
                    .await;
                }
                DesiredState::Stop => {
                    if let Some(s) = self.supervisors.lock().await.get(&a.replica) {
                        s.halt.send_if_modified(|h| !std::mem::replace(h, true));
                    }
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
                            halt: watch::channel(false).0,
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
        (start_at_ms, halted): (Option<u64>, bool),
    ) {
        let (stop, stop_rx) = watch::channel(false);
        let (halt, halt_rx) = watch::channel(halted);
        let ctx = self.ctx.clone();
        let span = tracing::info_span!("replica", replica = %id);
        let task_id = id.clone();
        let life = Life {
            stop: stop_rx,
            halt: halt_rx,
            start_at_ms,
        };
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move { supervise(ctx, task_id, service, version, spec, adopted, life).await },
            span,
        ));
        self.supervisors
            .lock()
            .await
            .insert(id, Supervisor { stop, halt, task });
    }
}

use dash_core::clock::now_ms;

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
    /// Takes what the sentry decided (state, restarts, exit code, message).
    fn sync(&mut self, sentry: &Sentry) {
        self.state = sentry.state();
        self.restarts = sentry.restarts();
        self.exit_code = sentry.exit_code();
        self.message = sentry.message().to_owned();
    }

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
        ctx.link.report(&ctx.cfg.node, status).await;
    }
}

/// How often a supervisor looks at a running container even without a sign from its monitor
/// (exits are normally seen at once through the monitor's pidfd; this is the safety net).
const EXIT_POLL: Duration = Duration::from_secs(1);

/// The variable a job's attempt finds its run's number in.
pub const JOB_RUN_ENV: &str = "DASH_JOB_RUN";

/// What the masters want of a supervised replica over its life.
struct Life {
    /// Tear it down.
    stop: watch::Receiver<bool>,
    /// Stop its container for good and keep it (a job's attempt whose run is over).
    halt: watch::Receiver<bool>,
    /// Start its container at this instant, not before.
    start_at_ms: Option<u64>,
}

/// The longest a node holds a prepared container for its start instant (a master's clock far
/// ahead of this node's must not hold a start for long).
const MAX_START_WAIT: Duration = Duration::from_secs(5);

/// Carries out one replica's sentry: it observes the container and feeds the pure
/// [`Sentry`] machine, then does what the machine decides (start, publish, probe, report).
async fn supervise<L: MasterLink>(
    ctx: Arc<Ctx<L>>,
    id: String,
    service: String,
    version: u64,
    spec: ServiceSpec,
    adopted: Option<LocalReplica>,
    life: Life,
) {
    let Life {
        mut stop,
        mut halt,
        start_at_ms,
    } = life;
    let mut halted = false;
    let mut sentry = Sentry::new(
        spec.restart,
        spec.health.clone(),
        adopted.as_ref().map_or(0, |a| a.restarts),
    );
    let mut st = Status {
        state: ReplicaState::Starting,
        ip: adopted.as_ref().and_then(|a| a.ip),
        restarts: sentry.restarts(),
        exit_code: None,
        started_ms: adopted.as_ref().and_then(|a| a.started_ms),
        message: String::new(),
    };
    let created_ms = adopted.as_ref().map_or_else(now_ms, |a| a.created_ms);

    // Re-adopt a running container as it is; anything else (re)starts.
    let status = blocking(&ctx.runtime, &id, |rt, id| rt.status(id)).await;
    // A container left from before (created, exited) is removed before a start.
    let mut leftover = !matches!(status, Ok(ContainerStatus::Missing));
    let mut exit_fd = None;
    let first = match status {
        Ok(ContainerStatus::Running { .. }) => {
            // Re-attaching is idempotent: it restores the published ports of a restarted daemon.
            if let Some(ip) = st.ip
                && let Err(e) = ctx
                    .net
                    .attach(&id, ip, &port_mappings(&spec.ports), &service)
                    .await
            {
                tracing::warn!(error = %e, "re-attaching the network of an adopted replica");
            }
            exit_fd = exit_watch(&ctx.runtime, &id);
            Input::Adopted
        }
        // It exited while the daemon was away: the restart policy decides.
        Ok(ContainerStatus::Exited { code }) if adopted.is_some() => Input::FoundExited { code },
        // A job's attempt that ran here and whose container is gone (the node rebooted): it
        // is never run a second time. Its run is over already (halted): its result stands,
        // nothing to report; else it counts as a failed attempt, retried by its run.
        Ok(ContainerStatus::Missing) if adopted.is_some() && spec.is_job() => {
            if *halt.borrow() {
                let _ = stop.wait_for(|s| *s).await;
                teardown(&ctx, &id, &spec, st.ip).await;
                return;
            }
            Input::StartFailed(
                "its container is gone (the node restarted?): the attempt counts as failed".into(),
            )
        }
        _ => Input::Begin,
    };
    let mut todo: VecDeque<Action> = sentry.handle(first, Instant::now()).into();

    'life: loop {
        while let Some(action) = todo.pop_front() {
            let input = match action {
                Action::Start => {
                    if *halt.borrow() {
                        halted = true;
                        todo.extend(sentry.handle(
                            Input::StartFailed("stopped before it started: its run is over".into()),
                            Instant::now(),
                        ));
                        continue;
                    }
                    if leftover {
                        let _ = blocking(&ctx.runtime, &id, |rt, id| rt.remove(id)).await;
                    }
                    leftover = true;
                    st.sync(&sentry);
                    let at = StartAt {
                        ms: start_at_ms,
                        halt: halt.clone(),
                        stop: stop.clone(),
                    };
                    let result = start(&ctx, &id, &spec, &mut st, at).await;
                    exit_fd = None;
                    match result {
                        Ok(()) => {
                            exit_fd = exit_watch(&ctx.runtime, &id);
                            crate::node::telemetry::started(&id);
                            Input::Started
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "starting");
                            Input::StartFailed(e)
                        }
                    }
                }
                Action::Probe => {
                    let Some(h) = &spec.health else { continue };
                    let result = health::probe(&h.probe, st.ip, h.timeout, &ctx.runtime, &id).await;
                    Input::Probed(result)
                }
                Action::Stop => {
                    let grace = spec.stop_grace;
                    if let Err(e) =
                        blocking(&ctx.runtime, &id, move |rt, id| rt.stop(id, grace)).await
                    {
                        tracing::warn!(error = %e, "stopping an unhealthy replica");
                    }
                    exit_fd = None;
                    continue;
                }
                Action::Publish(on) => {
                    publish(&ctx, &id, &spec, st.ip, on).await;
                    continue;
                }
                Action::Report => {
                    st.sync(&sentry);
                    st.send(&ctx, &id).await;
                    continue;
                }
                Action::Persist => {
                    st.sync(&sentry);
                    let record = LocalReplica {
                        id: id.clone(),
                        service: service.clone(),
                        version,
                        spec: spec.clone(),
                        ip: st.ip,
                        restarts: st.restarts,
                        created_ms,
                        started_ms: st.started_ms,
                    };
                    if let Err(e) = ctx.store.put(&record).await {
                        tracing::warn!(error = %e, "recording the replica");
                    }
                    continue;
                }
            };
            todo.extend(sentry.handle(input, Instant::now()));
        }

        if halted
            && st.ip.is_some()
            && matches!(sentry.state(), ReplicaState::Exited | ReplicaState::Failed)
        {
            // Over for good and kept only for its logs: its address and network namespace go
            // back (a job keeping many finished attempts must not use up the node's subnet).
            if let Some(ip) = st.ip.take() {
                if let Err(e) = ctx.net.detach(&id, ip, &port_mappings(&spec.ports)).await {
                    tracing::debug!(error = %e, "detaching a finished attempt's network");
                }
                if let Err(e) = ctx.store.release_ip(&id).await {
                    tracing::warn!(error = %e, "releasing a finished attempt's address");
                }
                todo.push_back(Action::Report);
                continue 'life;
            }
        }
        if *halt.borrow_and_update() && !halted {
            // Its run is over: stop the container if it still runs, and keep it. The exit is
            // observed below like any other (a job's attempt is never restarted).
            halted = true;
            let grace = spec.stop_grace;
            if let Err(e) = blocking(&ctx.runtime, &id, move |rt, id| rt.stop(id, grace)).await {
                tracing::debug!(error = %e, "stopping a replica whose run is over");
            }
            // Its network may go now if it had exited already.
            continue 'life;
        }
        let wake = sentry.next_wake();
        let watching = sentry.watches_exit();
        let input = tokio::select! {
            _ = stop.changed() => break 'life,
            _ = halt.changed(), if !halted => continue,
            _ = exited(exit_fd.as_ref()), if watching => {
                match blocking(&ctx.runtime, &id, |rt, id| rt.status(id)).await {
                    Ok(ContainerStatus::Exited { code }) => exit_input(&ctx.runtime, &id, code).await,
                    Ok(ContainerStatus::Missing) => Input::Disappeared,
                    Ok(_) => {
                        // Still running: the monitor is gone but the init lives, or this was
                        // the safety-net poll. Watch by polling from now on.
                        if exit_fd.as_ref().is_some_and(ExitWatch::has_exited) {
                            exit_fd = None;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "reading the container's status");
                        continue;
                    }
                }
            }
            _ = sleep_until(wake) => Input::Tick,
        };
        todo.extend(sentry.handle(input, Instant::now()));
    }
    st.sync(&sentry);
    st.state = ReplicaState::Stopping;
    st.send(&ctx, &id).await;
    teardown(&ctx, &id, &spec, st.ip).await;
}

/// What an exit with `code` was: an OOM kill when the kernel's OOM killer struck in the
/// container's cgroup (still there: the container is removed only before a restart).
async fn exit_input(rt: &Arc<ContainerRuntime>, id: &str, code: i32) -> Input {
    use crate::node::telemetry::{Termination, terminated};
    if code == 0 {
        terminated(id, Termination::Completed, 0);
        return Input::Exited { code };
    }
    let facts = blocking(rt, id, |rt, id| rt.memory_facts(id)).await;
    tracing::debug!(code, ?facts, "exit: the memory cgroup");
    match facts {
        Ok(facts) if facts.oom_kills > 0 => {
            terminated(id, Termination::OomKilled, facts.oom_kills);
            Input::Killed {
                code,
                why: oom_message(facts.limit_bytes),
            }
        }
        Ok(_) => {
            terminated(id, Termination::Error, 0);
            Input::Exited { code }
        }
        Err(e) => {
            tracing::debug!(error = %e, "reading the memory cgroup after an exit");
            terminated(id, Termination::Error, 0);
            Input::Exited { code }
        }
    }
}

/// "out of memory (limit 8 MiB)": what `dash ps`, the event and /metrics say of an OOM kill.
pub fn oom_message(limit: Option<u64>) -> String {
    match limit {
        Some(l) => {
            // "8MiB" as people write it in prose: "8 MiB".
            let size = dash_core::units::format_size(l);
            let unit = size.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
            format!("out of memory (limit {} {})", &size[..unit], &size[unit..])
        }
        None => "out of memory (no limit: the host ran out)".to_string(),
    }
}

/// The container's exit as an async event (its monitor's pidfd); `None`: watch by polling.
fn exit_watch(rt: &ContainerRuntime, id: &str) -> Option<ExitWatch> {
    rt.exit_watch(id).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "no exit notification; polling");
        None
    })
}

/// Returns when the container may have exited: its monitor ended, or the poll interval passed.
async fn exited(watch: Option<&ExitWatch>) {
    let Some(watch) = watch else {
        return tokio::time::sleep(EXIT_POLL).await;
    };
    tokio::select! {
        _ = watch.exited() => {}
        _ = tokio::time::sleep(EXIT_POLL) => {}
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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
/// When a start launches: at `ms` (not before), unless the replica is halted or stopped
/// meanwhile.
struct StartAt {
    ms: Option<u64>,
    halt: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

async fn start<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
    st: &mut Status,
    mut at: StartAt,
) -> Result<(), String> {
    // The kernel's wait before the container's first cgroup move overlaps the work below.
    ctx.runtime.prime_cgroup_migration();
    let ip = match st.ip {
        Some(ip) => ip,
        None => ctx
            .store
            .allocate_ip(id, ctx.cfg.subnet.0, ctx.cfg.subnet.1)
            .await
            .map_err(|e| e.to_string())?,
    };
    st.ip = Some(ip);
    // The network and the bundle are independent until the container starts: set them up at
    // the same time (≈ 2 ms each), then launch.
    let attach = async {
        ctx.net
            // Published ports come later (`publish`), once the replica runs or is healthy, so
            // that no connection is sent to a replica that cannot answer yet.
            .attach(id, ip, &[], spec.name.as_str())
            .await
            .map_err(|e| format!("network: {e}"))
    };
    let netns_path = ctx.net.netns_path(id);
    let (attached, prepared) = tokio::join!(attach, prepare(ctx, id, spec, st, netns_path));
    let rt = ctx.runtime.clone();
    match (attached, prepared) {
        (Ok(_), Ok(prepared)) => {
            // Everything is ready: launched at its instant (a job's slot), not before; not at
            // all if its run ended meanwhile.
            if let Some(ms) = at.ms {
                let wait = Duration::from_millis(ms.saturating_sub(now_ms())).min(MAX_START_WAIT);
                let cancelled = tokio::select! {
                    _ = tokio::time::sleep(wait) => false,
                    _ = at.halt.wait_for(|h| *h) => true,
                    _ = at.stop.wait_for(|s| *s) => true,
                };
                if cancelled {
                    let cid = prepared.id().to_string();
                    drop(prepared);
                    let _ = tokio::task::spawn_blocking(move || rt.remove(&cid)).await;
                    return Err("stopped before it started: its run is over".into());
                }
            }
            tokio::task::spawn_blocking(move || rt.launch(prepared))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        (Err(e), Ok(prepared)) => {
            // Nothing runs yet: the prepared bundle goes again.
            let cid = prepared.id().to_string();
            drop(prepared);
            let _ = tokio::task::spawn_blocking(move || rt.remove(&cid)).await;
            return Err(e);
        }
        (_, Err(e)) => return Err(e),
    }
    st.started_ms = Some(now_ms());
    Ok(())
}

/// The replica's image (pulled or fetched if need be) and its container's bundle, ready to
/// launch in the network namespace at `netns_path`.
async fn prepare<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
    st: &mut Status,
    netns_path: std::path::PathBuf,
) -> Result<Prepared, String> {
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
    let (capabilities, seccomp) = security(&spec.security)?;
    let files = files(ctx, id, spec).await?;
    let userns = match spec
        .security
        .user_namespace
        .unwrap_or(ctx.cfg.default_userns)
    {
        false => None,
        true => Some(dash_runtime::IdMap {
            host_id: ctx
                .store
                .allocate_userns(id)
                .await
                .map_err(|e| format!("user namespace: {e}"))?,
            size: dash_store::USERNS_SIZE,
        }),
    };
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
        netns_path: Some(netns_path),
        log_max_bytes: 0,
        dns: ctx.cfg.dns.map(std::net::IpAddr::V4),
        capabilities: Some(capabilities),
        seccomp,
        files,
        userns,
    };
    let rt = ctx.runtime.clone();
    tokio::task::spawn_blocking(move || rt.prepare(&cspec))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The replica's secret and config files, from the masters (only for a replica whose spec
/// lists some), each with the path, owner and mode the spec gives it.
async fn files<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
) -> Result<Vec<dash_runtime::ContainerFile>, String> {
    use dash_core::secret::Kind;
    if spec.secrets.is_empty() && spec.configs.is_empty() {
        return Ok(Vec::new());
    }
    let got = ctx
        .link
        .replica_files(&ctx.cfg.node, id)
        .await
        .map_err(|e| format!("secrets and configs: {}", dash_core::link::with_causes(&e)))?;
    let refs = spec
        .secrets
        .iter()
        .map(|r| (Kind::Secret, r))
        .chain(spec.configs.iter().map(|r| (Kind::Config, r)));
    refs.map(|(kind, r)| {
        let f = got
            .iter()
            .find(|f| f.kind == kind && f.name == r.name && f.version == r.version)
            .ok_or_else(|| {
                format!(
                    "the masters sent no {} {} version {}",
                    kind.as_str(),
                    r.name,
                    r.version
                )
            })?;
        Ok(dash_runtime::ContainerFile {
            path: r.path(kind),
            data: f.data.clone(),
            uid: r.uid,
            gid: r.gid,
            mode: r.mode,
            secret: kind == Kind::Secret,
        })
    })
    .collect()
}

/// A replica's capabilities and its seccomp filter (the OCI form, resolved for this node's
/// architecture and kernel and the replica's capabilities); `None`: unconfined.
fn security(s: &dash_core::spec::Security) -> Result<(Vec<String>, Option<String>), String> {
    use dash_core::seccomp;
    let caps = s.capabilities();
    let profile = match &s.seccomp {
        dash_core::spec::Seccomp::Unconfined => None,
        dash_core::spec::Seccomp::Default => Some(seccomp::default_profile()),
        dash_core::spec::Seccomp::Profile { path, profile } => Some(
            seccomp::parse_profile(profile)
                .map_err(|e| format!("security.seccomp {path:?}: {e}"))?,
        ),
    };
    let filter = match profile {
        None => None,
        Some(p) => {
            let kernel = nix::sys::utsname::uname()
                .ok()
                .and_then(|u| seccomp::parse_kernel(&u.release().to_string_lossy()))
                .unwrap_or((0, 0));
            let resolved = p.resolve(&caps, seccomp::go_arch(std::env::consts::ARCH), kernel);
            Some(serde_json::to_string(&resolved).map_err(|e| e.to_string())?)
        }
    };
    Ok((caps.into_iter().collect(), filter))
}

/// The service's image, pulled first when its pull policy says so.
async fn ensure_image<L: MasterLink>(
    ctx: &Ctx<L>,
    id: &str,
    spec: &ServiceSpec,
    st: &mut Status,
) -> Result<dash_image::ResolvedImage, String> {
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
        // Progress of a start: the replica is starting (again), whatever its last run was.
        st.state = ReplicaState::Starting;
        st.message = format!("fetching {} from the masters", spec.image);
        st.send(ctx, id).await;
        if ctx
            .link
            .fetch_image(&spec.image)
            .await
            .map_err(|e| with_causes(&e))?
        {
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
    st.state = ReplicaState::Starting;
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

/// How long a routed replica, or one behind its service's virtual IP (a service with ports),
/// keeps serving after it left the routing tables and the virtual IP's map, before it gets
/// SIGTERM: every node's proxy and nftables must have the new state first (workers poll the
/// masters every second), or a replica that exits at once on SIGTERM would still be sent
/// requests. Like Nomad's `shutdown_delay`, or the `preStop` sleep Kubernetes users add.
pub const ROUTE_DRAIN: Duration = Duration::from_secs(2);

/// Stops and removes the container, releases the network and the address, tells the master.
async fn teardown<L: MasterLink>(ctx: &Ctx<L>, id: &str, spec: &ServiceSpec, ip: Option<Ipv4Addr>) {
    crate::node::telemetry::forget(id);
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
    if (!spec.routes.is_empty() || !spec.ports.is_empty()) && running {
        tokio::time::sleep(ROUTE_DRAIN).await;
    }
    remove_container(ctx, id, spec.stop_grace).await;
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
    ctx.link.removed(&ctx.cfg.node, id).await;
}

/// Stops and removes a container, trying again until the runtime says it is gone (a removal
/// can fail for a moment, e.g. while the container's process is exiting); what still fails
/// after that is left to the sweep.
async fn remove_container<L: MasterLink>(ctx: &Ctx<L>, id: &str, grace: Duration) {
    let mut pause = REMOVE_RETRY;
    for attempt in 1..=REMOVE_ATTEMPTS {
        let rt = ctx.runtime.clone();
        let cid = id.to_string();
        let res = tokio::task::spawn_blocking(move || {
            match rt.stop(&cid, grace) {
                // Never created (a start that failed early), or already gone: nothing to stop.
                Ok(()) | Err(dash_runtime::error::RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            rt.remove(&cid)?;
            // Kept for a while (bounded): a failed update or a drain must leave something
            // to diagnose.
            rt.retire_logs(&cid)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        match res {
            Ok(()) => return,
            Err(e) if attempt == REMOVE_ATTEMPTS => {
                tracing::error!(replica = id, error = %e, attempt, "removing container; the sweep will try again");
            }
            Err(e) => {
                tracing::warn!(replica = id, error = %e, attempt, "removing container; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Tries of [`remove_container`] (≈ 20 s in all) and the first pause between them.
const REMOVE_ATTEMPTS: u32 = 6;
const REMOVE_RETRY: Duration = Duration::from_millis(500);

/// How often the agent looks for containers and network namespaces that no replica owns.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    #[test]
    fn oom_messages_name_the_limit() {
        assert_eq!(
            super::oom_message(Some(8 << 20)),
            "out of memory (limit 8 MiB)"
        );
        assert_eq!(
            super::oom_message(Some(1536 << 20)),
            "out of memory (limit 1.5 GiB)"
        );
        assert!(super::oom_message(None).contains("no limit"));
    }
}
