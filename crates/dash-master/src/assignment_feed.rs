//! assignment_feed: every node's assignment list, computed once per change of the state for
//! all the watches of master_api.
//!
//! ```text
//!  applied entries ─► changes ─► (at most every MIN_GAP) one read of every replica
//!        ─► each version's spec read once (and hashed)
//!        ─► per node: the list's key (ids, versions, desired states, specs' hashes) unchanged?
//!                     keep its JSON; else build the list, its JSON and version
//!        ─► Snapshot (watch channel) ─► each node's Watch stream sends its list if its version moved
//! ```
//!
//! Before, every watch read its node's replicas and each replica's spec after every change: a
//! cluster of N nodes paid N reads and N × replicas spec lookups per entry of the log, which
//! is what made 100 simulated workers cost a master two cores. Now a change costs one read and
//! the JSON of the nodes whose lists changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dash_core::api::{DesiredState, NodeState, ReplicaInfo};
use dash_store::{MasterStore, StoreError};
use tokio::sync::{Notify, watch};

use crate::master_api::assignments_version;

/// The shortest time between two computations while changes keep coming (the first change
/// after a quiet spell is computed at once).
const MIN_GAP: Duration = Duration::from_millis(50);
/// Computed again at least this often, changes or not.
const REFRESH: Duration = Duration::from_secs(2);

/// One node's list as its watch sends it.
#[derive(Debug)]
pub struct NodeList {
    pub version: u64,
    pub json: String,
    /// What the list is made of (replica, version, desired, start, run), to tell whether it
    /// changed without building it.
    key: u64,
}

/// Every node's list at one moment of the state.
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: HashMap<String, Arc<NodeList>>,
    /// Every node's state (what a heartbeat needs, without a read of its own).
    states: HashMap<String, NodeState>,
    /// Nodes whose list could not be built and that had none: their watch sends nothing.
    unknown: std::collections::HashSet<String>,
    /// The list of a node with nothing assigned.
    empty: Option<Arc<NodeList>>,
    /// Lists this computation built (the others were kept as they were).
    built: usize,
}

impl Snapshot {
    /// `node`'s list (the empty list if nothing is assigned to it; None while its list
    /// cannot be built).
    pub fn of(&self, node: &str) -> Option<Arc<NodeList>> {
        if self.unknown.contains(node) {
            return None;
        }
        self.nodes.get(node).cloned().or_else(|| self.empty.clone())
    }

    /// `node`'s state as of this snapshot (None: not known yet, e.g. it has just joined).
    pub fn node_state(&self, node: &str) -> Option<NodeState> {
        self.states.get(node).copied()
    }
}

/// The feed: the newest snapshot, and the watches attached to it. Lists are computed only
/// while a watch is attached: workers watch the leader, so a follower reads nothing for them
/// (and its snapshot is empty: a heartbeat that reaches it reads the node's state itself).
#[derive(Clone)]
pub struct Feed {
    rx: watch::Receiver<Arc<Snapshot>>,
    demand: Arc<Demand>,
}

#[derive(Default)]
struct Demand {
    watches: AtomicUsize,
    attached: Notify,
}

impl Feed {
    /// A feed that never changes (tests).
    pub fn fixed(snapshot: Snapshot) -> Feed {
        Feed {
            rx: watch::channel(Arc::new(snapshot)).1,
            demand: Arc::default(),
        }
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.rx.borrow().clone()
    }

    /// A receiver for one watch stream; the lists are computed while one is held.
    pub fn attach(&self) -> Watcher {
        self.demand.watches.fetch_add(1, Ordering::SeqCst);
        self.demand.attached.notify_one();
        Watcher {
            rx: self.rx.clone(),
            demand: self.demand.clone(),
        }
    }
}

