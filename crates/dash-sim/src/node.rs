//! One simulated worker: a real node of the cluster as the masters see it (its own key,
//! certificate and mutual-TLS connection, heartbeats, the assignment watch, status reports and
//! removals, all through `dash_worker::master_link::GrpcLink`, the code real workers run), whose
//! containers are simulated.
//!
//! A simulated replica lives through the real sentry (`dash_worker::sentry::machine`): `Begin`
//! → `Start`; the start completes after `--start-time` and fails at `--fail-rate` (then the
//! service's restart policy decides, as on a real node); health probes always pass; a replica
//! whose assignment says `stop` exits with 143, one that leaves the list is removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dash_core::api::{Assignment, DesiredState, ReplicaState};
use dash_core::command::ReplicaStatus;
use dash_core::link::MasterLink;
use dash_worker::master_link::GrpcLink;
use dash_worker::sentry::machine::{Action, Input, Sentry};
use rand::Rng;
use tokio::sync::watch;

use crate::stats::Stats;

/// How long a removal acknowledged is not acknowledged again.
const ACK_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// What every simulated worker shares.
pub struct Shared {
    pub start_time: Duration,
    pub fail_rate: f64,
    pub stats: Arc<Stats>,
}

struct SimReplica {
    sentry: Sentry,
    /// When its container's start completes (a start in progress).
    start_done: Option<Instant>,
    /// Reported as gone or stopped: nothing more happens to it.
    halted: bool,
    /// The address it reports (from the node's subnet).
    ip: String,
    started_ms: Option<u64>,
}

/// A simulated worker's containers, driven from its assignments.
pub struct SimNode {
    name: String,
    link: Arc<GrpcLink>,
    shared: Arc<Shared>,
    replicas: HashMap<String, SimReplica>,
    /// Removals acknowledged and when: the masters drop a replica from the list once they
    /// have the word; until then it is not acknowledged again more often than
    /// [`ACK_AGAIN_AFTER`] (every list the watch sends still names it).
    acked: HashMap<String, Instant>,
    /// Statuses the masters did not take (every try failed, e.g. through a failover): sent
    /// again with the next round, unless a newer one of the same replica replaced them.
    unsent: Vec<ReplicaStatus>,
    /// The node's /24 (`a.b.c.0/24`): replicas get .2 upwards.
    subnet_base: [u8; 3],
    next_host: u32,
}

impl SimNode {
    pub fn new(name: String, subnet: &str, link: Arc<GrpcLink>, shared: Arc<Shared>) -> SimNode {
        let base = subnet
            .split('/')
            .next()
            .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
            .map_or([10, 0, 0], |a| {
                let o = a.octets();
                [o[0], o[1], o[2]]
            });
        SimNode {
            name,
            link,
            shared,
            replicas: HashMap::new(),
            acked: HashMap::new(),
            unsent: Vec::new(),
            subnet_base: base,
            next_host: 0,
        }
    }

    /// Replicas this worker holds now.
    fn held(&self) -> Vec<ReplicaState> {
        self.replicas
            .values()
            .filter(|r| !r.halted)
            .map(|r| r.sentry.state())
            .collect()
    }

    /// Runs until `kill` turns true; then the worker is silent (no goodbye: a killed machine
    /// says nothing), and what it held is counted out of the fleet; returns how many.
    pub async fn run(mut self, mut kill: watch::Receiver<bool>) -> u64 {
        loop {
            // A round (its reports may wait on the masters) ends with the kill too.
            let round = async {
                let now = Instant::now();
                if let Ok(list) = self.link.assignments(&self.name).await {
                    self.converge(list, now).await;
                }
                self.step(Instant::now()).await;
            };
            tokio::select! {
                _ = round => {}
                _ = kill.changed() => break,
            }
            let wake = self.next_wake();
            tokio::select! {
                _ = self.link.changed() => {}
                _ = sleep_until(wake) => {}
                _ = kill.changed() => break,
            }
        }
        let held = self.held();
        for state in &held {
            self.shared.stats.moved(Some(*state), None);
        }
        held.len() as u64
    }

