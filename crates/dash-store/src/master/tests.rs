use std::net::Ipv4Addr;

use dash_core::api::NodeRole;
use dash_core::command::{NewReplica, ReplicaStatus};
use dash_core::config_parser::parse_service;

use super::*;
use crate::worker::{LocalReplica, WorkerStore, lowest_free};

async fn store() -> (tempfile::TempDir, TestStore, WorkerStore) {
    let dir = tempfile::tempdir().unwrap();
    let master = crate::open(&dir.path().join("dash.db")).await.unwrap();
    let node = crate::open_node(&dir.path().join("node.db"), &dir.path().join("dash.db"))
        .await
        .unwrap();
    (dir, TestStore::new(master), WorkerStore::new(node))
}

/// The read side and the state machine over one database; `apply` makes a rejection an error,
/// so that a test can `unwrap` what must be taken and `unwrap_err` what must be refused.
#[derive(Clone)]
struct TestStore {
    read: MasterStore,
    sm: StateMachine,
}

#[derive(Debug, thiserror::Error)]
enum TestApplyError {
    #[error(transparent)]
    Rejected(Rejection),
    #[error(transparent)]
    Store(StoreError),
}

impl TestStore {
    fn new(db: crate::Db) -> Self {
        TestStore {
            read: MasterStore::new(db.clone()),
            sm: StateMachine::new(db),
        }
    }

    async fn apply(&self, cmd: &Command) -> Result<Applied, TestApplyError> {
        self.sm
            .apply(cmd)
            .await
            .map_err(TestApplyError::Store)?
            .accepted()
            .map_err(TestApplyError::Rejected)
    }

    /// Applies `cmd`, which must be taken.
    async fn ok(&self, cmd: Command) -> Applied {
        self.apply(&cmd).await.unwrap()
    }

    /// Applies `cmd`, which must be refused: the refusal's text.
    async fn refused(&self, cmd: Command) -> String {
        self.apply(&cmd).await.unwrap_err().to_string()
    }
}

impl std::ops::Deref for TestStore {
    type Target = MasterStore;

    fn deref(&self) -> &MasterStore {
        &self.read
    }
}

fn spec(text: &str) -> Box<ServiceSpec> {
    Box::new(
        parse_service(
            "t.toml",
            &format!("name = \"web\"\nimage = \"busybox\"\n{text}"),
        )
        .unwrap(),
    )
}

/// `PutService` of service "web" with `text` after its name and image.
fn put_web(text: &str, at_ms: u64) -> Command {
    Command::PutService {
        spec: spec(text),
        at_ms,
    }
}

#[tokio::test]
async fn put_service_versions_only_on_container_changes() {
    let (_d, s, _) = store().await;
    let applied = |index, changed| Applied {
        index,
        version: Some(1),
        changed,
        ..Applied::default()
    };
    assert_eq!(s.ok(put_web("replicas = 1", 1)).await, applied(1, true));
    assert_eq!(s.ok(put_web("replicas = 1", 2)).await, applied(2, false));
    let scaled = s.ok(put_web("replicas = 3", 3)).await;
    assert_eq!(scaled.version, Some(1));
    let env = s.ok(put_web("replicas = 3\n[env]\nA = \"1\"", 4)).await;
    assert_eq!(env.version, Some(2));
    assert_eq!(s.service("web").await.unwrap().unwrap().spec.replicas, 3);
}

/// `SetReplicaDesired` of `id` to `Remove`.
fn remove_replica(id: &str, at_ms: u64) -> Command {
    Command::SetReplicaDesired {
        id: id.into(),
        desired: DesiredState::Remove,
        at_ms,
    }
}

/// `RemoveService` of "web".
fn remove_web(at_ms: u64) -> Command {
    Command::RemoveService {
        name: "web".into(),
        at_ms,
    }
}

/// A new replica of version 1 of `web`, placed on `node` or not placed yet.
fn web_replica(id: &str, node: Option<&str>) -> NewReplica {
    NewReplica {
        id: id.into(),
        service: "web".into(),
        version: 1,
        node: node.map(Into::into),
        message: String::new(),
        run: None,
        start_at_ms: None,
    }
}

/// Service "web" (version 1) and a ready server node "n1".
async fn service_on_node_n1(s: &TestStore) {
    s.ok(put_web("", 1)).await;
    let node = NodeRecord {
        address: "127.0.0.1".into(),
        role: NodeRole::Server,
        subnet: "10.0.0.0/24".into(),
        runtime: "runc".into(),
        ..worker("n1", NodeState::Ready)
    };
    s.ok(upsert(node)).await;
}

/// A store with service "web", node "n1" and replicas `(id, node)` of web's version 1.
async fn web_with(replicas: &[(&str, Option<&str>)]) -> (tempfile::TempDir, TestStore) {
    let (dir, s, _) = store().await;
    service_on_node_n1(&s).await;
    let replicas = replicas
        .iter()
        .map(|(id, node)| web_replica(id, *node))
        .collect();
    s.ok(create(replicas, 2)).await;
    (dir, s)
}

/// `UpsertNode` of `node`.
fn upsert(node: NodeRecord) -> Command {
    Command::UpsertNode {
        node: Box::new(node),
        at_ms: 1,
    }
}

/// `CreateReplicas` of `replicas`.
fn create(replicas: Vec<NewReplica>, at_ms: u64) -> Command {
    Command::CreateReplicas { replicas, at_ms }
}