/// One watch's receiver of snapshots.
pub struct Watcher {
    pub rx: watch::Receiver<Arc<Snapshot>>,
    demand: Arc<Demand>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.demand.watches.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the feed's task (it ends with `shutdown`); the receiver holds the first snapshot
/// once computed.
pub fn start(
    store: MasterStore,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
) -> Feed {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let demand = Arc::new(Demand::default());
    tokio::spawn(run(store, changes, tx, demand.clone(), shutdown));
    Feed { rx, demand }
}

async fn run(
    store: MasterStore,
    mut changes: watch::Receiver<u64>,
    tx: watch::Sender<Arc<Snapshot>>,
    demand: Arc<Demand>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if demand.watches.load(Ordering::SeqCst) == 0 {
            // Nobody watches: drop what was computed (stale from now on) and wait for one.
            if !tx.borrow().nodes.is_empty() || !tx.borrow().states.is_empty() {
                let _ = tx.send(Arc::new(Snapshot::default()));
            }
            tokio::select! {
                _ = demand.attached.notified() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        changes.borrow_and_update();
        let began = tokio::time::Instant::now();
        let previous = tx.borrow().clone();
        match compute(&store, &previous).await {
            Ok(next) => {
                crate::telemetry::instruments()
                    .assignments_computed(began.elapsed().as_secs_f64(), next.built);
                tracing::debug!(
                    took_ms = began.elapsed().as_millis() as u64,
                    built = next.built,
                    "assignments computed"
                );
                let _ = tx.send(Arc::new(next));
            }
            Err(e) => {
                tracing::warn!(error = %dash_core::link::with_causes(&e), "computing the nodes' assignments")
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(REFRESH) => {}
            _ = shutdown.changed() => return,
        }
        // A burst of changes is folded into the next computation, which waits at least twice
        // what this one took.
        let took = began.elapsed();
        tokio::select! {
            _ = tokio::time::sleep_until(began + MIN_GAP.max(took * 2).min(REFRESH)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A version's spec as this computation read it (None: not stored): its JSON, written once
/// into every list that holds a replica of it, and a hash of it.
type Specs = HashMap<(String, u64), Option<(Arc<str>, u64)>>;

/// The key of a node's list: what decides its content. The spec's hash is part of it: a
/// version's stored spec is rewritten by an apply that replaces no container (a new stop grace
/// period, labels, placement), and that must reach the node too.
fn key_of(replicas: &[&ReplicaInfo], specs: &Specs) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in replicas {
        r.id.hash(&mut h);
        r.service.hash(&mut h);
        r.version.hash(&mut h);
        r.desired.as_str().hash(&mut h);
        r.start_at_ms.hash(&mut h);
        r.run.hash(&mut h);
        specs
            .get(&(r.service.clone(), r.version))
            .and_then(|s| s.as_ref().map(|(_, hash)| *hash))
            .hash(&mut h);
    }
    h.finish()
}

async fn compute(store: &MasterStore, previous: &Snapshot) -> Result<Snapshot, StoreError> {
    let replicas = store.all_replicas().await?;
    let states = store.node_states().await?.into_iter().collect();
    let mut by_node: HashMap<&str, Vec<&ReplicaInfo>> = HashMap::new();
    // Each version's spec read once per computation (services have few versions in use).
    let mut specs: Specs = HashMap::new();
    for r in replicas.iter() {
        let Some(n) = r.node.as_deref() else { continue };
        by_node.entry(n).or_default().push(r);
        let id = (r.service.clone(), r.version);
        if let std::collections::hash_map::Entry::Vacant(slot) = specs.entry(id) {
            let spec = store.service_version(&r.service, r.version).await?;
            let hashed = match spec {
                Some(s) => match serde_json::to_string(&s) {
                    Ok(json) => {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        json.hash(&mut h);
                        Some((Arc::from(json), h.finish()))
                    }
                    // Only the lists holding it fail (and keep what they had).
                    Err(e) => {
                        tracing::warn!(service = %r.service, version = r.version, error = %e, "serialising a spec");
                        None
                    }
                },
                None => None,
            };
            slot.insert(hashed);
        }
    }
    let mut nodes = HashMap::with_capacity(by_node.len());
    let mut unknown = std::collections::HashSet::new();
    let mut built = 0;
    for (node, mut list) in by_node {
        // A node's replicas oldest first, as they were always sent.
        list.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        let key = key_of(&list, &specs);
        if let Some(prev) = previous.nodes.get(node)
            && prev.key == key
        {
            nodes.insert(node.to_string(), prev.clone());
            continue;
        }
        match build(&specs, &list, key) {
            Ok(l) => {
                built += 1;
                nodes.insert(node.to_string(), Arc::new(l));
            }
            Err(why) => {
                // That node keeps the list it had; the others go on. Without one, it gets
                // nothing (never the empty list: that would tell it to stop everything).
                tracing::warn!(node, error = %why, "computing a node's assignments");
                match previous.nodes.get(node) {
                    Some(prev) => {
                        nodes.insert(node.to_string(), prev.clone());
                    }
                    None => {
                        unknown.insert(node.to_string());
                    }
                }
            }
        }
    }
    let empty = previous.empty.clone().unwrap_or_else(|| {
        let json = "[]".to_string();
        Arc::new(NodeList {
            version: assignments_version(&json),
            json,
            key: 0,
        })
    });
    Ok(Snapshot {
        nodes,
        states,
        unknown,
        empty: Some(empty),
        built,
    })
}

/// One [`Assignment`] of `r` as serde writes it (the same fields in the same order), with
/// `spec` (the spec's JSON) written as it is.
fn write_assignment(out: &mut String, r: &ReplicaInfo, spec: &str) -> serde_json::Result<()> {
    #[derive(serde::Serialize)]
    struct Head<'a> {
        replica: &'a str,
        service: &'a str,
        version: u64,
    }
    #[derive(serde::Serialize)]
    struct Tail {
        desired: DesiredState,
        #[serde(skip_serializing_if = "Option::is_none")]
        start_at_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        run: Option<u64>,
    }
    let head = serde_json::to_string(&Head {
        replica: &r.id,
        service: &r.service,
        version: r.version,
    })?;
    let tail = serde_json::to_string(&Tail {
        desired: r.desired,
        start_at_ms: r.start_at_ms,
        run: r.run,
    })?;
    // {"replica":…,"version":1} + ,"spec":{…}, + "desired":…}
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"spec\":");
    out.push_str(spec);
    out.push(',');
    out.push_str(&tail[1..]);
    Ok(())
}

/// One node's list: each replica with its version's spec.
fn build(specs: &Specs, list: &[&ReplicaInfo], key: u64) -> Result<NodeList, String> {
    // The JSON of `Vec<Assignment>`, written here with each version's spec JSON as read once
    // for the computation (serialising a spec for each replica was most of the feed's time).
    let mut json = String::with_capacity(list.len() * 1024);
    json.push('[');
    for r in list {
        let spec = match specs.get(&(r.service.clone(), r.version)) {
            Some(Some((spec, _))) => spec,
            // Its service is gone with its versions: a replica being removed is left out
            // (without a spec it cannot be told to run), as it always was.
            _ if r.desired == DesiredState::Remove => continue,
            _ => {
                return Err(format!(
                    "replica {} is at version {} of {}, which is not stored",
                    r.id, r.version, r.service
                ));
            }
        };
        if json.len() > 1 {
            json.push(',');
        }
        write_assignment(&mut json, r, spec).map_err(|e| e.to_string())?;
    }
    json.push(']');
    Ok(NodeList {
        version: assignments_version(&json),
        json,
        key,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dash_core::api::{Assignment, NodeRole};
    use dash_core::command::{Command, NewReplica, NodeRecord};
    use dash_core::config_parser::parse_service;
    use dash_store::StateMachine;

    use super::*;

    fn replica(id: &str, node: &str) -> NewReplica {
        NewReplica {
            id: id.into(),
            service: "web".into(),
            version: 1,
            node: Some(node.into()),
            message: String::new(),
            run: None,
            start_at_ms: None,
        }
    }

    #[tokio::test]
    async fn only_the_lists_that_changed_are_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dash_store::open(&dir.path().join("dash.db")).await.unwrap();
        let sm = StateMachine::new(db.clone());
        let store = MasterStore::new(db);
        let spec = parse_service("w.toml", "name = \"web\"\nimage = \"busybox\"\n").unwrap();
        sm.apply(&Command::PutService {
            spec: Box::new(spec),
            at_ms: 1,
        })
        .await
        .unwrap();
        for (n, subnet) in [("n1", "10.0.1.0/24"), ("n2", "10.0.2.0/24")] {
            let node = NodeRecord {
                id: n.into(),
                address: "127.0.0.1:9".into(),
                role: NodeRole::Worker,
                state: NodeState::Ready,
                labels: Default::default(),
                capacity: Default::default(),
                subnet: subnet.into(),
                runtime: "sim".into(),
            };
            let a = sm
                .apply(&Command::UpsertNode {
                    node: Box::new(node),
                    at_ms: 1,
                })
                .await
                .unwrap();
            assert!(a.rejected.is_none(), "{a:?}");
        }
        sm.apply(&Command::CreateReplicas {
            replicas: vec![
                NewReplica {
                    start_at_ms: Some(5),
                    ..replica("web-1", "n1")
                },
                replica("web-2", "n2"),
            ],
            at_ms: 2,
        })
        .await
        .unwrap();
        let first = compute(&store, &Snapshot::default()).await.unwrap();
        let list = |s: &Snapshot, n: &str| -> Vec<Assignment> {
            serde_json::from_str(&s.of(n).unwrap().json).unwrap()
        };
        assert_eq!(list(&first, "n1")[0].replica, "web-1");
        assert_eq!(list(&first, "n2")[0].replica, "web-2");
        assert!(list(&first, "n3").is_empty(), "a node with nothing: []");
        assert_eq!(first.node_state("n1"), Some(NodeState::Ready));
        // web-2 is to be removed: n2's list is new, n1's the very same.
        sm.apply(&Command::SetReplicaDesired {
            id: "web-2".into(),
            desired: DesiredState::Remove,
            at_ms: 3,
        })
        .await
        .unwrap();
        let second = compute(&store, &first).await.unwrap();
        assert!(Arc::ptr_eq(
            &first.of("n1").unwrap(),
            &second.of("n1").unwrap()
        ));
        assert_ne!(
            first.of("n2").unwrap().version,
            second.of("n2").unwrap().version
        );
        assert_eq!(list(&second, "n2")[0].desired, DesiredState::Remove);
        // The version is the list's, as a worker resumes with it.
        let n2 = second.of("n2").unwrap();
        assert_eq!(n2.version, assignments_version(&n2.json));
        // An apply that replaces no container rewrites the spec of the same version: it
        // reaches the node all the same.
        let graceful = parse_service(
            "w.toml",
            "name = \"web\"\nimage = \"busybox\"\nstop_grace_period = \"7s\"\n",
        )
        .unwrap();
        sm.apply(&Command::PutService {
            spec: Box::new(graceful),
            at_ms: 4,
        })
        .await
        .unwrap();
        let third = compute(&store, &second).await.unwrap();
        let n1 = list(&third, "n1");
        assert_eq!(n1[0].version, 1, "no new version");
        // Written by hand with each spec's JSON: the very bytes serde writes of the list.
        let n1_json = &third.of("n1").unwrap().json;
        assert_eq!(n1_json, &serde_json::to_string(&n1).unwrap());
        assert_eq!(n1[0].start_at_ms, Some(5));
        assert_eq!(n1[0].spec.stop_grace, std::time::Duration::from_secs(7));
    }
}
