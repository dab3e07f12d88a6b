use std::time::{Duration, Instant};

use dash_core::api::ReplicaState;
use dash_core::spec::{HealthCheck, Probe, RestartCondition, RestartPolicy};

use super::{Action, BACKOFF_RESET_AFTER, Input, Sentry};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy() -> RestartPolicy {
    RestartPolicy {
        backoff: ms(100),
        max_backoff: ms(800),
        ..Default::default()
    }
}

/// [`policy`] restarting on `condition`.
fn policy_on(condition: RestartCondition) -> RestartPolicy {
    RestartPolicy {
        condition,
        ..policy()
    }
}

fn check(retries: u32) -> HealthCheck {
    HealthCheck {
        probe: Probe::Tcp { port: 80 },
        interval: ms(1000),
        timeout: ms(500),
        retries,
        start_period: ms(0),
        restart: false,
    }
}

/// A sentry whose replica was just started at `t0`.
fn started(policy: RestartPolicy, health: Option<HealthCheck>, t0: Instant) -> Sentry {
    let mut s = Sentry::new(policy, health, 0);
    assert_eq!(s.handle(Input::Begin, t0), [Action::Report, Action::Start]);
    s.handle(Input::Started, t0);
    s
}

#[test]
fn a_new_replica_is_started_and_published_when_it_has_no_health_check() {
    let t0 = Instant::now();
    let mut s = Sentry::new(policy(), None, 0);
    assert_eq!(s.handle(Input::Begin, t0), [Action::Report, Action::Start]);
    assert_eq!(s.state(), ReplicaState::Starting);
    assert_eq!(
        s.handle(Input::Started, t0),
        [Action::Persist, Action::Publish(true), Action::Report]
    );
    assert_eq!(s.state(), ReplicaState::Running);
    assert_eq!(s.next_wake(), None, "nothing to do until it exits");
}

