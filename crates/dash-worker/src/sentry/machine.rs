//! sentry: the decisions about one replica's life, as a pure state machine.
//!
//! ```text
//!   what the supervisor saw                          what it must do
//!   (start result, exit, probe result, time) ──▶ Sentry::handle ──▶ [Action]
//!                                                     │            (start, publish, probe,
//!                                                     └─ state,     report, persist)
//!                                                        restarts, message, next wake-up
//! ```
//!
//! `agent::supervise` observes the container and carries out the actions; nothing here touches
//! the OS or reads the clock (time comes in as `now`), so every rule — restart policy,
//! back-off and its reset, health verdicts, when ports are published — is a unit test away.

use std::time::{Duration, Instant};

use dash_core::api::ReplicaState;
use dash_core::spec::{HealthCheck, RestartPolicy};

use super::health::Tracker;
use super::restart::{AfterExit, after_exit};

/// A replica that ran at least this long before it exited starts its back-off over: its next
/// restart is immediate, however often it crashed before. Docker resets its restart delay
/// after 10 s of running, Kubernetes its CrashLoopBackOff after 10 min; a replica that crashed
/// six times over a month should not wait `max_backoff` after every later crash.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// The first probe waits at least this long, even with `start_period = 0`.
const FIRST_PROBE_MIN: Duration = Duration::from_millis(200);

/// What the supervisor observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// No container yet (a new replica, or one whose container is gone): start it.
    Begin,
    /// The container was found running when the supervisor began (a daemon restart).
    Adopted,
    /// The container had exited while nobody watched it, with this code.
    FoundExited { code: i32 },
    /// The container was created and started.
    Started,
    /// It could not be started; why.
    StartFailed(String),
    /// Its process exited with this code (exit status, or 128 + signal).
    Exited { code: i32 },
    /// Its process ended with this code and we know why: `why` (e.g. "out of memory (limit
    /// 8 MiB)": the kernel's OOM killer struck in its cgroup).
    Killed { code: i32, why: String },
    /// Its container vanished (removed behind the daemon's back).
    Disappeared,
    /// A health probe's result (`Err` says why it failed).
    Probed(Result<(), String>),
    /// Time passed: a restart or a probe may be due.
    Tick,
}

/// What the supervisor must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove what is left of the container, then create and start it; feed back `Started` or
    /// `StartFailed`.
    Start,
    /// Make the replica a backend of its published ports (`true`) or take it out (`false`).
    Publish(bool),
    /// Run the health probe; feed back `Probed`.
    Probe,
    /// Stop its container (SIGTERM, the grace period, SIGKILL): its health check failed and
    /// the service asks for a restart then. Its exit is not news.
    Stop,
    /// Send the replica's status to the masters.
    Report,
    /// Record the replica (restart count, start time) in the node's store.
    Persist,
}

/// One replica's sentry.
#[derive(Debug)]
pub struct Sentry {
    policy: RestartPolicy,
    health: Option<HealthCheck>,
    state: ReplicaState,
    /// Restarts since the replica was created (reported, and the `max_attempts` budget).
    restarts: u32,
    /// Restarts since the back-off last started over: the delay grows with this.
    backoff_step: u32,
    exit_code: Option<i32>,
    message: String,
    /// Why its last run ended, when known: shown after the restart ("last exit: …"), as
    /// Kubernetes shows a container's last state.
    last_cause: Option<String>,
    running_since: Option<Instant>,
    restart_at: Option<Instant>,
    next_probe: Option<Instant>,
    tracker: Tracker,
}

impl Sentry {
    /// A sentry for a replica that has restarted `restarts` times already (0 for a new one).
    pub fn new(policy: RestartPolicy, health: Option<HealthCheck>, restarts: u32) -> Self {
        Self {
            policy,
            health,
            state: ReplicaState::Starting,
            restarts,
            // A re-adopted replica keeps its restart count but not its back-off: the daemon
            // does not know how long it ran.
            backoff_step: 0,
            exit_code: None,
            message: String::new(),
            last_cause: None,
            running_since: None,
            restart_at: None,
            next_probe: None,
            tracker: Tracker::default(),
        }
    }