/// `DeleteReplica` of `id`.
fn delete(id: &str, at_ms: u64) -> Command {
    Command::DeleteReplica {
        id: id.into(),
        at_ms,
    }
}

#[tokio::test]
async fn replicas_lifecycle_and_service_removal() {
    let (_d, s, _) = store().await;
    service_on_node_n1(&s).await;
    let new = web_replica("web-1", Some("n1"));
    s.ok(create(vec![new.clone()], 2)).await;
    // Replay is harmless.
    s.ok(create(vec![new], 2)).await;
    assert_eq!(s.replicas(Some("web")).await.unwrap().len(), 1);
    let status = ReplicaStatus {
        id: "web-1".into(),
        state: ReplicaState::Running,
        ip: Some("10.0.0.2".into()),
        restarts: 1,
        exit_code: None,
        started_ms: Some(5),
        message: String::new(),
    };
    s.ok(Command::ReportReplica { status, at_ms: 5 }).await;
    let r = s.replica("web-1").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.ip.as_deref(), r.restarts),
        (ReplicaState::Running, Some("10.0.0.2"), 1)
    );
    assert_eq!(s.nodes().await.unwrap()[0].replicas, 1);

    s.ok(remove_web(6)).await;
    assert!(s.service("web").await.unwrap().unwrap().removing);
    assert_eq!(
        s.replica("web-1").await.unwrap().unwrap().desired,
        DesiredState::Remove
    );
    let err = s.refused(put_web("", 7)).await;
    assert!(err.contains("being removed"), "{err}");
    s.ok(delete("web-1", 9)).await;
    assert!(s.service("web").await.unwrap().is_none());
    // Gone, but remembered with where it ran (its logs stay there for a while).
    let removed = s.removed_replicas("web").await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].id, "web-1");
    assert_eq!(removed[0].node.as_deref(), Some("n1"));
    assert_eq!(removed[0].removed_ms, 9);
    assert_eq!(
        s.removed_replica("web-1").await.unwrap(),
        Some(removed[0].clone())
    );
}

