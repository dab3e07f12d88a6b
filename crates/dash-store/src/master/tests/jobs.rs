//! Jobs in the state machine: at most once per slot, `forbid` and `replace`, history pruning.

use dash_core::api::{DesiredState, ReplicaState};
use dash_core::job::{RunState, RunTrigger};

use super::*;

/// `PutService` of job "j" with `extra` after its name, image and kind.
fn put_job(extra: &str, at_ms: u64) -> Command {
    let spec = parse_service(
        "j.toml",
        &format!("name = \"j\"\nimage = \"b\"\nkind = \"job\"\n{extra}"),
    )
    .unwrap();
    Command::PutService {
        spec: Box::new(spec),
        at_ms,
    }
}

async fn job(s: &TestStore, extra: &str) {
    s.ok(put_job(extra, 1_000)).await;
}

/// A store with service "web" and node "n1" (see `service_on_node_n1`), then job "j".
async fn job_on_n1(extra: &str) -> (tempfile::TempDir, TestStore) {
    let (dir, s, _) = store().await;
    service_on_node_n1(&s).await;
    job(&s, extra).await;
    (dir, s)
}

fn start(trigger: RunTrigger, slot: Option<u64>, at: u64) -> Command {
    start_of("j", trigger, slot, at)
}

fn start_of(service: &str, trigger: RunTrigger, slot: Option<u64>, at: u64) -> Command {
    Command::StartJobRun {
        service: service.into(),
        trigger,
        slot_ms: slot,
        at_ms: at,
    }
}

fn finish(run: u64, state: RunState, at: u64) -> Command {
    Command::FinishJobRun {
        service: "j".into(),
        run,
        state,
        exit_code: Some(0),
        message: String::new(),
        at_ms: at,
    }
}

fn attempt(id: &str, run: u64) -> Command {
    let replica = NewReplica {
        service: "j".into(),
        run: Some(run),
        ..web_replica(id, Some("n1"))
    };
    create(vec![replica], 2_000)
}

#[tokio::test]
async fn a_slot_runs_at_most_once_and_runs_are_numbered_by_the_state() {
    let (_d, s) = job_on_n1("[schedule]\ncron = \"@every 5s\"\nconcurrency = \"allow\"\n").await;
    let jobs = s.jobs().await.unwrap();
    assert_eq!(
        jobs[0].last_slot_ms, 1_000,
        "slots before the apply are not its"
    );
    let a = s.ok(start(RunTrigger::Schedule, Some(5_000), 4_000)).await;
    assert_eq!(a.run, Some(1));
    // The same slot again (a retry, or a second master): refused, nothing changes.
    let e = s
        .refused(start(RunTrigger::Schedule, Some(5_000), 4_100))
        .await;
    assert!(e.contains("decided already"), "{e}");
    // An older slot too.
    assert!(
        s.apply(&start(RunTrigger::Schedule, Some(2_000), 4_100))
            .await
            .is_err()
    );
    let b = s.ok(start(RunTrigger::Manual, None, 4_200)).await;
    assert_eq!(b.run, Some(2));
    // Skipped slots: counted once, and decided.
    let skip = Command::SkipJobSlots {
        service: "j".into(),
        slots: vec![10_000, 15_000],
        at_ms: 16_000,
    };
    assert!(s.ok(skip.clone()).await.changed);
    let again = s.ok(skip).await;
    assert!(!again.changed);
    let j = &s.jobs().await.unwrap()[0];
    assert_eq!((j.last_slot_ms, j.skipped, j.next_run), (15_000, 2, 3));
    let runs = s.job_runs(Some("j")).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].trigger, RunTrigger::Schedule);
    assert_eq!(runs[0].slot_ms, Some(5_000));
    assert_eq!(runs[1].trigger, RunTrigger::Manual);
}

#[tokio::test]
async fn forbid_refuses_a_second_run_and_replace_stops_the_first() {
    let (_d, s) = job_on_n1("").await; // no schedule: forbid
    s.ok(start(RunTrigger::Manual, None, 2_000)).await;
    let e = s.refused(start(RunTrigger::Manual, None, 2_100)).await;
    assert!(
        e.contains("run 1 is still running") && e.contains("forbid"),
        "{e}"
    );
    job(
        &s,
        "[schedule]\ncron = \"@hourly\"\nconcurrency = \"replace\"\n",
    )
    .await;
    s.ok(attempt("j-a", 1)).await;
    let r = s.ok(start(RunTrigger::Manual, None, 3_000)).await;
    assert_eq!(r.run, Some(2));
    let runs = s.job_runs(Some("j")).await.unwrap();
    assert_eq!(runs[0].state, RunState::Stopped);
    assert!(runs[0].message.contains("replaced by run 2"));
    // Its attempt is stopped and kept (its logs stay).
    let a = s.replica("j-a").await.unwrap().unwrap();
    assert_eq!(a.desired, DesiredState::Stop);
    assert_eq!(a.run, Some(1));
    // No attempt is added to a run that is over.
    s.ok(attempt("j-late", 1)).await;
    assert!(s.replica("j-late").await.unwrap().is_none());
}