    fn next_wake(&self) -> Option<Instant> {
        self.replicas
            .values()
            .filter(|r| !r.halted)
            .filter_map(|r| match (r.start_done, r.sentry.next_wake()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
            .min()
    }

    /// Starts what is new, stops what is to stop, removes what is gone or to remove.
    async fn converge(&mut self, list: Vec<Assignment>, now: Instant) {
        let mut wanted = std::collections::HashSet::with_capacity(list.len());
        let mut reports = Vec::new();
        let mut removed = Vec::new();
        for a in &list {
            wanted.insert(a.replica.as_str());
            match a.desired {
                DesiredState::Run => {
                    if !self.replicas.contains_key(&a.replica) {
                        self.shared.stats.placed();
                        let ip = self.next_ip();
                        let mut r = SimReplica {
                            sentry: Sentry::new(a.spec.restart, a.spec.health.clone(), 0),
                            start_done: None,
                            halted: false,
                            ip,
                            started_ms: None,
                        };
                        self.shared.stats.moved(None, Some(r.sentry.state()));
                        let actions = r.sentry.handle(Input::Begin, now);
                        self.carry_out(&a.replica, &mut r, actions, now, &mut reports);
                        self.replicas.insert(a.replica.clone(), r);
                    }
                }
                DesiredState::Stop => {
                    if let Some(r) = self.replicas.get_mut(&a.replica)
                        && !r.halted
                    {
                        // Its container stopped: reported once as exited, then left alone.
                        let before = r.sentry.state();
                        r.halted = true;
                        r.start_done = None;
                        self.shared.stats.moved(Some(before), None);
                        reports.push(ReplicaStatus {
                            id: a.replica.clone(),
                            state: ReplicaState::Exited,
                            ip: None,
                            restarts: r.sentry.restarts(),
                            exit_code: Some(143),
                            started_ms: r.started_ms,
                            message: "stopped".into(),
                        });
                    }
                }
                DesiredState::Remove => {
                    if let Some(r) = self.replicas.remove(&a.replica)
                        && !r.halted
                    {
                        self.shared.stats.moved(Some(r.sentry.state()), None);
                    }
                    // Held or not (never held here, or removed before a restart of the
                    // watch), the masters wait for the word; said again only if they still
                    // wait a while later (an acknowledgement lost).
                    let due = self
                        .acked
                        .get(&a.replica)
                        .is_none_or(|at| now.saturating_duration_since(*at) >= ACK_AGAIN_AFTER);
                    if due {
                        self.acked.insert(a.replica.clone(), now);
                        removed.push(a.replica.clone());
                    }
                }
            }
        }
        self.acked.retain(|id, _| wanted.contains(id.as_str()));
        let gone: Vec<String> = self
            .replicas
            .keys()
            .filter(|id| !wanted.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = self.replicas.remove(&id)
                && !r.halted
            {
                self.shared.stats.moved(Some(r.sentry.state()), None);
            }
        }
        self.send(reports, removed).await;
    }

    /// Completes the starts that are due and gives the sentries their ticks.
    async fn step(&mut self, now: Instant) {
        let mut reports = Vec::new();
        let ids: Vec<String> = self
            .replicas
            .iter()
            .filter(|(_, r)| !r.halted)
            .filter(|(_, r)| {
                r.start_done.is_some_and(|t| t <= now)
                    || r.sentry.next_wake().is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(mut r) = self.replicas.remove(&id) else {
                continue;
            };
            let before = r.sentry.state();
            let input = match r.start_done {
                Some(t) if t <= now => {
                    r.start_done = None;
                    if self.shared.fail_rate > 0.0
                        && rand::thread_rng().gen_bool(self.shared.fail_rate)
                    {
                        self.shared
                            .stats
                            .start_failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Input::StartFailed("simulated start failure (--fail-rate)".into())
                    } else {
                        r.started_ms = Some(dash_core::clock::now_ms());
                        Input::Started
                    }
                }
                _ => Input::Tick,
            };
            let actions = r.sentry.handle(input, now);
            self.shared
                .stats
                .moved(Some(before), Some(r.sentry.state()));
            self.carry_out(&id, &mut r, actions, now, &mut reports);
            self.replicas.insert(id, r);
        }
        self.send(reports, Vec::new()).await;
    }

    /// What the sentry asked for, done the simulated way.
    fn carry_out(
        &self,
        id: &str,
        r: &mut SimReplica,
        actions: Vec<Action>,
        now: Instant,
        reports: &mut Vec<ReplicaStatus>,
    ) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Start => {
                    self.shared
                        .stats
                        .starts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    r.start_done = Some(now + self.shared.start_time);
                }
                Action::Probe => {
                    let before = r.sentry.state();
                    queue.extend(r.sentry.handle(Input::Probed(Ok(())), now));
                    self.shared
                        .stats
                        .moved(Some(before), Some(r.sentry.state()));
                }
                Action::Stop => {
                    let before = r.sentry.state();
                    queue.extend(r.sentry.handle(Input::Exited { code: 143 }, now));
                    self.shared
                        .stats
                        .moved(Some(before), Some(r.sentry.state()));
                }
                Action::Report => {
                    let running = matches!(
                        r.sentry.state(),
                        ReplicaState::Running | ReplicaState::Healthy | ReplicaState::Unhealthy
                    );
                    let status = ReplicaStatus {
                        id: id.to_string(),
                        state: r.sentry.state(),
                        ip: running.then(|| r.ip.clone()),
                        restarts: r.sentry.restarts(),
                        exit_code: r.sentry.exit_code(),
                        started_ms: r.started_ms,
                        message: r.sentry.message().to_string(),
                    };
                    // One report per replica and round: the newest.
                    match reports.iter_mut().find(|s| s.id == id) {
                        Some(s) => *s = status,
                        None => reports.push(status),
                    }
                }
                Action::Publish(_) | Action::Persist => {}
            }
        }
    }