    pub fn state(&self) -> ReplicaState {
        self.state
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a container process should be running now, so its exit is worth watching.
    pub fn watches_exit(&self) -> bool {
        matches!(
            self.state,
            ReplicaState::Running | ReplicaState::Healthy | ReplicaState::Unhealthy
        )
    }

    /// When the next `Tick` has something to do (a restart or a probe), if ever.
    pub fn next_wake(&self) -> Option<Instant> {
        match (self.restart_at, self.next_probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes one observation; returns what to do about it.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut actions = self.decide(input, now);
        // A report sends the state as it is once every action is decided: one is enough.
        actions.dedup();
        actions
    }

    fn decide(&mut self, input: Input, now: Instant) -> Vec<Action> {
        match input {
            Input::Begin => {
                self.state = ReplicaState::Starting;
                vec![Action::Report, Action::Start]
            }
            Input::Adopted => {
                self.state = ReplicaState::Running;
                self.message = "re-adopted".into();
                self.running_since = Some(now);
                self.schedule_first_probe(now);
                vec![Action::Report]
            }
            Input::FoundExited { code } => {
                self.state = ReplicaState::Exited;
                self.exit_code = Some(code);
                // How long it ran is unknown: no reset of the back-off.
                self.after_exit(now)
            }
            Input::Started => {
                self.state = ReplicaState::Running;
                self.exit_code = None;
                self.message = self
                    .last_cause
                    .take()
                    .map(|why| format!("last exit: {why}"))
                    .unwrap_or_default();
                self.running_since = Some(now);
                self.tracker = Tracker::default();
                self.schedule_first_probe(now);
                let mut actions = vec![Action::Persist];
                if self.health.is_none() {
                    actions.push(Action::Publish(true));
                }
                actions.push(Action::Report);
                actions
            }
            Input::StartFailed(why) => {
                self.state = ReplicaState::Failed;
                // A failed start counts as an exit for the restart policy.
                self.exit_code = Some(-1);
                self.message = why;
                self.running_since = None;
                self.next_probe = None;
                let mut actions = vec![Action::Persist, Action::Report];
                actions.extend(self.after_exit(now));
                actions
            }
            Input::Exited { code } if self.watches_exit() => {
                self.state = ReplicaState::Exited;
                self.exit_code = Some(code);
                self.message.clear();
                self.exited(now)
            }
            Input::Killed { code, why } if self.watches_exit() => {
                self.state = ReplicaState::Exited;
                self.exit_code = Some(code);
                self.message = why.clone();
                self.last_cause = Some(why);
                self.exited(now)
            }
            Input::Disappeared if self.watches_exit() => {
                self.state = ReplicaState::Exited;
                self.exit_code = Some(-1);
                self.message = "container disappeared".into();
                self.exited(now)
            }
            // An exit already handled, or of a container not started: nothing new.
            Input::Exited { .. } | Input::Killed { .. } | Input::Disappeared => Vec::new(),
            Input::Probed(result) => self.probed(result, now),
            Input::Tick => self.tick(now),
        }
    }

    fn schedule_first_probe(&mut self, now: Instant) {
        self.next_probe = self
            .health
            .as_ref()
            .map(|h| now + h.start_period.max(FIRST_PROBE_MIN));
    }

    /// A watched process ended: out of the published ports, report, then the policy.
    fn exited(&mut self, now: Instant) -> Vec<Action> {
        if self
            .running_since
            .is_some_and(|since| now.saturating_duration_since(since) >= BACKOFF_RESET_AFTER)
        {
            self.backoff_step = 0;
        }
        self.running_since = None;
        self.next_probe = None;
        let mut actions = vec![Action::Publish(false), Action::Report];
        actions.extend(self.after_exit(now));
        actions
    }

    /// The restart policy after an exit (or a failed start).
    fn after_exit(&mut self, now: Instant) -> Vec<Action> {
        let code = self.exit_code.unwrap_or(-1);
        // The budget counts every restart; the delay only those since the last reset.
        let decision = match after_exit(&self.policy, code, self.restarts) {
            AfterExit::RestartIn(_) => AfterExit::RestartIn(self.policy.delay(self.backoff_step)),
            other => other,
        };
        match decision {
            AfterExit::RestartIn(delay) => {
                self.restart_at = Some(now + delay);
                if delay.is_zero() {
                    return self.tick(now);
                }
                let next = format!("restarting in {}", dash_core::units::format_age(delay));
                // Keep why it failed in view: "image …: not found; restarting in 400ms".
                self.message = match self.message.split("; restarting in ").next() {
                    Some(why) if !why.is_empty() && !why.starts_with("restarting in") => {
                        format!("{why}; {next}")
                    }
                    _ => next,
                };
                vec![Action::Report]
            }
            AfterExit::Stay => Vec::new(),
            AfterExit::GiveUp => {
                self.state = ReplicaState::Failed;
                self.message = format!("gave up after {} restarts", self.restarts);
                vec![Action::Report]
            }
        }
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        if let Some(at) = self.restart_at {
            if now < at {
                return Vec::new();
            }
            self.restart_at = None;
            self.restarts = self.restarts.saturating_add(1);
            self.backoff_step = self.backoff_step.saturating_add(1);
            return vec![Action::Start];
        }
        match self.next_probe {
            Some(at) if now >= at && self.watches_exit() => {
                // The next one is counted from now; the result comes back as `Probed`.
                self.next_probe = self.health.as_ref().map(|h| now + h.interval);
                vec![Action::Probe]
            }
            _ => Vec::new(),
        }
    }

    fn probed(&mut self, result: Result<(), String>, now: Instant) -> Vec<Action> {
        let Some(h) = &self.health else {
            return Vec::new();
        };
        let restart = h.restart;
        if !self.watches_exit() {
            // A late answer about a process that is gone.
            return Vec::new();
        }
        let Some(healthy) = self.tracker.record(result.is_ok(), h.retries) else {
            return Vec::new();
        };
        if !healthy && restart {
            // `[health] restart = true`: stopped, then the restart policy, as Swarm does.
            let why = format!(
                "stopped by its health check: {}",
                result.err().unwrap_or_default()
            );
            self.state = ReplicaState::Exited;
            self.exit_code = None;
            self.message = why.clone();
            self.last_cause = Some(why);
            let mut actions = vec![Action::Stop];
            actions.extend(self.exited(now));
            return actions;
        }
        self.state = if healthy {
            ReplicaState::Healthy
        } else {
            ReplicaState::Unhealthy
        };
        self.message = result.err().unwrap_or_default();
        vec![Action::Publish(healthy), Action::Report]
    }
}

#[cfg(test)]
#[path = "machine_test.rs"]
mod tests;