#[tokio::test]
async fn missing_service_is_not_found() {
    let (_d, s, _) = store().await;
    let err = s
        .apply(&Command::ScaleService {
            name: "nope".into(),
            replicas: 2,
            at_ms: 1,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, TestApplyError::Rejected(Rejection::NotFound { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn user_namespace_ranges_are_disjoint_sticky_and_freed_with_the_replica() {
    use crate::{USERNS_BASE, USERNS_SIZE};
    let (_d, _, w) = store().await;
    let a = w.allocate_userns("a").await.unwrap();
    let b = w.allocate_userns("b").await.unwrap();
    assert_eq!((a, b), (USERNS_BASE, USERNS_BASE + USERNS_SIZE));
    assert_eq!(w.allocate_userns("a").await.unwrap(), a);
    w.remove("a").await.unwrap();
    assert_eq!(w.allocate_userns("c").await.unwrap(), a);
    assert_ne!(w.allocate_userns("d").await.unwrap(), b);
}

#[tokio::test]
async fn ip_allocation_is_lowest_free_and_sticky() {
    let (_d, _, w) = store().await;
    let net = "10.9.0.0".parse().unwrap();
    let a = w.allocate_ip("a", net, 24).await.unwrap();
    let b = w.allocate_ip("b", net, 24).await.unwrap();
    assert_eq!(
        (a.to_string().as_str(), b.to_string().as_str()),
        ("10.9.0.2", "10.9.0.3")
    );
    assert_eq!(w.allocate_ip("a", net, 24).await.unwrap(), a);
    w.remove("a").await.unwrap();
    assert_eq!(w.allocate_ip("c", net, 24).await.unwrap(), a);
    let full = lowest_free(net, 30, &[Ipv4Addr::new(10, 9, 0, 2)].into_iter().collect());
    assert_eq!(full, None);
}

#[tokio::test]
async fn several_replicas_marked_in_one_entry_as_one_by_one() {
    let (_d, s) = web_with(&[
        ("web-a", Some("n1")),
        ("web-b", Some("n1")),
        ("web-c", None),
    ])
    .await;
    let mark = |ids: &[&str]| Command::SetReplicasDesired {
        ids: ids.iter().map(|i| i.to_string()).collect(),
        desired: DesiredState::Remove,
        at_ms: 3,
    };
    let applied = s.ok(mark(&["web-a", "web-c", "web-none"])).await;
    assert!(applied.changed);
    let a = s.replica("web-a").await.unwrap().unwrap();
    assert_eq!(a.desired, DesiredState::Remove);
    assert_eq!(
        s.replica("web-b").await.unwrap().unwrap().desired,
        DesiredState::Run
    );
    // Never placed: gone at once; unknown ids change nothing.
    assert!(s.replica("web-c").await.unwrap().is_none());
    // Again: nothing changes, so nothing is announced.
    assert!(!s.ok(mark(&["web-a", "web-none"])).await.changed);
}

#[tokio::test]
async fn removal_drops_unplaced_replicas_and_is_never_undone_by_a_late_create() {
    let (_d, s) = web_with(&[
        ("web-placed", Some("n1")),
        ("web-pending", None),
        ("web-p2", None),
    ])
    .await;
    // Scaling a pending replica away: nothing to stop, it goes at once.
    s.ok(remove_replica("web-p2", 3)).await;
    assert!(s.replica("web-p2").await.unwrap().is_none());
    s.ok(remove_web(4)).await;
    let left: Vec<String> = s
        .replicas(Some("web"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        left,
        vec!["web-placed".to_string()],
        "the pending one is gone, the placed one waits for its node"
    );
    // A reconcile pass that read the service before the removal tries to create: ignored.
    s.ok(create(vec![web_replica("web-late", Some("n1"))], 5))
        .await;
    assert!(s.replica("web-late").await.unwrap().is_none());
    // The placed one confirmed removed: the service is gone.
    s.ok(delete("web-placed", 6)).await;
    assert!(s.service("web").await.unwrap().is_none());
}

/// A worker node record with the subnet 10.89.0.0/24.
fn worker(id: &str, state: NodeState) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        address: "10.0.0.2:7072".into(),
        role: NodeRole::Worker,
        state,
        labels: BTreeMap::new(),
        capacity: Resources::default(),
        subnet: "10.89.0.0/24".into(),
        runtime: "crun".into(),
    }
}

#[tokio::test]
async fn two_nodes_never_share_a_subnet() {
    let (_d, s, _) = store().await;
    let node = |id: &str| upsert(worker(id, NodeState::Ready));
    s.ok(node("w1")).await;
    // The same node again (a re-join) keeps its subnet.
    s.ok(node("w1")).await;
    let e = s.refused(node("w2")).await;
    assert!(e.contains("already node w1's"), "{e}");
    assert_eq!(s.nodes().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_node_state_judged_on_a_stale_read_does_not_overwrite_a_newer_one() {
    let (_d, s, _) = store().await;
    s.ok(upsert(worker("w1", NodeState::Unreachable))).await;
    let set = |state, from| Command::SetNodeState {
        id: "w1".into(),
        state,
        at_ms: 2,
        from,
    };
    // A heartbeat made it ready while liveness was deciding on "unreachable".
    assert!(s.ok(set(NodeState::Ready, None)).await.changed);
    let late = s
        .ok(set(NodeState::Down, Some(NodeState::Unreachable)))
        .await;
    assert!(!late.changed);
    assert_eq!(s.nodes().await.unwrap()[0].state, NodeState::Ready);
    // On a fresh read it applies.
    let fresh = s.ok(set(NodeState::Down, Some(NodeState::Ready))).await;
    assert!(fresh.changed);
    assert_eq!(s.nodes().await.unwrap()[0].state, NodeState::Down);
}

/// A rollback (or an update back to an earlier spec) keeps the replicas that already run that
/// spec: they are recorded at the new version, so nothing reports them as left to update.
#[tokio::test]
async fn replicas_whose_container_the_new_version_asks_for_move_to_it() {
    let (_d, s, _) = store().await;
    let version = |text, at_ms| s.ok(put_web(text, at_ms));
    assert_eq!(version("replicas = 2", 1).await.version, Some(1));
    let replica = |id: &str, version| NewReplica {
        version,
        ..web_replica(id, None)
    };
    s.ok(create(vec![replica("web-a", 1), replica("web-b", 1)], 2))
        .await;
    // Version 2 changes the container; one replica is replaced, then the update fails.
    assert_eq!(
        version("replicas = 2\n[env]\nA = \"1\"", 3).await.version,
        Some(2)
    );
    s.ok(create(vec![replica("web-c", 2)], 4)).await;
    s.ok(remove_replica("web-a", 4)).await;
    // Rolled back: version 3 has version 1's spec.
    assert_eq!(version("replicas = 2", 5).await.version, Some(3));
    let versions: BTreeMap<String, (u64, DesiredState)> = s
        .replicas(Some("web"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, (r.version, r.desired)))
        .collect();
    assert_eq!(
        versions["web-b"],
        (3, DesiredState::Run),
        "kept, and current"
    );
    assert_eq!(versions["web-c"], (2, DesiredState::Run), "to be replaced");
    assert!(
        !versions.contains_key("web-a"),
        "an unplaced replica marked for removal is gone"
    );
}

/// Only the newest removed replicas of a service are remembered.
#[tokio::test]
async fn removed_replicas_are_bounded_per_service() {
    let (_d, s, _) = store().await;
    s.ok(put_web("replicas = 0", 1)).await;
    for i in 0..25u64 {
        let id = format!("web-{i:02}");
        s.ok(create(vec![web_replica(&id, None)], i)).await;
        s.ok(delete(&id, 100 + i)).await;
    }
    let removed = s.removed_replicas("web").await.unwrap();
    assert_eq!(removed.len(), 20);
    assert_eq!(removed[0].id, "web-24", "newest first");
    assert_eq!(removed[19].id, "web-05");
    assert!(s.removed_replica("web-04").await.unwrap().is_none());
}

/// A database written by the previous schema (migrations 1 to 3, before `removed_replicas`)
/// opens with the current code: the new migration runs and nothing is lost.
#[tokio::test]
async fn a_database_of_the_previous_schema_upgrades_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dash.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut old = sqlx::migrate!("./migrations");
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version <= 3)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        old.run(&pool).await.unwrap();
        // Rows as the previous version wrote them.
        let spec = serde_json::to_string(&*spec("replicas = 1")).unwrap();
        sqlx::query("INSERT INTO services (name, spec, version, created_ms, updated_ms) VALUES ('web', ?, 1, 1, 1)")
            .bind(&spec)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO service_versions (name, version, spec, created_ms) VALUES ('web', 1, ?, 1)")
            .bind(&spec)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO replicas (id, service, version, node, desired, state, created_ms, message) VALUES ('web-1', 'web', 1, NULL, 'run', 'running', 2, '')")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let pool = crate::open(&path).await.unwrap();
    let s = TestStore::new(pool);
    let row = s
        .service("web")
        .await
        .unwrap()
        .expect("the service survives");
    assert_eq!(row.spec.replicas, 1);
    assert_eq!(s.replicas(Some("web")).await.unwrap().len(), 1);
    // The new table works on the upgraded database.
    s.ok(delete("web-1", 3)).await;
    assert_eq!(s.removed_replicas("web").await.unwrap().len(), 1);
}

#[tokio::test]
async fn entries_apply_once_and_the_index_is_kept_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dash.db");
    let sm = StateMachine::new(crate::open(&path).await.unwrap());
    assert_eq!(sm.last_applied().await.unwrap(), 0);
    let put = put_web("replicas = 2", 1);
    let a = sm.apply_at(1, &put).await.unwrap();
    assert!(a.changed && !a.replayed && a.rejected.is_none());
    assert_eq!((a.index, a.version), (1, Some(1)));
    // A replay of entry 1 (after a restart, or a snapshot older than the log) changes nothing,
    // even where applying the command again would.
    let scale = Command::ScaleService {
        name: "web".into(),
        replicas: 5,
        at_ms: 2,
    };
    sm.apply_at(2, &scale).await.unwrap();
    let again = sm.apply_at(1, &put).await.unwrap();
    assert!(again.replayed && !again.changed, "{again:?}");
    let read = MasterStore::new(crate::open(&path).await.unwrap());
    assert_eq!(read.service("web").await.unwrap().unwrap().spec.replicas, 5);
    // A refused command is a result: nothing of it stays, the index advances, and its replay
    // is skipped like any other entry's.
    let missing = Command::ScaleService {
        name: "nope".into(),
        replicas: 1,
        at_ms: 3,
    };
    let r = sm.apply_at(3, &missing).await.unwrap();
    assert_eq!(
        r.rejected,
        Some(Rejection::NotFound {
            what: "service".into(),
            name: "nope".into()
        })
    );
    assert_eq!(sm.last_applied().await.unwrap(), 3);
    assert!(sm.apply_at(3, &missing).await.unwrap().replayed);
    // `apply` takes the next index; the index survives a reopen.
    assert_eq!(sm.apply(&scale).await.unwrap().index, 4);
    drop(sm);
    let sm = StateMachine::new(crate::open(&path).await.unwrap());
    assert_eq!(sm.last_applied().await.unwrap(), 4);
}

#[tokio::test]
async fn a_nodes_records_move_from_dash_db_to_node_db_once() {
    let dir = tempfile::tempdir().unwrap();
    let (legacy, node) = (dir.path().join("dash.db"), dir.path().join("node.db"));
    // A data dir of the version before node.db: the node's records in dash.db.
    let old = WorkerStore::new(crate::open(&legacy).await.unwrap());
    let replica = |id: &str| LocalReplica {
        id: id.into(),
        service: "web".into(),
        version: 3,
        spec: *spec("replicas = 1"),
        ip: Some(Ipv4Addr::new(10, 9, 0, 2)),
        restarts: 2,
        created_ms: 5,
        started_ms: Some(6),
    };
    old.put(&replica("web-1")).await.unwrap();
    let net = "10.9.0.0".parse().unwrap();
    old.allocate_ip("web-1", net, 24).await.unwrap();
    drop(old);
    let w = WorkerStore::new(crate::open_node(&node, &legacy).await.unwrap());
    assert_eq!(w.list().await.unwrap(), vec![replica("web-1")]);
    // ...and no longer in dash.db, whose tables travel in the masters' snapshots.
    let old = WorkerStore::new(crate::open(&legacy).await.unwrap());
    assert!(old.list().await.unwrap().is_empty());
    // Its address stays taken: the next replica gets the next one.
    assert_eq!(
        w.allocate_ip("web-2", net, 24).await.unwrap(),
        Ipv4Addr::new(10, 9, 0, 3)
    );
    w.remove("web-1").await.unwrap();
    drop(w);
    // Once: a reopened node.db is the node's record, dash.db is not read again.
    let w = WorkerStore::new(crate::open_node(&node, &legacy).await.unwrap());
    assert!(w.list().await.unwrap().is_empty());
    // A new data dir has nothing to copy.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let w = WorkerStore::new(
        crate::open_node(&fresh.join("node.db"), &fresh.join("dash.db"))
            .await
            .unwrap(),
    );
    assert!(w.list().await.unwrap().is_empty());
    assert!(
        !fresh.join("dash.db").exists(),
        "no master state on a worker"
    );
}

#[tokio::test]
async fn joins_get_subnets_from_the_state_never_the_same_twice() {
    let (_d, s, _) = store().await;
    let pool = dash_core::subnet::SubnetPool {
        base: Ipv4Addr::new(10, 77, 0, 0),
        prefix: 23,
    };
    let join = |id: &str, serial: &str| Command::JoinNode {
        node: Box::new(worker(id, NodeState::Ready)),
        pool,
        serial: serial.into(),
        at_ms: 1,
    };
    let subnet = |a: Applied| a.subnet.unwrap();
    assert_eq!(subnet(s.ok(join("w1", "s1")).await), "10.77.0.0/24");
    assert_eq!(subnet(s.ok(join("w2", "s2")).await), "10.77.1.0/24");
    // A re-join keeps its subnet and records the new certificate, the old one as previous.
    assert_eq!(subnet(s.ok(join("w1", "s3")).await), "10.77.0.0/24");
    let w1 = s.nodes().await.unwrap().into_iter().find(|n| n.id == "w1");
    assert_eq!(w1.map(|n| n.subnet).as_deref(), Some("10.77.0.0/24"));
    // The pool is used up: refused, and nothing recorded.
    let e = s.refused(join("w3", "s4")).await;
    assert!(
        e.contains("no free /24 left in the cluster CIDR 10.77.0.0/23"),
        "{e}"
    );
    assert_eq!(s.nodes().await.unwrap().len(), 2);
    // The name of a master is refused.
    let mut m = worker("m1", NodeState::Ready);
    m.role = NodeRole::Server;
    m.subnet = "10.77.9.0/24".into();
    s.ok(upsert(m)).await;
    let e = s.refused(join("m1", "s5")).await;
    assert!(e.contains("is a master's"), "{e}");
}

#[tokio::test]
async fn rules_that_depend_on_the_state_are_the_state_machines() {
    let (_d, s, _) = store().await;
    s.ok(upsert(worker("w1", NodeState::Ready))).await;
    // Labels merge in the state: two changes never undo each other.
    let label = |set: &[(&str, &str)], remove: &[&str]| Command::SetNodeLabels {
        id: "w1".into(),
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        remove: remove.iter().map(|k| k.to_string()).collect(),
    };
    s.ok(label(&[("zone", "a"), ("disk", "ssd")], &[])).await;
    s.ok(label(&[("gpu", "1")], &["disk"])).await;
    let n = s.nodes().await.unwrap().into_iter().next().unwrap();
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(labels, vec!["gpu=1", "zone=a"]);
    // Only a drained node is activated; a ready node is removed only with force.
    let activate = |at_ms| Command::ActivateNode {
        id: "w1".into(),
        at_ms,
    };
    let remove = |force| Command::RemoveNode {
        id: "w1".into(),
        force,
    };
    let e = s.refused(activate(2)).await;
    assert!(e.contains("is ready, not drained"), "{e}");
    let e = s.refused(remove(false)).await;
    assert!(e.contains("drain it or stop it first"), "{e}");
    s.ok(Command::DrainNode {
        id: "w1".into(),
        at_ms: 3,
    })
    .await;
    s.ok(activate(4)).await;
    s.ok(remove(true)).await;
    assert!(s.nodes().await.unwrap().is_empty());
    // An autoscaled service is scaled only within its bounds, whoever asks.
    s.ok(put_web(
        "[autoscale]\nmin = 1\nmax = 3\ncpu_percent = 50\n",
        5,
    ))
    .await;
    let scale = |n| Command::ScaleService {
        name: "web".into(),
        replicas: n,
        at_ms: 6,
    };
    let e = s.apply(&scale(5)).await.unwrap_err();
    assert!(
        matches!(
            &e,
            TestApplyError::Rejected(Rejection::Invalid { field, .. }) if field == "replicas"
        ),
        "{e}"
    );
    assert!(e.to_string().contains("autoscales between 1 and 3"), "{e}");
    s.ok(scale(3)).await;
}

#[tokio::test]
async fn an_automatic_rollbacks_version_is_recorded_in_the_state() {
    let (_d, s, _) = store().await;
    s.ok(put_web("command = [\"a\"]", 1)).await;
    s.ok(put_web("command = [\"b\"]", 1)).await;
    assert_eq!(
        s.service("web")
            .await
            .unwrap()
            .unwrap()
            .auto_rollback_version,
        0
    );
    let back = s
        .ok(Command::RollBackService {
            spec: spec("command = [\"a\"]"),
            at_ms: 2,
        })
        .await;
    assert_eq!(back.version, Some(3));
    let row = s.service("web").await.unwrap().unwrap();
    assert_eq!((row.version, row.auto_rollback_version), (3, 3));
    // A later update is an ordinary version again.
    s.ok(put_web("command = [\"c\"]", 1)).await;
    let row = s.service("web").await.unwrap().unwrap();
    assert_eq!((row.version, row.auto_rollback_version), (4, 3));
}

#[tokio::test]
async fn a_batch_of_log_entries_is_one_transaction_and_a_refused_entry_undoes_only_itself() {
    let (_dir, s, _) = store().await;
    let named = |name: &str| {
        Box::new(
            parse_service(
                "t.toml",
                &format!("name = \"{name}\"\nimage = \"busybox\"\nreplicas = 1\n"),
            )
            .unwrap(),
        )
    };
    let a = Command::PutService {
        spec: named("a"),
        at_ms: 1,
    };
    // Scaling a service that does not exist is refused by the state.
    let refused = Command::ScaleService {
        name: "ghost".into(),
        replicas: 3,
        at_ms: 1,
    };
    let b = Command::PutService {
        spec: named("b"),
        at_ms: 1,
    };
    let batch = [
        LogEntry {
            index: 1,
            cmd: None,
            log_id: "\"id-1\"",
            membership: Some("\"m-1\""),
        },
        LogEntry {
            index: 2,
            cmd: Some(&a),
            log_id: "\"id-2\"",
            membership: None,
        },
        LogEntry {
            index: 3,
            cmd: Some(&refused),
            log_id: "\"id-3\"",
            membership: None,
        },
        LogEntry {
            index: 4,
            cmd: Some(&b),
            log_id: "\"id-4\"",
            membership: None,
        },
    ];
    let out = s.sm.apply_log_entries(&batch).await.unwrap();
    assert_eq!(
        out.iter().map(|a| a.index).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(out[1].changed && out[3].changed);
    assert!(out[2].rejected.is_some() && !out[2].changed, "{:?}", out[2]);
    let names: Vec<String> = s
        .services()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.spec.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        s.sm.applied_log_id().await.unwrap(),
        (4, Some("\"id-4\"".to_string()))
    );
    assert_eq!(
        s.sm.applied_membership().await.unwrap().as_deref(),
        Some("\"m-1\"")
    );
    // Again (a replay after a restart): nothing is done twice.
    let again = s.sm.apply_log_entries(&batch).await.unwrap();
    assert!(again.iter().all(|a| a.replayed && !a.changed));
    assert_eq!(s.services().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_service_history_keeps_ten_versions_and_any_a_replica_still_runs() {
    let (_d, s, _) = store().await;
    let v_env = |v: u64| put_web(&format!("replicas = 1\n[env]\nV = \"{v}\""), v);
    s.ok(v_env(1)).await;
    // A replica of version 1 that stays (its node never reports it gone).
    s.ok(create(vec![web_replica("web-v1", None)], 1)).await;
    for v in 2..=30 {
        let a = s.ok(v_env(v)).await;
        assert_eq!(a.version, Some(v));
    }
    assert!(
        s.service_version("web", 1).await.unwrap().is_some(),
        "a replica runs it"
    );
    for gone in [2, 10, 20] {
        assert!(
            s.service_version("web", gone).await.unwrap().is_none(),
            "v{gone}"
        );
    }
    for kept in 21..=30 {
        assert!(
            s.service_version("web", kept).await.unwrap().is_some(),
            "v{kept}"
        );
    }
}

#[tokio::test]
async fn a_forgotten_tag_leaves_a_tombstone_that_a_new_record_of_it_clears() {
    let (_d, s, _) = store().await;
    let record = |tag: &str, digest: &str| Command::RecordImage {
        tag: tag.into(),
        manifest_digest: digest.into(),
        origin: "10.0.0.1:7071".into(),
        at_ms: 1,
    };
    s.ok(record("a:1", "sha256:aa")).await;
    s.ok(record("b:1", "sha256:bb")).await;
    let forget = |tag: &str| Command::ForgetImage {
        tag: tag.into(),
        at_ms: 2,
    };
    assert!(s.ok(forget("a:1")).await.changed);
    // A tag the index never had leaves no tombstone.
    assert!(!s.ok(forget("never:1")).await.changed);
    assert_eq!(
        s.forgotten_images().await.unwrap(),
        vec![("a:1".to_string(), "sha256:aa".to_string())]
    );
    assert_eq!(s.recorded_images().await.unwrap().len(), 1);
    // Imported again (any digest): no master may remove it for the old tombstone.
    s.ok(record("a:1", "sha256:aa")).await;
    assert!(s.forgotten_images().await.unwrap().is_empty());
}

#[tokio::test]
async fn tombstones_are_bounded() {
    let (_d, s, _) = store().await;
    let n = KEPT_TOMBSTONES + 5;
    for i in 0..n {
        let tag = format!("t:{i}");
        s.ok(Command::RecordImage {
            tag: tag.clone(),
            manifest_digest: "sha256:00".into(),
            origin: "o".into(),
            at_ms: 1,
        })
        .await;
        s.ok(Command::ForgetImage {
            tag,
            at_ms: i as u64,
        })
        .await;
    }
    let kept = s.forgotten_images().await.unwrap();
    assert_eq!(kept.len() as i64, KEPT_TOMBSTONES);
    // The oldest went first.
    assert!(!kept.iter().any(|(t, _)| t == "t:0"));
    assert!(kept.iter().any(|(t, _)| *t == format!("t:{}", n - 1)));
}

#[tokio::test]
async fn prunes_asked_for_are_counted_and_registry_logins_kept_and_forgotten() {
    let (_d, s, _) = store().await;
    assert_eq!(s.image_prunes().await.unwrap(), 0);
    for at_ms in [1, 2] {
        s.ok(Command::PruneImages { at_ms }).await;
    }
    assert_eq!(s.image_prunes().await.unwrap(), 2);

    let keep = |sealed: &str| Command::KeepRegistryLogin {
        registry: "registry.local:5000".into(),
        sealed: sealed.into(),
        at_ms: 1,
    };
    s.ok(keep("v1:first")).await;
    s.ok(keep("v1:second")).await;
    assert_eq!(
        s.registry_login("registry.local:5000").await.unwrap(),
        Some("v1:second".to_string())
    );
    assert_eq!(
        s.registry_logins().await.unwrap(),
        vec!["registry.local:5000"]
    );
    let forget = Command::ForgetRegistryLogin {
        registry: "registry.local:5000".into(),
    };
    assert!(s.ok(forget.clone()).await.changed);
    assert!(!s.ok(forget).await.changed);
    assert_eq!(s.registry_login("registry.local:5000").await.unwrap(), None);
}

fn with_ports(name: &str, ports: bool) -> Box<ServiceSpec> {
    let text = format!(
        "name = \"{name}\"\nimage = \"busybox\"\n{}",
        if ports {
            "[[ports]]\ncontainer = 8080\n"
        } else {
            ""
        }
    );
    Box::new(parse_service("t.toml", &text).unwrap())
}

#[tokio::test]
async fn a_service_with_ports_keeps_one_virtual_ip_across_updates_and_loses_it_without_ports() {
    let (_d, s, _) = store().await;
    let put = |spec: Box<ServiceSpec>| Command::PutService { spec, at_ms: 1 };
    s.ok(put(with_ports("api", true))).await;
    s.ok(put(with_ports("web", true))).await;
    s.ok(put(with_ports("job", false))).await;
    let vip = |name: &'static str| {
        let s = s.clone();
        async move { s.service(name).await.unwrap().unwrap().vip }
    };
    // The default range until a master records its own.
    assert_eq!(vip("api").await.as_deref(), Some("10.96.0.1"));
    assert_eq!(vip("web").await.as_deref(), Some("10.96.0.2"));
    assert_eq!(vip("job").await, None);
    // An update (a new version) keeps it.
    let mut changed = with_ports("api", true);
    changed.env.insert("V".into(), "2".into());
    assert_eq!(s.ok(put(changed)).await.version, Some(2));
    assert_eq!(vip("api").await.as_deref(), Some("10.96.0.1"));
    // Without ports it goes, and the next service with ports takes the lowest free one.
    s.ok(put(with_ports("api", false))).await;
    assert_eq!(vip("api").await, None);
    s.ok(put(with_ports("db", true))).await;
    assert_eq!(vip("db").await.as_deref(), Some("10.96.0.1"));
}

#[tokio::test]
async fn the_first_recorded_range_wins_and_an_exhausted_range_refuses_the_service_whole() {
    let (_d, s, _) = store().await;
    let put = |spec: Box<ServiceSpec>| Command::PutService { spec, at_ms: 1 };
    // A service with ports from before virtual IPs: it gets one when a range is recorded.
    s.ok(put(with_ports("old", true))).await;
    sqlx::query("UPDATE services SET vip = NULL")
        .execute(&s.read.pool)
        .await
        .unwrap();
    let cidr = |text: &str| Command::SetServiceCidr {
        cidr: dash_core::subnet::VipPool::parse(text).unwrap(),
    };
    assert!(s.ok(cidr("10.200.0.0/30")).await.changed);
    assert_eq!(
        s.service("old").await.unwrap().unwrap().vip.as_deref(),
        Some("10.200.0.1")
    );
    // Another master's flag does not change the recorded range.
    assert!(!s.ok(cidr("10.201.0.0/16")).await.changed);
    s.ok(put(with_ports("b", true))).await;
    assert_eq!(
        s.service("b").await.unwrap().unwrap().vip.as_deref(),
        Some("10.200.0.2")
    );
    // A /30 holds two: the third service is refused, and nothing of it is kept.
    let text = s.refused(put(with_ports("c", true))).await;
    assert!(
        text.contains("10.200.0.0/30") && text.contains("--service-cidr"),
        "{text}"
    );
    assert!(s.service("c").await.unwrap().is_none());
    assert!(s.service_version("c", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn a_secret_update_moves_its_services_and_old_versions_go_with_their_last_replica() {
    use dash_core::secret::Kind;
    let (_d, s, _) = store().await;
    let put = |create: bool, sealed: &str| Command::PutSecret {
        kind: Kind::Secret,
        name: "pw".into(),
        sealed: sealed.into(),
        size: 3,
        create,
        at_ms: 1,
    };
    // An update of what does not exist, and a second create, are refused.
    assert!(matches!(
        s.apply(&put(false, "k1:a")).await,
        Err(TestApplyError::Rejected(Rejection::NotFound { .. }))
    ));
    s.ok(put(true, "k1:a")).await;
    let e = s.refused(put(true, "k1:b")).await;
    assert!(
        e.contains("exists") && e.contains("dash secret update"),
        "{e}"
    );

    // web lists it at version 1, with a replica of its version 1 on n1.
    service_on_node_n1(&s).await;
    let mut with = spec("[[secrets]]\nname = \"pw\"\n");
    with.secrets[0].version = 1;
    s.ok(Command::PutService {
        spec: with,
        at_ms: 2,
    })
    .await;
    let v = s.service("web").await.unwrap().unwrap().version;
    let mut r = web_replica("web-1", Some("n1"));
    r.version = v;
    s.ok(create(vec![r], 3)).await;

    // The update: version 2, web moves to it (a new service version), v1 kept for web-1.
    let applied = s.ok(put(false, "k1:b")).await;
    assert_eq!(applied.version, Some(2));
    let web = s.service("web").await.unwrap().unwrap();
    assert_eq!(web.spec.secrets[0].version, 2);
    assert_eq!(web.version, v + 1);
    let info = s.secret(Kind::Secret, "pw").await.unwrap().unwrap();
    assert_eq!((info.version, info.versions.clone()), (2, vec![1, 2]));
    assert_eq!(info.services[0].service, "web");
    let sealed = |version| {
        let s = s.clone();
        async move { s.secret_sealed(Kind::Secret, "pw", version).await.unwrap() }
    };
    assert_eq!(sealed(1).await.as_deref(), Some("k1:a"));

    // web-1 goes: version 1 goes with it.
    s.ok(delete("web-1", 4)).await;
    let info = s.secret(Kind::Secret, "pw").await.unwrap().unwrap();
    assert_eq!(info.versions, vec![2]);
    assert_eq!(sealed(1).await, None);

    // Removal is refused while web lists it.
    let e = s
        .refused(Command::RemoveSecret {
            kind: Kind::Secret,
            name: "pw".into(),
        })
        .await;
    assert!(e.contains("used by service web"), "{e}");
    // A config of the same name is another thing.
    assert!(s.secret(Kind::Config, "pw").await.unwrap().is_none());

    // Rotation must cover every kept version.
    s.ok(Command::AddDataKey {
        id: 1,
        sealed: "key1".into(),
        at_ms: 1,
    })
    .await;
    let rotate = |resealed| Command::RotateDataKey {
        id: 2,
        sealed_key: "key2".into(),
        resealed,
        at_ms: 5,
    };
    let e = s.refused(rotate(vec![])).await;
    assert!(e.contains("rotate again"), "{e}");
    let resealed = s
        .secret_versions()
        .await
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.sealed = format!("k2:{}", r.version);
            r
        })
        .collect();
    s.ok(rotate(resealed)).await;
    assert_eq!(s.data_keys().await.unwrap(), vec![(2, "key2".to_string())]);
    assert_eq!(sealed(2).await.as_deref(), Some("k2:2"));
}

mod jobs;

#[tokio::test]
async fn reports_of_many_replicas_in_one_entry_as_one_by_one_and_shared_reads_follow() {
    let (_d, s) = web_with(&[
        ("web-1", Some("n1")),
        ("web-2", Some("n1")),
        ("web-3", Some("n1")),
    ])
    .await;
    let before = s.all_replicas().await.unwrap();
    assert_eq!(before.len(), 3);
    // Nothing changed: the same list, not read again.
    assert!(std::sync::Arc::ptr_eq(
        &before,
        &s.all_replicas().await.unwrap()
    ));
    let running = |id: &str, ip: &str| ReplicaStatus {
        id: id.into(),
        state: ReplicaState::Running,
        ip: Some(ip.into()),
        restarts: 0,
        exit_code: None,
        started_ms: Some(3),
        message: String::new(),
    };
    let group = Command::ReplicaReports {
        statuses: vec![
            running("web-1", "10.0.0.2"),
            // A replica the state does not hold is skipped, the rest are written.
            running("web-9", "10.0.0.9"),
            running("web-2", "10.0.0.3"),
            // The later status of the same replica wins (applied in order).
            ReplicaStatus {
                state: ReplicaState::Exited,
                exit_code: Some(1),
                ..running("web-2", "10.0.0.3")
            },
        ],
        removed: vec!["web-3".into(), "web-8".into()],
        at_ms: 4,
    };
    let applied = s.ok(group.clone()).await;
    assert!(applied.changed);
    let after = s.all_replicas().await.unwrap();
    // A commit is a new generation: the list is read again.
    assert!(!std::sync::Arc::ptr_eq(&before, &after));
    let by_id: std::collections::HashMap<_, _> = after.iter().map(|r| (r.id.as_str(), r)).collect();
    assert_eq!(by_id.len(), 2, "web-3 removed");
    assert_eq!(by_id["web-1"].state, ReplicaState::Running);
    assert_eq!(by_id["web-1"].ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(by_id["web-2"].state, ReplicaState::Exited);
    assert_eq!(by_id["web-2"].exit_code, Some(1));
    // The removed one is remembered as a single removal would leave it.
    assert_eq!(
        s.removed_replica("web-3")
            .await
            .unwrap()
            .unwrap()
            .removed_ms,
        4
    );
    // The group read used by the masters' report groups.
    let some = s
        .replicas_by_id(&["web-1", "web-3", "web-2"])
        .await
        .unwrap();
    assert_eq!(
        some.keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        ["web-1", "web-2"].into()
    );
    // The same group again (as another entry) leaves the same state.
    s.ok(group).await;
    let again = s.all_replicas().await.unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(
        again.iter().find(|r| r.id == "web-2").unwrap().exit_code,
        Some(1)
    );
}

#[tokio::test]
async fn bulk_replica_reads_match_the_row_by_row_read_field_for_field() {
    // all_replicas, replicas(service), node_replicas and replicas_by_id read one JSON text
    // that SQLite builds; replica(id) reads the row's columns. Both must give the same
    // replica, with nulls, a message that needs escaping and the columns added later.
    let (_d, s, _) = store().await;
    service_on_node_n1(&s).await;
    let mut pending = web_replica("web-2", None);
    pending.message = "no node has 2 CPUs free; \"quoted\", back\\slash,\nnewline, ünïcödé".into();
    pending.start_at_ms = Some(1234);
    s.ok(create(vec![web_replica("web-1", Some("n1")), pending], 2))
        .await;
    let status = ReplicaStatus {
        id: "web-1".into(),
        state: ReplicaState::Exited,
        ip: Some("10.0.0.2".into()),
        restarts: 3,
        exit_code: Some(-9),
        started_ms: Some(5),
        message: "killed".into(),
    };
    s.ok(Command::ReportReplica { status, at_ms: 5 }).await;
    let one = [
        s.replica("web-1").await.unwrap().unwrap(),
        s.replica("web-2").await.unwrap().unwrap(),
    ];
    assert_eq!(one[1].message.lines().count(), 2);
    assert_eq!(
        (one[1].run, one[1].start_at_ms, one[1].node.as_deref()),
        (None, Some(1234), None)
    );
    assert_eq!((one[0].exit_code, one[0].restarts), (Some(-9), 3));
    assert_eq!(s.all_replicas().await.unwrap().as_ref(), &one.to_vec());
    assert_eq!(s.replicas(Some("web")).await.unwrap(), one.to_vec());
    assert_eq!(s.node_replicas("n1").await.unwrap(), vec![one[0].clone()]);
    let by_id = s.replicas_by_id(&["web-2", "web-9"]).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id["web-2"], one[1]);
    assert!(s.replicas(Some("nothing")).await.unwrap().is_empty());
}