#[tokio::test]
async fn finished_runs_beyond_history_leave_with_their_replicas() {
    let (_d, s) = job_on_n1("[schedule]\ncron = \"@hourly\"\nhistory = 2\n").await;
    for run in 1..=4u64 {
        s.ok(start(RunTrigger::Manual, None, run * 10)).await;
        s.ok(attempt(&format!("j-{run}"), run)).await;
        s.ok(Command::ReportReplica {
            status: ReplicaStatus {
                id: format!("j-{run}"),
                state: ReplicaState::Exited,
                ip: None,
                restarts: 0,
                exit_code: Some(0),
                started_ms: Some(run * 10),
                message: String::new(),
            },
            at_ms: run * 10,
        })
        .await;
        assert!(
            s.ok(finish(run, RunState::Succeeded, run * 10 + 5))
                .await
                .changed
        );
        // Finishing twice changes nothing.
        assert!(
            !s.ok(finish(run, RunState::Failed, run * 10 + 6))
                .await
                .changed
        );
    }
    let runs: Vec<u64> = s
        .job_runs(Some("j"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.run)
        .collect();
    assert_eq!(runs, vec![3, 4]);
    for (id, desired) in [
        ("j-1", DesiredState::Remove),
        ("j-2", DesiredState::Remove),
        ("j-3", DesiredState::Stop),
        ("j-4", DesiredState::Stop),
    ] {
        assert_eq!(
            s.replica(id).await.unwrap().unwrap().desired,
            desired,
            "{id}"
        );
    }
}

#[tokio::test]
async fn suspend_and_resume_and_what_is_not_a_job() {
    let (_d, s, _w) = store().await;
    job(&s, "[schedule]\ncron = \"@every 5s\"\n").await;
    let suspend = |suspended, at_ms| Command::SetJobSuspended {
        service: "j".into(),
        suspended,
        at_ms,
    };
    assert!(s.ok(suspend(true, 2_000)).await.changed);
    let e = s
        .refused(start(RunTrigger::Schedule, Some(5_000), 4_000))
        .await;
    assert!(e.contains("suspended"), "{e}");
    // A suspended job starts nothing: no manual run either.
    let e = s.refused(start(RunTrigger::Manual, None, 4_000)).await;
    assert!(e.contains("dash job resume j"), "{e}");
    s.ok(suspend(false, 60_000)).await;
    // Slots missed while suspended are not run.
    assert_eq!(s.jobs().await.unwrap()[0].last_slot_ms, 60_000);
    s.ok(Command::PutService {
        spec: Box::new(parse_service("w.toml", "name = \"w\"\nimage = \"b\"\n").unwrap()),
        at_ms: 1,
    })
    .await;
    for (service, refusal) in [("w", "not a job"), ("nope", "not found")] {
        let e = s
            .refused(start_of(service, RunTrigger::Manual, None, 2))
            .await;
        assert!(e.contains(refusal), "{e}");
    }
}

#[tokio::test]
async fn replaced_runs_leave_the_history_and_a_new_schedule_counts_from_its_apply() {
    let (_d, s) =
        job_on_n1("[schedule]\ncron = \"@hourly\"\nconcurrency = \"replace\"\nhistory = 1\n").await;
    for at in [10, 20, 30, 40] {
        s.ok(start(RunTrigger::Manual, None, at)).await;
    }
    let runs: Vec<(u64, RunState)> = s
        .job_runs(Some("j"))
        .await
        .unwrap()
        .iter()
        .map(|r| (r.run, r.state))
        .collect();
    assert_eq!(runs, vec![(3, RunState::Stopped), (4, RunState::Running)]);
    // A changed schedule: slots before its apply are not its.
    let before = s.jobs().await.unwrap()[0].last_slot_ms;
    s.ok(put_job("[schedule]\ncron = \"@daily\"\n", 50_000))
        .await;
    let after = s.jobs().await.unwrap()[0].last_slot_ms;
    assert!(before < 50_000 && after == 50_000, "{before} → {after}");
}