#[test]
fn the_first_crash_restarts_at_once_then_the_delay_doubles_up_to_the_cap() {
    let t0 = Instant::now();
    let mut s = started(policy(), None, t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..6 {
        now += ms(50); // crashes quickly each time
        let actions = s.handle(Input::Exited { code: 1 }, now);
        assert_eq!(actions[..2], [Action::Publish(false), Action::Report]);
        if actions.last() == Some(&Action::Start) {
            delays.push(Duration::ZERO);
        } else {
            let at = s.next_wake().expect("a restart is scheduled");
            delays.push(at - now);
            assert!(s.message().starts_with("restarting in"), "{}", s.message());
            assert_eq!(s.handle(Input::Tick, at - ms(1)), [], "not before its time");
            now = at;
            assert_eq!(s.handle(Input::Tick, now), [Action::Start]);
        }
        s.handle(Input::Started, now);
    }
    assert_eq!(delays, [ms(0), ms(100), ms(200), ms(400), ms(800), ms(800)]);
    assert_eq!(s.restarts(), 6);
}

#[test]
fn a_replica_that_ran_past_the_reset_is_restarted_at_once() {
    let t0 = Instant::now();
    let mut s = started(policy(), None, t0);
    let mut now = t0;
    // Four quick crashes: the next delay would be 800 ms.
    for _ in 0..4 {
        now += ms(10);
        s.handle(Input::Exited { code: 1 }, now);
        if let Some(at) = s.next_wake() {
            now = at;
            s.handle(Input::Tick, now);
        }
        s.handle(Input::Started, now);
    }
    // It now runs 10 s (the documented reset, docs/service-file.md), then crashes: restarted
    // at once.
    now += Duration::from_secs(10);
    let actions = s.handle(Input::Exited { code: 1 }, now);
    assert_eq!(actions.last(), Some(&Action::Start), "{actions:?}");
    assert_eq!(s.restarts(), 5, "the count goes on");
    s.handle(Input::Started, now);
    // And the back-off grows again from the start.
    now += ms(10);
    s.handle(Input::Exited { code: 1 }, now);
    assert_eq!(s.next_wake(), Some(now + ms(100)));
}

#[test]
fn just_short_of_the_reset_the_back_off_keeps_growing() {
    let t0 = Instant::now();
    let mut s = started(policy(), None, t0);
    let now = t0 + ms(10);
    s.handle(Input::Exited { code: 1 }, now); // immediate
    s.handle(Input::Started, now);
    let now = now + ms(9_999);
    s.handle(Input::Exited { code: 1 }, now);
    assert_eq!(s.next_wake(), Some(now + ms(100)));
}

#[test]
fn the_budget_counts_every_restart_and_then_gives_up() {
    let t0 = Instant::now();
    let p = RestartPolicy {
        max_attempts: 2,
        ..policy()
    };
    let mut s = started(p, None, t0);
    let mut now = t0;
    for _ in 0..2 {
        now += BACKOFF_RESET_AFTER; // long runs: the delay resets, the budget does not
        let actions = s.handle(Input::Exited { code: 3 }, now);
        assert_eq!(actions.last(), Some(&Action::Start));
        s.handle(Input::Started, now);
    }
    now += BACKOFF_RESET_AFTER;
    assert_eq!(
        s.handle(Input::Exited { code: 3 }, now),
        [Action::Publish(false), Action::Report]
    );
    assert_eq!(s.state(), ReplicaState::Failed);
    assert_eq!(s.message(), "gave up after 2 restarts");
    assert_eq!(s.next_wake(), None);
}

#[test]
fn on_failure_stays_exited_after_a_clean_exit_and_never_never_restarts() {
    let t0 = Instant::now();
    let on_failure = policy_on(RestartCondition::OnFailure);
    let mut s = started(on_failure, None, t0);
    assert_eq!(
        s.handle(Input::Exited { code: 0 }, t0),
        [Action::Publish(false), Action::Report]
    );
    assert_eq!(s.state(), ReplicaState::Exited);
    assert_eq!(s.exit_code(), Some(0));
    assert_eq!(s.next_wake(), None);

    let never = policy_on(RestartCondition::Never);
    let mut s = started(never, None, t0);
    s.handle(Input::Exited { code: 9 }, t0);
    assert_eq!(s.state(), ReplicaState::Exited);
    assert_eq!(s.next_wake(), None);
}

#[test]
fn a_failed_start_is_reported_with_its_reason_and_retried_with_back_off() {
    let t0 = Instant::now();
    let mut s = Sentry::new(policy(), None, 0);
    s.handle(Input::Begin, t0);
    let actions = s.handle(Input::StartFailed("image x: not found".into()), t0);
    assert_eq!(actions, [Action::Persist, Action::Report, Action::Start]);
    assert_eq!(s.state(), ReplicaState::Failed);
    assert_eq!(s.exit_code(), Some(-1));
    let actions = s.handle(Input::StartFailed("image x: not found".into()), t0);
    assert_eq!(actions, [Action::Persist, Action::Report]);
    assert_eq!(s.message(), "image x: not found; restarting in 100ms");
    assert_eq!(s.next_wake(), Some(t0 + ms(100)));
}

#[test]
fn an_exit_that_was_already_handled_changes_nothing() {
    let t0 = Instant::now();
    let never = policy_on(RestartCondition::Never);
    let mut s = started(never, None, t0);
    s.handle(Input::Exited { code: 1 }, t0);
    assert_eq!(s.handle(Input::Exited { code: 1 }, t0), []);
    assert_eq!(s.handle(Input::Disappeared, t0), []);
}

#[test]
fn a_vanished_container_counts_as_an_exit() {
    let t0 = Instant::now();
    let mut s = started(policy(), None, t0);
    let actions = s.handle(Input::Disappeared, t0);
    assert_eq!(
        actions,
        [Action::Publish(false), Action::Report, Action::Start]
    );
    assert_eq!(s.message(), "container disappeared");
}

#[test]
fn health_verdicts_drive_the_state_and_the_published_ports() {
    let t0 = Instant::now();
    let mut s = Sentry::new(policy(), Some(check(2)), 0);
    s.handle(Input::Begin, t0);
    // With a health check nothing is published before the first passing probe.
    assert_eq!(
        s.handle(Input::Started, t0),
        [Action::Persist, Action::Report]
    );
    let first = s.next_wake().expect("a probe is scheduled");
    assert_eq!(first, t0 + ms(200), "at least 200 ms after the start");
    assert_eq!(s.handle(Input::Tick, first), [Action::Probe]);
    assert_eq!(s.next_wake(), Some(first + ms(1000)), "every interval");
    assert_eq!(
        s.handle(Input::Probed(Ok(())), first),
        [Action::Publish(true), Action::Report]
    );
    assert_eq!(s.state(), ReplicaState::Healthy);
    // One failure is within the retries; the second makes it unhealthy.
    assert_eq!(
        s.handle(Input::Probed(Err("tcp: refused".into())), first),
        []
    );
    assert_eq!(s.state(), ReplicaState::Healthy);
    assert_eq!(
        s.handle(Input::Probed(Err("tcp: refused".into())), first),
        [Action::Publish(false), Action::Report]
    );
    assert_eq!(s.state(), ReplicaState::Unhealthy);
    assert_eq!(s.message(), "tcp: refused");
    // Unhealthy is not an exit: no restart, probes go on.
    assert_eq!(s.restarts(), 0);
    assert!(s.next_wake().is_some());
    // Healthy again at the first pass.
    assert_eq!(
        s.handle(Input::Probed(Ok(())), first),
        [Action::Publish(true), Action::Report]
    );
    assert_eq!(s.state(), ReplicaState::Healthy);
    assert_eq!(s.message(), "");
}

#[test]
fn the_start_period_delays_the_first_probe_and_a_restart_starts_the_verdict_over() {
    let t0 = Instant::now();
    let mut h = check(1);
    h.start_period = ms(3000);
    let mut s = started(policy(), Some(h), t0);
    assert_eq!(s.next_wake(), Some(t0 + ms(3000)));
    assert_eq!(s.handle(Input::Tick, t0 + ms(2999)), []);
    s.handle(Input::Tick, t0 + ms(3000));
    s.handle(Input::Probed(Ok(())), t0 + ms(3000));
    assert_eq!(s.state(), ReplicaState::Healthy);
    // It crashes: no probes while it is down, and after the restart it must pass again.
    let t1 = t0 + ms(4000);
    let actions = s.handle(Input::Exited { code: 137 }, t1);
    assert_eq!(actions.last(), Some(&Action::Start));
    assert_eq!(
        s.handle(Input::Probed(Ok(())), t1),
        [],
        "a late probe result"
    );
    s.handle(Input::Started, t1);
    assert_eq!(s.state(), ReplicaState::Running);
    assert_eq!(s.next_wake(), Some(t1 + ms(3000)));
}

#[test]
fn an_adopted_replica_is_running_and_probed() {
    let t0 = Instant::now();
    let mut s = Sentry::new(policy(), Some(check(1)), 4);
    assert_eq!(s.handle(Input::Adopted, t0), [Action::Report]);
    assert_eq!(s.state(), ReplicaState::Running);
    assert_eq!(s.message(), "re-adopted");
    assert_eq!(s.restarts(), 4);
    assert_eq!(s.next_wake(), Some(t0 + ms(200)));
}

#[test]
fn a_replica_found_exited_after_a_daemon_restart_follows_the_policy() {
    let t0 = Instant::now();
    let mut s = Sentry::new(policy(), None, 3);
    assert_eq!(
        s.handle(Input::FoundExited { code: 2 }, t0),
        [Action::Start]
    );
    assert_eq!(s.restarts(), 4);
    let never = policy_on(RestartCondition::Never);
    let mut s = Sentry::new(never, None, 0);
    assert_eq!(s.handle(Input::FoundExited { code: 2 }, t0), []);
    assert_eq!(s.state(), ReplicaState::Exited);
}

#[test]
fn the_reset_period_is_the_documented_10_s() {
    assert_eq!(BACKOFF_RESET_AFTER, Duration::from_secs(10));
}

#[test]
fn an_oom_kill_says_so_until_the_next_exit_and_after_the_restart() {
    let t0 = Instant::now();
    let mut s = started(policy(), None, t0);
    let why = "out of memory (limit 8 MiB)".to_string();
    let actions = s.handle(
        Input::Killed {
            code: 137,
            why: why.clone(),
        },
        t0 + ms(50),
    );
    assert_eq!(s.state(), ReplicaState::Exited);
    assert_eq!(s.exit_code(), Some(137));
    assert!(actions.contains(&Action::Report), "{actions:?}");
    // The first restart is immediate: the report after it still says why the last run ended.
    assert!(actions.contains(&Action::Start), "{actions:?}");
    s.handle(Input::Started, t0 + ms(60));
    assert_eq!(s.message(), format!("last exit: {why}"));
    // An ordinary exit later does not repeat the old cause.
    s.handle(Input::Exited { code: 1 }, t0 + ms(70));
    assert!(s.message().starts_with("restarting in"), "{}", s.message());
    s.handle(Input::Tick, t0 + ms(10_000));
    s.handle(Input::Started, t0 + ms(10_001));
    assert_eq!(s.message(), "");
    // A kill reported for a process not running is not news.
    s.handle(Input::Exited { code: 1 }, t0 + ms(10_002));
    assert!(
        s.handle(
            Input::Killed {
                code: 137,
                why: why.clone()
            },
            t0 + ms(10_003)
        )
        .is_empty()
    );
}

#[test]
fn an_unhealthy_replica_is_stopped_and_restarted_when_its_check_says_restart() {
    let t0 = Instant::now();
    let mut h = check(2);
    h.restart = true;
    let mut s = started(policy(), Some(h), t0);
    // Two failures in a row: unhealthy, which here means stopped, then the policy.
    s.handle(
        Input::Probed(Err("connection refused".into())),
        t0 + ms(1000),
    );
    let actions = s.handle(
        Input::Probed(Err("connection refused".into())),
        t0 + ms(2000),
    );
    assert_eq!(actions[0], Action::Stop, "{actions:?}");
    assert!(actions.contains(&Action::Publish(false)), "{actions:?}");
    assert!(actions.contains(&Action::Report), "{actions:?}");
    assert!(
        actions.contains(&Action::Start),
        "the first restart is immediate: {actions:?}"
    );
    assert_eq!(s.state(), ReplicaState::Exited);
    assert_eq!(
        s.message(),
        "stopped by its health check: connection refused"
    );
    // The stopped container's exit is not news; the new one says why the last run ended.
    assert!(
        s.handle(Input::Exited { code: 143 }, t0 + ms(2100))
            .is_empty()
    );
    s.handle(Input::Started, t0 + ms(2200));
    assert_eq!(
        s.message(),
        "last exit: stopped by its health check: connection refused"
    );
    assert_eq!(s.restarts(), 1);
}

#[test]
fn without_restart_an_unhealthy_replica_only_leaves_its_routes() {
    let t0 = Instant::now();
    let mut s = started(policy(), Some(check(1)), t0);
    let actions = s.handle(Input::Probed(Err("503".into())), t0 + ms(1000));
    assert_eq!(actions, [Action::Publish(false), Action::Report]);
    assert_eq!(s.state(), ReplicaState::Unhealthy);
}