    /// The round's reports and removals, all at once (each call is one RPC: the masters group
    /// them into log entries).
    async fn send(&mut self, mut reports: Vec<ReplicaStatus>, removed: Vec<String>) {
        // What failed before goes first; a newer status of the same replica replaces it, and
        // a replica no longer held has nothing to say.
        let mut unsent = std::mem::take(&mut self.unsent);
        unsent
            .retain(|u| self.replicas.contains_key(&u.id) && !reports.iter().any(|r| r.id == u.id));
        unsent.append(&mut reports);
        let reports = unsent;
        if reports.is_empty() && removed.is_empty() {
            return;
        }
        let stats = self.shared.stats.clone();
        let link = self.link.clone();
        let calls = reports.iter().map(|s| link.try_report(s));
        let n = calls.len() as u64;
        let taken = futures::future::join_all(calls).await;
        let failed: Vec<ReplicaStatus> = reports
            .into_iter()
            .zip(taken)
            .filter(|(_, ok)| !ok)
            .map(|(s, _)| s)
            .collect();
        stats
            .report_failures
            .fetch_add(failed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.unsent = failed;
        stats
            .reports
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let gone = removed.iter().map(|id| link.removed(&self.name, id));
        let m = gone.len() as u64;
        futures::future::join_all(gone).await;
        stats
            .removals
            .fetch_add(m, std::sync::atomic::Ordering::Relaxed);
    }

    fn next_ip(&mut self) -> String {
        // .2 to .254, round and round: a simulated address only has to look like one.
        let host = 2 + self.next_host % 253;
        self.next_host += 1;
        let [a, b, c] = self.subnet_base;
        format!("{a}.{b}.{c}.{host}")
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
