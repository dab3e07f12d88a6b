//! The master's state machine: [`MasterStore::apply`] and the reads the rest of the master needs.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use dash_core::ServiceSpec;
use dash_core::api::{
    AuditEntry, DesiredState, NodeInfo, NodeRole, NodeState, ReplicaInfo, ReplicaState, TokenInfo,
};
use dash_core::command::{Command, NodeRecord, ReplicaStatus};
use dash_core::spec::Resources;
use dash_core::subnet::VipPool;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::error::{StoreError, corrupt};

/// Removed replicas remembered per service (for their logs), newest first.
const REMOVED_KEPT_PER_SERVICE: i64 = 20;

/// A replica removed for good: where it ran, so its kept log can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedReplica {
    pub id: String,
    pub service: String,
    pub node: Option<String>,
    pub version: u64,
    pub created_ms: u64,
    pub removed_ms: u64,
}

/// A stored service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub spec: ServiceSpec,
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub removing: bool,
    pub last_batch_ms: u64,
    /// The version an automatic rollback made (0: none): never rolled back automatically.
    pub auto_rollback_version: u64,
    /// Its virtual IP (a service with ports).
    pub vip: Option<String>,
}

/// What applying a log entry did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The entry's index in the log.
    pub index: u64,
    /// For `PutService`: the service's version after the command.
    pub version: Option<u64>,
    /// Whether anything changed.
    pub changed: bool,
    /// For `JoinNode`: the subnet the node got.
    pub subnet: Option<String>,
    /// For `StartJobRun`: the run's number.
    pub run: Option<u64>,
    /// The state refused the command (nothing changed); the same on every replay.
    pub rejected: Option<Rejection>,
    /// The entry had been applied before: nothing was done again.
    pub replayed: bool,
}

impl Applied {
    /// Whether the entry's events are published: it changed the state (not a refusal, not a
    /// replay).
    pub fn publishes(&self) -> bool {
        self.changed && self.rejected.is_none() && !self.replayed
    }

    /// `Ok(self)` when the command was taken, else its refusal.
    pub fn accepted(self) -> Result<Applied, Rejection> {
        match self.rejected {
            Some(r) => Err(r),
            None => Ok(self),
        }
    }
}

/// Why the state refused a command: deterministic, decided by the state alone. It travels
/// (serde) from the master that applied the entry to the one that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Rejection {
    #[error("{what} {name:?} not found")]
    NotFound {
        what: Cow<'static, str>,
        name: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid {
        field: Cow<'static, str>,
        message: String,
    },
    /// Something the state hands out has run out (the cluster's subnets).
    #[error("{0}")]
    Exhausted(String),
}

impl Rejection {
    /// The refusal an error of the transitions stands for, or the error itself when it is a
    /// failure of the storage.
    fn of(e: StoreError) -> Result<Rejection, StoreError> {
        match e {
            StoreError::Rejected(r) => Ok(r),
            e => Err(e),
        }
    }
}

/// What the readers of one state share: the state's generation (bumped by every commit of the
/// state machine) and the list of every replica read at some generation. The reconciler, the
/// assignment feed, the routes and endpoints feeds and the metrics all read every replica after
/// each change; with 20,000 replicas each read was tens of milliseconds (a second in a debug
/// build), and they were done one after the other for the same change.
#[derive(Default)]
pub struct SharedReads {
    generation: std::sync::atomic::AtomicU64,
    /// Bumped by every commit that changed a node's certificates or membership (a join, a
    /// renewal, a removal): what the node_bouncer's cache of verified certificates follows.
    identities: std::sync::atomic::AtomicU64,
    replicas: std::sync::Mutex<Option<(u64, std::sync::Arc<Vec<ReplicaInfo>>)>>,
}

impl SharedReads {
    /// The state changed (a commit of the state machine).
    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// A commit of `cmds` happened: the generations they move.
    fn committed<'a>(&self, cmds: impl IntoIterator<Item = &'a Command>) {
        if cmds.into_iter().any(|c| {
            matches!(
                c,
                Command::SetNodeCert { .. }
                    | Command::RemoveNode { .. }
                    | Command::JoinNode { .. }
                    | Command::UpsertNode { .. }
            )
        }) {
            self.identities
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        self.bump();
    }
}

/// The read side of the master's state. Writes go through the log ([`StateMachine`]).
#[derive(Clone)]
pub struct MasterStore {
    pool: SqlitePool,
    reads: std::sync::Arc<SharedReads>,
    /// Parsed service specs by service name, with the JSON text they were parsed from: the
    /// reconciler and the route table read every service after each change, and parsing each
    /// spec again cost more than the rest of those reads.
    specs: std::sync::Arc<std::sync::Mutex<HashMap<String, (String, ServiceSpec)>>>,
}

/// The write side of the master's state: applies log entries, one transaction each. Only the
/// log's applier holds one (dash-master's `state_log`); everything else proposes commands.
#[derive(Clone)]
pub struct StateMachine {
    pool: SqlitePool,
    reads: std::sync::Arc<SharedReads>,
    /// SQLite has one writer; a deferred transaction that later writes can fail with
    /// SQLITE_BUSY instead of waiting, so writers queue here.
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// One Raft log entry for [`StateMachine::apply_log_entries`].
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    pub index: u64,
    /// None for a blank or membership entry.
    pub cmd: Option<&'a Command>,
    /// The entry's log id (the Raft layer's JSON).
    pub log_id: &'a str,
    /// A membership entry's membership (the Raft layer's JSON).
    pub membership: Option<&'a str>,
}

impl StateMachine {
    pub fn new(db: crate::Db) -> Self {
        Self {
            pool: db.pool,
            write: db.write,
            reads: db.reads,
        }
    }

    /// The state machine's entry: applies `cmd` as the log entry after the last one applied.
    /// (Until the Raft log sits in front, the entries' indexes are given here.)
    pub async fn apply(&self, cmd: &Command) -> Result<Applied, StoreError> {
        let _writer = self.write.lock().await;
        let index = self.last_applied().await? + 1;
        self.apply_entry(index, cmd).await
    }

    /// Applies `cmd` as log entry `index`, in one transaction that also records `index` as the
    /// last applied. An entry at or below the last applied one is a replay and changes nothing
    /// (`Applied::replayed`). A command the state refuses (a service being removed, a subnet
    /// already taken, a name not found) is a result, not an error: `Applied::rejected`, the same
    /// on every replica of the state and on every replay; the index still advances.
    pub async fn apply_at(&self, index: u64, cmd: &Command) -> Result<Applied, StoreError> {
        let _writer = self.write.lock().await;
        if index <= self.last_applied().await? {
            return Ok(Applied {
                index,
                replayed: true,
                ..Applied::default()
            });
        }
        self.apply_entry(index, cmd).await
    }

    /// Applies Raft log entries, in order, in one transaction that also records the last one's
    /// log id and the last membership among them (`log_id`, `membership`: the Raft layer's
    /// JSON). Each entry's command runs inside a savepoint: one the state refuses is rolled
    /// back alone and becomes `Applied::rejected`. An entry at or below the last one applied is
    /// a replay: nothing is done (`Applied::replayed`). One transaction for a batch: the commit
    /// and the bookkeeping are paid once, not per entry.
    pub async fn apply_log_entries(
        &self,
        entries: &[LogEntry<'_>],
    ) -> Result<Vec<Applied>, StoreError> {
        let _writer = self.write.lock().await;
        let (mut last, last_id) = self.applied_log_id().await?;
        let mut have_id = last_id.is_some();
        let mut out = Vec::with_capacity(entries.len());
        let mut newest: Option<(u64, &str)> = None;
        let mut membership: Option<&str> = None;
        let mut tx = self.pool.begin().await?;
        for e in entries {
            if have_id && e.index <= last {
                out.push(Applied {
                    index: e.index,
                    replayed: true,
                    ..Applied::default()
                });
                continue;
            }
            let mut applied = match e.cmd {
                None => Applied::default(),
                Some(cmd) => {
                    sqlx::query("SAVEPOINT entry").execute(&mut *tx).await?;
                    match apply_command(&mut tx, cmd).await {
                        Ok(a) => a,
                        Err(err) => {
                            let rejection = Rejection::of(err)?;
                            sqlx::query("ROLLBACK TO entry").execute(&mut *tx).await?;
                            Applied {
                                rejected: Some(rejection),
                                ..Applied::default()
                            }
                        }
                    }
                }
            };
            if e.cmd.is_some() {
                sqlx::query("RELEASE entry").execute(&mut *tx).await?;
            }
            applied.index = e.index;
            out.push(applied);
            (last, have_id) = (e.index, true);
            newest = Some((e.index, e.log_id));
            if let Some(m) = e.membership {
                membership = Some(m);
            }
        }
        if let Some((index, log_id)) = newest {
            record_applied(&mut tx, index, Some(log_id), membership).await?;
            tx.commit().await?;
            self.reads.committed(entries.iter().filter_map(|e| e.cmd));
        }
        Ok(out)
    }

    /// The index and the Raft log id (JSON; None before the Raft log applied anything) of the
    /// last entry applied.
    pub async fn applied_log_id(&self) -> Result<(u64, Option<String>), StoreError> {
        let row = sqlx::query("SELECT log_index, log_id FROM applied WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.get::<i64, _>("log_index") as u64, row.get("log_id")))
    }

    /// The last membership applied (the Raft layer's JSON), if any.
    pub async fn applied_membership(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT membership FROM applied WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A consistent copy of the whole state in the file `path` (SQLite's `VACUUM INTO`, with
    /// applies held back meanwhile: milliseconds for a state of this size). Returns what the copy
    /// has applied: the last entry's log id and the membership (the Raft layer's JSON). `path`
    /// must not exist.
    pub async fn snapshot_to(
        &self,
        path: &std::path::Path,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let _writer = self.write.lock().await;
        let (_, log_id) = self.applied_log_id().await?;
        let membership = self.applied_membership().await?;
        sqlx::query("VACUUM INTO ?")
            .bind(path.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await?;
        Ok((log_id, membership))
    }

    /// Replaces the whole state with the snapshot in the file `path` (made by `snapshot_to`
    /// on a master of the same version), in one transaction: every table of the state is
    /// emptied and filled from the snapshot's. Nothing changes if it fails.
    pub async fn install_from(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        // A connection of its own, never back to the pool: it has the snapshot attached and its
        // foreign keys switched off for a while.
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query("ATTACH DATABASE ? AS snap")
            .bind(path.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
        // Foreign keys off for the copy (a delete would cascade into rows just copied; they can
        // be switched only outside a transaction), the result checked whole before the commit,
        // and on again for the pool whatever happens.
        let fk_off = sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut conn)
            .await;
        let copied = match fk_off {
            Err(e) => Err(e),
            Ok(_) => copy_tables(&mut conn).await,
        };
        let fk_on = sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut conn)
            .await;
        let detached = sqlx::query("DETACH DATABASE snap").execute(&mut conn).await;
        // Whatever happened, what readers hold may be stale now.
        self.reads
            .identities
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.reads.bump();
        let broken = copied?;
        fk_on?;
        detached?;
        if broken > 0 {
            return Err(corrupt(
                "snapshot",
                format!("{broken} rows refer to rows it does not have; nothing was installed"),
            ));
        }
        Ok(())
    }

    /// The index of the last log entry applied (0: none).
    pub async fn last_applied(&self) -> Result<u64, StoreError> {
        let index: i64 = sqlx::query_scalar("SELECT log_index FROM applied WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(index as u64)
    }

    /// `apply_at` under the write lock.
    async fn apply_entry(&self, index: u64, cmd: &Command) -> Result<Applied, StoreError> {
        self.apply_in(index, Some(cmd), None, None).await
    }

    /// Applies `cmd` (if any) as entry `index` in one transaction that records the index (and
    /// the Raft log id and membership when given); a refused command leaves nothing but the
    /// index. Under the write lock.
    async fn apply_in(
        &self,
        index: u64,
        cmd: Option<&Command>,
        log_id: Option<&str>,
        membership: Option<&str>,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = match cmd {
            None => Applied::default(),
            Some(cmd) => match apply_command(&mut tx, cmd).await {
                Ok(out) => out,
                Err(e) => {
                    let rejection = Rejection::of(e)?;
                    tx.rollback().await?;
                    tx = self.pool.begin().await?;
                    Applied {
                        rejected: Some(rejection),
                        ..Applied::default()
                    }
                }
            },
        };
        record_applied(&mut tx, index, log_id, membership).await?;
        tx.commit().await?;
        self.reads.committed(cmd);
        out.index = index;
        Ok(out)
    }
}

impl MasterStore {
    pub fn new(db: crate::Db) -> Self {
        Self {
            pool: db.pool,
            reads: db.reads,
            specs: Default::default(),
        }
    }

    /// A number that changes whenever a node's certificates or membership changed in the
    /// state (a join, a renewal, a removal, a snapshot installed).
    pub fn identities_generation(&self) -> u64 {
        self.reads
            .identities
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every replica (as [`MasterStore::replicas`] with no service), shared: a reader that
    /// comes after another at the same generation of the state gets the same list without a
    /// read. The generation is taken before the read, so the list is never older than it.
    pub async fn all_replicas(&self) -> Result<std::sync::Arc<Vec<ReplicaInfo>>, StoreError> {
        let generation = self
            .reads
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        if let Ok(cached) = self.reads.replicas.lock()
            && let Some((g, list)) = cached.as_ref()
            && *g == generation
        {
            return Ok(list.clone());
        }
        let mut list = self.read_replicas("", &[]).await?;
        list.sort_by(|a, b| {
            (&a.service, a.created_ms, &a.id).cmp(&(&b.service, b.created_ms, &b.id))
        });
        let list = std::sync::Arc::new(list);
        if let Ok(mut cached) = self.reads.replicas.lock()
            && cached.as_ref().is_none_or(|(g, _)| *g < generation)
        {
            *cached = Some((generation, list.clone()));
        }
        Ok(list)
    }

    /// The replicas that `filter` (a WHERE clause with `?` for each of `binds`, or "")
    /// selects, in no order. SQLite builds one JSON text of them all: sqlx hands rows over one
    /// by one from its worker thread, which made a read of 22,000 rows cost a loaded master a
    /// second (a scale run's slowest statement); one text and one parse cost milliseconds.
    async fn read_replicas(
        &self,
        filter: &str,
        binds: &[&str],
    ) -> Result<Vec<ReplicaInfo>, StoreError> {
        let sql = format!(
            "SELECT json_group_array(json_array(id, service, version, node, desired, state, ip,
                 restarts, exit_code, created_ms, started_ms, message, run, start_at_ms))
             FROM replicas {filter}"
        );
        let mut q = sqlx::query_scalar::<_, Option<String>>(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let text = q.fetch_one(&self.pool).await?;
        let raw: Vec<RawReplica> = serde_json::from_str(text.as_deref().unwrap_or("[]"))
            .map_err(|e| corrupt("replicas", e))?;
        raw.into_iter().map(RawReplica::into_info).collect()
    }

    /// The spec stored as `text` for service `name`: parsed once per text.
    fn spec_of(&self, name: &str, text: &str) -> Result<ServiceSpec, StoreError> {
        let mut specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, spec)) = specs.get(name)
            && cached == text
        {
            return Ok(spec.clone());
        }
        let spec: ServiceSpec =
            serde_json::from_str(text).map_err(|e| corrupt("service spec", e))?;
        specs.insert(name.to_string(), (text.to_string(), spec.clone()));
        Ok(spec)
    }

    fn service_row(&self, row: &SqliteRow) -> Result<ServiceRow, StoreError> {
        Ok(ServiceRow {
            spec: self.spec_of(row.get("name"), row.get("spec"))?,
            version: row.get::<i64, _>("version") as u64,
            created_ms: row.get::<i64, _>("created_ms") as u64,
            updated_ms: row.get::<i64, _>("updated_ms") as u64,
            removing: row.get::<i64, _>("removing") != 0,
            last_batch_ms: row.get::<i64, _>("last_batch_ms") as u64,
            auto_rollback_version: row.get::<i64, _>("auto_rollback_version") as u64,
            vip: row.get("vip"),
        })
    }

    /// The cluster's image index: (tag, manifest digest, origin master), by tag.
    pub async fn recorded_images(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT tag, manifest_digest, origin FROM images ORDER BY tag")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Tags that left the image index: `(tag, manifest digest it had)`, the latest
    /// [`KEPT_TOMBSTONES`].
    pub async fn forgotten_images(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT tag, manifest_digest FROM forgotten_images ORDER BY tag")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// How many prunes of the image stores were asked for (`dash image prune`).
    pub async fn image_prunes(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT requested FROM image_prunes WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// The sealed credentials kept for `registry` (canonical `host[:port]`).
    pub async fn registry_login(&self, registry: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM registry_logins WHERE registry = ?")
                .bind(registry)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The registries with credentials kept in the state.
    pub async fn registry_logins(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT registry FROM registry_logins ORDER BY registry")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Every token (join and access), newest first, with the hash of its secret.
    pub async fn tokens(&self) -> Result<Vec<(TokenInfo, String)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM join_tokens ORDER BY created_ms DESC, id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(token_row).collect())
    }

    /// Audit entries recorded at or after `since_ms`, oldest first, at most `limit` (the newest).
    pub async fn audit(&self, since_ms: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM audit WHERE at_ms >= ? ORDER BY seq DESC LIMIT ?)
             ORDER BY seq",
        )
        .bind(since_ms.min(i64::MAX as u64) as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| AuditEntry {
                seq: row.get::<i64, _>("seq") as u64,
                at_ms: row.get::<i64, _>("at_ms") as u64,
                who: row.get("who"),
                role: row.get("role"),
                method: row.get("method"),
                path: row.get("path"),
                target: row.get("target"),
                source: row.get("source"),
                master: row.get("master"),
                status: row.get::<i64, _>("status") as u16,
            })
            .collect())
    }

    /// Token `id` and the hash of its secret.
    pub async fn token(&self, id: &str) -> Result<Option<(TokenInfo, String)>, StoreError> {
        let row = sqlx::query("SELECT * FROM join_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(token_row))
    }

    /// The certificate serials node `id` may present (current, previous); None if no such node.
    pub async fn node_cert_serials(
        &self,
        id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT cert_serial, prev_cert_serial FROM nodes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get("cert_serial"), r.get("prev_cert_serial"))))
    }

    /// Replicas of `service` removed for good, newest first (at most 20 are remembered).
    pub async fn removed_replicas(&self, service: &str) -> Result<Vec<RemovedReplica>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM removed_replicas WHERE service = ? ORDER BY removed_ms DESC, id",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(removed_row).collect())
    }

    /// A removed replica by id.
    pub async fn removed_replica(&self, id: &str) -> Result<Option<RemovedReplica>, StoreError> {
        let row = sqlx::query("SELECT * FROM removed_replicas WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(removed_row))
    }

    /// The spec a given version of a service had.
    pub async fn service_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Option<ServiceSpec>, StoreError> {
        let spec: Option<String> =
            sqlx::query_scalar("SELECT spec FROM service_versions WHERE name = ? AND version = ?")
                .bind(name)
                .bind(version as i64)
                .fetch_optional(&self.pool)
                .await?;
        spec.map(|s| serde_json::from_str(&s).map_err(|e| corrupt("service spec", e)))
            .transpose()
    }

    pub async fn services(&self) -> Result<Vec<ServiceRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM services ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let out = rows
            .iter()
            .map(|r| self.service_row(r))
            .collect::<Result<Vec<_>, _>>()?;
        // Services that are gone leave the cache.
        let mut specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        if specs.len() > out.len() {
            let names: HashSet<&str> = out.iter().map(|r| r.spec.name.as_str()).collect();
            specs.retain(|name, _| names.contains(name.as_str()));
        }
        Ok(out)
    }

    pub async fn service(&self, name: &str) -> Result<Option<ServiceRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM services WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| self.service_row(r)).transpose()
    }

    /// Replicas, of one service or all, oldest first.
    pub async fn replicas(&self, service: Option<&str>) -> Result<Vec<ReplicaInfo>, StoreError> {
        match service {
            Some(s) => {
                let mut list = self.read_replicas("WHERE service = ?", &[s]).await?;
                list.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
                Ok(list)
            }
            None => Ok(self.all_replicas().await?.as_ref().clone()),
        }
    }

    pub async fn replica(&self, id: &str) -> Result<Option<ReplicaInfo>, StoreError> {
        let row = sqlx::query("SELECT * FROM replicas WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(replica_row).transpose()
    }

    /// The replicas with these ids that exist, by id (one read for a group of reports).
    pub async fn replicas_by_id(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, ReplicaInfo>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        // SQLite takes up to 32,766 parameters in a statement; far more than a group holds.
        for chunk in ids.chunks(10_000) {
            let marks = vec!["?"; chunk.len()].join(",");
            for r in self
                .read_replicas(&format!("WHERE id IN ({marks})"), chunk)
                .await?
            {
                out.insert(r.id.clone(), r);
            }
        }
        Ok(out)
    }

    /// Replicas assigned to a node.
    pub async fn node_replicas(&self, node: &str) -> Result<Vec<ReplicaInfo>, StoreError> {
        let mut list = self.read_replicas("WHERE node = ?", &[node]).await?;
        list.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(list)
    }

    /// A node's state alone (None: no such node): what a heartbeat needs.
    pub async fn node_state(&self, id: &str) -> Result<Option<NodeState>, StoreError> {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM nodes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        state
            .map(|s| NodeState::parse(&s).ok_or_else(|| corrupt("node state", &s)))
            .transpose()
    }

    /// A node's role alone (None: no such node): what a join checks its name against.
    pub async fn node_role(&self, id: &str) -> Result<Option<NodeRole>, StoreError> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM nodes WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        role.map(|r| NodeRole::parse(&r).ok_or_else(|| corrupt("node role", &r)))
            .transpose()
    }

    /// Every node's id and state: what the liveness check reads ten times a second.
    pub async fn node_states(&self) -> Result<Vec<(String, NodeState)>, StoreError> {
        let rows = sqlx::query("SELECT id, state FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.get("state");
                let parsed =
                    NodeState::parse(&state).ok_or_else(|| corrupt("node state", &state))?;
                Ok((r.get("id"), parsed))
            })
            .collect()
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.*, COUNT(r.id) AS replicas FROM nodes n
             LEFT JOIN replicas r ON r.node = n.id AND r.desired = 'run'
             GROUP BY n.id ORDER BY n.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let specs = self.services().await?;
        let by_name: BTreeMap<String, Resources> = specs
            .into_iter()
            .map(|s| (s.spec.name.to_string(), s.spec.resources))
            .collect();
        // What each node's running replicas reserve: one grouped read for every node (a read
        // per node made a heartbeat cost as many queries as the cluster has nodes).
        let counts = sqlx::query(
            "SELECT node, service, COUNT(*) AS n FROM replicas
             WHERE node IS NOT NULL AND desired = 'run' GROUP BY node, service",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut allocations: HashMap<String, Resources> = HashMap::new();
        for c in &counts {
            let service: String = c.get("service");
            if let Some(res) = by_name.get(&service) {
                let n = c.get::<i64, _>("n") as u64;
                let a = allocations.entry(c.get("node")).or_default();
                a.cpu_millis =
                    a.cpu_millis.saturating_add(
                        (u64::from(res.cpu_millis) * n).min(u64::from(u32::MAX)) as u32,
                    );
                a.memory_bytes = a
                    .memory_bytes
                    .saturating_add(res.memory_bytes.saturating_mul(n));
            }
        }
        let mut out = Vec::new();
        for row in rows {
            let id: String = row.get("id");
            let allocated = allocations.remove(&id).unwrap_or_default();
            let record = node_row(&row)?;
            out.push(NodeInfo {
                id: record.id,
                address: record.address,
                role: record.role,
                state: record.state,
                labels: record.labels,
                capacity: record.capacity,
                allocated,
                replicas: row.get::<i64, _>("replicas") as u32,
                subnet: record.subnet,
                runtime: record.runtime,
                last_seen_ms: row.get::<i64, _>("last_seen_ms") as u64,
                raft: None,
            });
        }
        Ok(out)
    }
}

/// Empties every table of the state and fills it from the attached `snap`, in one transaction
/// (foreign keys must be off). `local_replicas` and `ip_allocations` (a node's own records,
/// left in dash.db by versions before node.db) are not the master's state: never copied. Returns how many rows break a foreign key afterwards: with any,
/// the transaction is rolled back and nothing changed.
async fn copy_tables(conn: &mut sqlx::SqliteConnection) -> Result<usize, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations'
         AND name NOT IN ('local_replicas', 'ip_allocations') ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Names from the schema itself, quoted.
    let quoted: Vec<String> = tables
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for t in &quoted {
        sqlx::query(&format!("DELETE FROM main.{t}"))
            .execute(&mut *tx)
            .await?;
    }
    for t in &quoted {
        sqlx::query(&format!("INSERT INTO main.{t} SELECT * FROM snap.{t}"))
            .execute(&mut *tx)
            .await?;
    }
    let broken = sqlx::query("PRAGMA main.foreign_key_check")
        .fetch_all(&mut *tx)
        .await?
        .len();
    if broken > 0 {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(broken)
}

/// The state machine's transitions: one command's changes within `tx`. Refusals come back as
/// `StoreError::Rejected` and become `Applied::rejected` in `apply_entry`.
async fn apply_command(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    cmd: &Command,
) -> Result<Applied, StoreError> {
    let mut out = Applied::default();
    match cmd {
        Command::PutService { spec, at_ms } => return put_service(tx, spec, *at_ms).await,
        Command::RollBackService { spec, at_ms } => {
            out = put_service(tx, spec, *at_ms).await?;
            if let Some(version) = out.version {
                sqlx::query("UPDATE services SET auto_rollback_version = ? WHERE name = ?")
                    .bind(version as i64)
                    .bind(spec.name.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Command::ScaleService {
            name,
            replicas,
            at_ms,
        } => {
            let row = sqlx::query("SELECT spec FROM services WHERE name = ? AND removing = 0")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| Rejection::NotFound {
                    what: "service".into(),
                    name: name.clone(),
                })?;
            let mut spec: ServiceSpec =
                serde_json::from_str(row.get("spec")).map_err(|e| corrupt("service spec", e))?;
            if spec.is_job() {
                return Err(Rejection::Invalid {
                    field: "replicas".into(),
                    message: format!(
                        "{name} is a job: its replicas are its runs' attempts; set [job] parallelism in its file, or start a run with `dash job run {name}`"
                    ),
                }
                .into());
            }
            if let Some(a) = &spec.autoscale
                && (*replicas < a.min || *replicas > a.max)
            {
                return Err(Rejection::Invalid {
                    field: "replicas".into(),
                    message: format!(
                        "replicas = {replicas}: service {name} autoscales between {} and {}; change [autoscale] min/max in its file to go beyond",
                        a.min, a.max
                    ),
                }.into());
            }
            if spec.replicas != *replicas {
                spec.replicas = *replicas;
                let json = serde_json::to_string(&spec).map_err(|e| corrupt("service spec", e))?;
                sqlx::query("UPDATE services SET spec = ?, updated_ms = ? WHERE name = ?")
                    .bind(json)
                    .bind(*at_ms as i64)
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                out.changed = true;
            }
        }
        Command::RemoveService { name, .. } => {
            let n = sqlx::query("UPDATE services SET removing = 1 WHERE name = ?")
                .bind(name)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(Rejection::NotFound {
                    what: "service".into(),
                    name: name.clone(),
                }
                .into());
            }
            sqlx::query("UPDATE replicas SET desired = 'remove' WHERE service = ?")
                .bind(name)
                .execute(&mut **tx)
                .await?;
            // Replicas never placed (pending) have nothing to stop on any node.
            sqlx::query("DELETE FROM replicas WHERE service = ? AND node IS NULL")
                .bind(name)
                .execute(&mut **tx)
                .await?;
            // A service without replicas goes at once.
            sqlx::query(
                "DELETE FROM services WHERE name = ? AND NOT EXISTS (SELECT 1 FROM replicas WHERE service = ?)",
            )
            .bind(name)
            .bind(name)
            .execute(&mut **tx)
            .await?;
            out.changed = true;
        }
        Command::SetUpdateBatch { name, at_ms } => {
            sqlx::query("UPDATE services SET last_batch_ms = ? WHERE name = ?")
                .bind(*at_ms as i64)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Command::CreateReplicas { replicas, at_ms } => {
            for r in replicas {
                let state = ReplicaState::Pending;
                // Never for a service being removed: a reconcile pass that read the service
                // just before `dash service rm` must not bring replicas back.
                // An attempt of a job's run only while the run is in progress: a pass that
                // read the run before it ended must not start another attempt after.
                let inserted = sqlx::query(
                    "INSERT OR IGNORE INTO replicas (id, service, version, node, desired, state, created_ms, message, run, start_at_ms)
                     SELECT ?, ?, ?, ?, 'run', ?, ?, ?, ?, ? WHERE EXISTS
                       (SELECT 1 FROM services WHERE name = ? AND removing = 0)
                     AND (? IS NULL OR EXISTS (SELECT 1 FROM job_runs
                       WHERE service = ? AND run = ? AND state = 'running'))",
                )
                .bind(&r.id)
                .bind(&r.service)
                .bind(r.version as i64)
                .bind(&r.node)
                .bind(state.as_str())
                .bind(*at_ms as i64)
                .bind(&r.message)
                .bind(r.run.map(|v| v as i64))
                .bind(r.start_at_ms.map(|v| v as i64))
                .bind(&r.service)
                .bind(r.run.map(|v| v as i64))
                .bind(&r.service)
                .bind(r.run.map(|v| v as i64))
                .execute(&mut **tx)
                .await?
                .rows_affected();
                out.changed |= inserted > 0;
            }
        }
        Command::SetReplicaDesired { id, desired, .. } => {
            out.changed = set_desired(tx, id, *desired).await?;
        }
        Command::SetReplicasDesired { ids, desired, .. } => {
            for id in ids {
                out.changed |= set_desired(tx, id, *desired).await?;
            }
        }
        Command::PlaceReplica { id, node, message } => {
            out.changed = sqlx::query("UPDATE replicas SET node = ?, message = ? WHERE id = ?")
                .bind(node)
                .bind(message)
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                > 0;
        }
        Command::ReportReplica { status, .. } => {
            out.changed = report_replica(tx, status).await?;
        }
        Command::ReplicaReports {
            statuses,
            removed,
            at_ms,
        } => {
            // Every one is written: `changed` must not stop the rest.
            for status in statuses {
                let changed = report_replica(tx, status).await?;
                out.changed |= changed;
            }
            for id in removed {
                let changed = delete_replica(tx, id, *at_ms).await?;
                out.changed |= changed;
            }
        }
        Command::DeleteReplica { id, at_ms } => {
            out.changed = delete_replica(tx, id, *at_ms).await?;
        }
        Command::UpsertNode { node, at_ms } => {
            upsert_node(tx, node, *at_ms).await?;
            out.changed = true;
        }
        Command::JoinNode {
            node,
            pool,
            serial,
            at_ms,
        } => {
            let existing = sqlx::query("SELECT role, subnet FROM nodes WHERE id = ?")
                .bind(&node.id)
                .fetch_optional(&mut **tx)
                .await?;
            let subnet = match existing {
                Some(row) => {
                    let role: String = row.get("role");
                    if role != NodeRole::Worker.as_str() {
                        return Err(Rejection::Conflict(format!(
                            "node name {:?} is a master's; give this node another --node-name",
                            node.id
                        ))
                        .into());
                    }
                    row.get::<String, _>("subnet")
                }
                None => {
                    let used: Vec<String> = sqlx::query_scalar("SELECT subnet FROM nodes")
                        .fetch_all(&mut **tx)
                        .await?;
                    pool.next_free(&used).ok_or_else(|| {
                        Rejection::Exhausted(format!(
                            "no free /24 left in the cluster CIDR {pool} (--cluster-cidr)"
                        ))
                    })?
                }
            };
            let record = NodeRecord {
                subnet: subnet.clone(),
                ..(**node).clone()
            };
            upsert_node(tx, &record, *at_ms).await?;
            sqlx::query(
                "UPDATE nodes SET prev_cert_serial = cert_serial, cert_serial = ? WHERE id = ? AND cert_serial != ?",
            )
            .bind(serial)
            .bind(&node.id)
            .bind(serial)
            .execute(&mut **tx)
            .await?;
            out.changed = true;
            out.subnet = Some(subnet);
        }
        Command::SetNodeState {
            id,
            state,
            at_ms,
            from,
        } => {
            out.changed = sqlx::query(
                "UPDATE nodes SET state = ?, last_seen_ms = MAX(last_seen_ms, ?)
                 WHERE id = ? AND state != ? AND (? IS NULL OR state = ?)",
            )
            .bind(state.as_str())
            .bind(*at_ms as i64)
            .bind(id)
            .bind(state.as_str())
            .bind(from.map(|f| f.as_str()))
            .bind(from.map(|f| f.as_str()))
            .execute(&mut **tx)
            .await?
            .rows_affected()
                > 0;
        }
        Command::SetNodeLabels { id, set, remove } => {
            let current: String = sqlx::query_scalar("SELECT labels FROM nodes WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| Rejection::NotFound {
                    what: "node".into(),
                    name: id.clone(),
                })?;
            let mut labels: BTreeMap<String, String> =
                serde_json::from_str(&current).map_err(|e| corrupt("node labels", e))?;
            for k in remove {
                labels.remove(k);
            }
            labels.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            let json = serde_json::to_string(&labels).map_err(|e| corrupt("node labels", e))?;
            out.changed = sqlx::query("UPDATE nodes SET labels = ? WHERE id = ? AND labels != ?")
                .bind(&json)
                .bind(id)
                .bind(&json)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                > 0;
        }
        Command::SetNodeCert { id, serial } => {
            out.changed = sqlx::query(
                "UPDATE nodes SET prev_cert_serial = cert_serial, cert_serial = ? WHERE id = ? AND cert_serial != ?",
            )
            .bind(serial)
            .bind(id)
            .bind(serial)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                > 0;
        }
        Command::DrainNode { id, at_ms } => {
            node_state_of(tx, id).await?;
            out.changed = set_node_state(tx, id, NodeState::Drained, *at_ms).await?;
        }
        Command::ActivateNode { id, at_ms } => {
            let state = node_state_of(tx, id).await?;
            if state != NodeState::Drained {
                return Err(Rejection::Conflict(format!(
                    "node {id} is {}, not drained; only a drained node is activated (an unreachable or down node becomes ready by itself when it is heard again)",
                    state.as_str()
                )).into());
            }
            out.changed = set_node_state(tx, id, NodeState::Ready, *at_ms).await?;
        }
        Command::RemoveNode { id, force } => {
            let state = match node_state_of(tx, id).await {
                Ok(state) => Some(state),
                Err(StoreError::Rejected(Rejection::NotFound { .. })) => None,
                Err(e) => return Err(e),
            };
            if state == Some(NodeState::Ready) && !force {
                return Err(Rejection::Conflict(format!(
                    "node {id} is ready; drain it or stop it first, or remove it anyway with --force"
                )).into());
            }
            sqlx::query("DELETE FROM replicas WHERE node = ?")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "DELETE FROM services WHERE removing = 1
                 AND NOT EXISTS (SELECT 1 FROM replicas WHERE service = services.name)",
            )
            .execute(&mut **tx)
            .await?;
            out.changed = sqlx::query("DELETE FROM nodes WHERE id = ?")
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                > 0;
        }
        Command::CreateToken {
            id,
            role,
            secret_hash,
            expires_ms,
            at_ms,
        } => {
            sqlx::query(
                "INSERT INTO join_tokens (id, role, secret_hash, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(role)
            .bind(secret_hash)
            .bind(*at_ms as i64)
            .bind(expires_ms.map(|v| v as i64))
            .execute(&mut **tx)
            .await?;
            out.changed = true;
        }
        Command::RecordImage {
            tag,
            manifest_digest,
            origin,
            at_ms,
        } => {
            sqlx::query("DELETE FROM forgotten_images WHERE tag = ?")
                .bind(tag)
                .execute(&mut **tx)
                .await?;
            out.changed = sqlx::query(
                "INSERT INTO images (tag, manifest_digest, origin, at_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (tag) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                 origin = excluded.origin, at_ms = excluded.at_ms
                 WHERE manifest_digest != excluded.manifest_digest",
            )
            .bind(tag)
            .bind(manifest_digest)
            .bind(origin)
            .bind(*at_ms as i64)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                > 0;
        }
        Command::ForgetImage { tag, at_ms } => {
            // A tombstone with the digest the tag had, for masters that were down.
            out.changed = sqlx::query(
                "INSERT INTO forgotten_images (tag, manifest_digest, at_ms)
                 SELECT tag, manifest_digest, ? FROM images WHERE tag = ?
                 ON CONFLICT (tag) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                 at_ms = excluded.at_ms",
            )
            .bind(*at_ms as i64)
            .bind(tag)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                > 0;
            sqlx::query("DELETE FROM images WHERE tag = ?")
                .bind(tag)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "DELETE FROM forgotten_images WHERE tag NOT IN
                 (SELECT tag FROM forgotten_images ORDER BY at_ms DESC, tag LIMIT ?)",
            )
            .bind(KEPT_TOMBSTONES)
            .execute(&mut **tx)
            .await?;
        }
        Command::SetServiceCidr { cidr } => {
            out.changed = sqlx::query(
                "INSERT INTO settings (key, value) VALUES ('service_cidr', ?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(cidr.to_string())
            .execute(&mut **tx)
            .await?
            .rows_affected()
                > 0;
            // Services with ports from before virtual IPs get theirs.
            let rows = sqlx::query("SELECT spec FROM services WHERE vip IS NULL")
                .fetch_all(&mut **tx)
                .await?;
            for row in rows {
                let spec: ServiceSpec = serde_json::from_str(row.get("spec"))
                    .map_err(|e| corrupt("service spec", e))?;
                out.changed |= keep_vip(tx, &spec, None).await?;
            }
        }
        Command::PruneImages { at_ms } => {
            sqlx::query(
                "INSERT INTO image_prunes (id, requested, at_ms) VALUES (1, 1, ?)
                 ON CONFLICT (id) DO UPDATE SET requested = requested + 1, at_ms = excluded.at_ms",
            )
            .bind(*at_ms as i64)
            .execute(&mut **tx)
            .await?;
            out.changed = true;
        }
        Command::KeepRegistryLogin {
            registry,
            sealed,
            at_ms,
        } => {
            sqlx::query(
                "INSERT INTO registry_logins (registry, sealed, at_ms) VALUES (?, ?, ?)
                 ON CONFLICT (registry) DO UPDATE SET sealed = excluded.sealed, at_ms = excluded.at_ms",
            )
            .bind(registry)
            .bind(sealed)
            .bind(*at_ms as i64)
            .execute(&mut **tx)
            .await?;
            out.changed = true;
        }
        Command::StartJobRun {
            service,
            trigger,
            slot_ms,
            at_ms,
        } => return jobs::start_run(tx, service, *trigger, *slot_ms, *at_ms).await,
        Command::SkipJobSlots { service, slots, .. } => {
            out.changed = jobs::skip_slots(tx, service, slots).await?;
        }
        Command::FinishJobRun {
            service,
            run,
            state,
            exit_code,
            message,
            at_ms,
        } => {
            out.changed =
                jobs::finish_run(tx, service, *run, *state, *exit_code, message, *at_ms).await?;
        }
        Command::SetJobSuspended {
            service,
            suspended,
            at_ms,
        } => {
            out.changed = jobs::set_suspended(tx, service, *suspended, *at_ms).await?;
        }
        Command::RecordAudit { entry } => {
            let seq = sqlx::query(
                "INSERT INTO audit (at_ms, who, role, method, path, target, source, master, status)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(entry.at_ms as i64)
            .bind(&entry.who)
            .bind(&entry.role)
            .bind(&entry.method)
            .bind(&entry.path)
            .bind(&entry.target)
            .bind(&entry.source)
            .bind(&entry.master)
            .bind(entry.status as i64)
            .execute(&mut **tx)
            .await?
            .last_insert_rowid();
            sqlx::query("DELETE FROM audit WHERE seq <= ?")
                .bind(seq - dash_core::command::AUDIT_KEPT as i64)
                .execute(&mut **tx)
                .await?;
            out.changed = true;
        }
        Command::AddDataKey { id, sealed, at_ms } => {
            out.changed = secrets::add_data_key(tx, *id, sealed, *at_ms).await?;
        }
        Command::PutSecret {
            kind,
            name,
            sealed,
            size,
            create,
            at_ms,
        } => return secrets::put(tx, *kind, name, sealed, *size, *create, *at_ms).await,
        Command::RemoveSecret { kind, name } => {
            out.changed = secrets::remove(tx, *kind, name).await?;
        }
        Command::RotateDataKey {
            id,
            sealed_key,
            resealed,
            at_ms,
        } => out.changed = secrets::rotate(tx, *id, sealed_key, resealed, *at_ms).await?,
        Command::ForgetRegistryLogin { registry } => {
            out.changed = sqlx::query("DELETE FROM registry_logins WHERE registry = ?")
                .bind(registry)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                > 0;
        }
        Command::RevokeToken { id, at_ms } => {
            out.changed = sqlx::query(
                "UPDATE join_tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            )
            .bind(*at_ms as i64)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                > 0;
        }
    }
    Ok(out)
}

/// A replica gone for good (its node released it): its row deleted, where its logs are kept
/// remembered, its service removed with it if that was the last; whether there was such a row.
async fn delete_replica(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let gone = sqlx::query(
        "DELETE FROM replicas WHERE id = ? RETURNING service, node, version, created_ms",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(gone) = gone {
        let service: String = gone.get("service");
        // Its logs stay on its node for a while: remember where.
        sqlx::query(
            "INSERT OR REPLACE INTO removed_replicas
                 (id, service, node, version, created_ms, removed_ms)
                 VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&service)
        .bind(gone.get::<Option<String>, _>("node"))
        .bind(gone.get::<i64, _>("version"))
        .bind(gone.get::<i64, _>("created_ms"))
        .bind(at_ms as i64)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM removed_replicas WHERE service = ? AND id NOT IN
                 (SELECT id FROM removed_replicas WHERE service = ?
                  ORDER BY removed_ms DESC, id LIMIT ?)",
        )
        .bind(&service)
        .bind(&service)
        .bind(REMOVED_KEPT_PER_SERVICE)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM services WHERE name = ? AND removing = 1
                 AND NOT EXISTS (SELECT 1 FROM replicas WHERE service = ?)",
        )
        .bind(&service)
        .bind(&service)
        .execute(&mut **tx)
        .await?;
        // The last replica of an old version may free an old secret version.
        secrets::prune(tx).await?;
        return Ok(true);
    }
    Ok(false)
}

/// A replica's reported status written over its row; whether there was such a row.
async fn report_replica(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    status: &ReplicaStatus,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE replicas SET state = ?, ip = ?, restarts = ?, exit_code = ?, started_ms = ?, message = ?
         WHERE id = ?",
    )
    .bind(status.state.as_str())
    .bind(&status.ip)
    .bind(i64::from(status.restarts))
    .bind(status.exit_code)
    .bind(status.started_ms.map(|v| v as i64))
    .bind(&status.message)
    .bind(&status.id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

/// Records, in the applying transaction, the last entry applied: its index, and (when given)
/// its Raft log id and the membership it carried.
async fn record_applied(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    index: u64,
    log_id: Option<&str>,
    membership: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE applied SET log_index = ?, log_id = COALESCE(?, log_id),
         membership = COALESCE(?, membership) WHERE id = 1",
    )
    .bind(index as i64)
    .bind(log_id)
    .bind(membership)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How many versions of a service its history keeps at least (at most twice as many, besides
/// those a replica still runs): enough for `dash service rollback` and for looking back,
/// bounded however often it changes.
const KEPT_VERSIONS: i64 = 10;

/// How many tags that left the image index are remembered (for masters that were down).
pub const KEPT_TOMBSTONES: i64 = 1000;

async fn put_service(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    spec: &ServiceSpec,
    at_ms: u64,
) -> Result<Applied, StoreError> {
    let mut out = Applied::default();
    let json = serde_json::to_string(spec).map_err(|e| corrupt("service spec", e))?;
    let existing = sqlx::query("SELECT spec, version, removing, vip FROM services WHERE name = ?")
        .bind(spec.name.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    let vip: Option<String> = existing.as_ref().and_then(|r| r.get("vip"));
    // The spec it had (a job's schedule state depends on what changed).
    let old_spec: Option<ServiceSpec> = existing
        .as_ref()
        .and_then(|r| serde_json::from_str(r.get::<&str, _>("spec")).ok());
    let version = match existing {
        Some(row) => {
            if row.get::<i64, _>("removing") != 0 {
                return Err(Rejection::Conflict(format!(
                    "service {} is being removed; apply again once `dash service ls` no longer lists it",
                    spec.name
                )).into());
            }
            let old: ServiceSpec =
                serde_json::from_str(row.get("spec")).map_err(|e| corrupt("service spec", e))?;
            let version = row.get::<i64, _>("version") as u64;
            if old == *spec {
                out.version = Some(version);
                out.changed = keep_vip(tx, spec, vip.as_deref()).await?;
                return Ok(out);
            }
            // Only changes to what runs in the container make a new version.
            let version = if old.needs_replacement(spec) {
                let next = version + 1;
                keep_same_containers(tx, spec, next).await?;
                next
            } else {
                version
            };
            sqlx::query("UPDATE services SET spec = ?, version = ?, updated_ms = ? WHERE name = ?")
                .bind(&json)
                .bind(version as i64)
                .bind(at_ms as i64)
                .bind(spec.name.as_str())
                .execute(&mut **tx)
                .await?;
            version
        }
        None => {
            sqlx::query(
                "INSERT INTO services (name, spec, version, created_ms, updated_ms) VALUES (?, ?, 1, ?, ?)",
            )
            .bind(spec.name.as_str())
            .bind(&json)
            .bind(at_ms as i64)
            .bind(at_ms as i64)
            .execute(&mut **tx)
            .await?;
            1
        }
    };
    sqlx::query(
        "INSERT OR REPLACE INTO service_versions (name, version, spec, created_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(spec.name.as_str())
    .bind(version as i64)
    .bind(&json)
    .bind(at_ms as i64)
    .execute(&mut **tx)
    .await?;
    // The history is bounded: trimmed at every KEPT_VERSIONS-th version to the last
    // KEPT_VERSIONS (so it holds 10 to 19), keeping any version a replica still has.
    if version as i64 % KEPT_VERSIONS == 0 {
        sqlx::query(
            "DELETE FROM service_versions WHERE name = ?1 AND version <= ?2 \
             AND version NOT IN (SELECT version FROM replicas WHERE service = ?1)",
        )
        .bind(spec.name.as_str())
        .bind(version as i64 - KEPT_VERSIONS)
        .execute(&mut **tx)
        .await?;
    }
    keep_vip(tx, spec, vip.as_deref()).await?;
    if spec.is_job() {
        jobs::on_put(tx, old_spec.as_ref(), spec, at_ms).await?;
    }
    out.version = Some(version);
    out.changed = true;
    Ok(out)
}

/// A service with ports has a virtual IP (the lowest free one of the recorded range, kept
/// while it has ports); one without has none. Whether it changed. An exhausted range refuses
/// the command (nothing of it stays).
async fn keep_vip(
    tx: &mut sqlx::SqliteConnection,
    spec: &ServiceSpec,
    current: Option<&str>,
) -> Result<bool, StoreError> {
    let name = spec.name.as_str();
    let vip = match (spec.ports.is_empty(), current) {
        (true, None) | (false, Some(_)) => return Ok(false),
        (true, Some(_)) => None,
        (false, None) => {
            let pool = match sqlx::query_scalar::<_, String>(
                "SELECT value FROM settings WHERE key = 'service_cidr'",
            )
            .fetch_optional(&mut *tx)
            .await?
            {
                Some(text) => VipPool::parse(&text).map_err(|e| corrupt("service_cidr", e))?,
                None => VipPool::parse(VipPool::DEFAULT).map_err(|e| corrupt("service_cidr", e))?,
            };
            let used: HashSet<std::net::Ipv4Addr> =
                sqlx::query_scalar::<_, String>("SELECT vip FROM services WHERE vip IS NOT NULL")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .filter_map(|v| v.parse().ok())
                    .collect();
            let Some(ip) = pool.next_free(&used) else {
                return Err(Rejection::Exhausted(format!(
                    "service {name}: the service range {pool} has no free virtual IP ({} in use): \
                     start the masters with a wider --service-cidr, or remove services with ports",
                    used.len()
                ))
                .into());
            };
            Some(ip.to_string())
        }
    };
    sqlx::query("UPDATE services SET vip = ? WHERE name = ?")
        .bind(vip)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(true)
}

/// The state of node `id`; NotFound when there is none.
async fn node_state_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
) -> Result<NodeState, StoreError> {
    let state: String = sqlx::query_scalar("SELECT state FROM nodes WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Rejection::NotFound {
            what: "node".into(),
            name: id.to_string(),
        })?;
    NodeState::parse(&state).ok_or_else(|| corrupt("node state", &state))
}

/// Sets replica `id`'s desired state; whether it changed. A replica never placed has nothing
/// to stop: removed, it goes at once.
async fn set_desired(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    desired: DesiredState,
) -> Result<bool, StoreError> {
    let changed = sqlx::query("UPDATE replicas SET desired = ? WHERE id = ? AND desired != ?")
        .bind(desired.as_str())
        .bind(id)
        .bind(desired.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0;
    if desired == DesiredState::Remove {
        sqlx::query("DELETE FROM replicas WHERE id = ? AND node IS NULL")
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(changed)
}

/// Sets node `id`'s state; whether it changed.
async fn set_node_state(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    state: NodeState,
    at_ms: u64,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE nodes SET state = ?, last_seen_ms = MAX(last_seen_ms, ?) WHERE id = ? AND state != ?",
    )
    .bind(state.as_str())
    .bind(at_ms as i64)
    .bind(id)
    .bind(state.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

/// Records `node` (or updates it), refusing a subnet that is another node's.
async fn upsert_node(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    node: &NodeRecord,
    at_ms: u64,
) -> Result<(), StoreError> {
    let taken: Option<String> =
        sqlx::query_scalar("SELECT id FROM nodes WHERE subnet = ? AND id != ?")
            .bind(&node.subnet)
            .bind(&node.id)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(other) = taken {
        return Err(Rejection::Conflict(format!(
            "subnet {} of node {} is already node {other}'s; give this node a free one \
             (--subnet), or its own name (--node-name {other} if it replaces that node)",
            node.subnet, node.id
        ))
        .into());
    }
    let labels = serde_json::to_string(&node.labels).map_err(|e| corrupt("node labels", e))?;
    sqlx::query(
            "INSERT INTO nodes (id, address, role, state, labels, cpu_millis, memory_bytes, subnet, runtime, last_seen_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET address = excluded.address, role = excluded.role,
               state = excluded.state, labels = excluded.labels, cpu_millis = excluded.cpu_millis,
               memory_bytes = excluded.memory_bytes, subnet = excluded.subnet, runtime = excluded.runtime,
               last_seen_ms = excluded.last_seen_ms",
        )
        .bind(&node.id)
        .bind(&node.address)
        .bind(node.role.as_str())
        .bind(node.state.as_str())
        .bind(labels)
        .bind(i64::from(node.capacity.cpu_millis))
        .bind(node.capacity.memory_bytes as i64)
        .bind(&node.subnet)
        .bind(&node.runtime)
        .bind(at_ms as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A new `version` of `spec` is being written: live replicas of an older version whose
/// container is what `spec` asks for (a rollback brings back their spec, or an update returns
/// to it) are recorded at the new version. They are kept, not replaced, so they are current:
/// `dash service ls` must not call them "left" to update, and the rolling update must not
/// replace them.
async fn keep_same_containers(
    tx: &mut sqlx::SqliteConnection,
    spec: &ServiceSpec,
    version: u64,
) -> Result<(), StoreError> {
    let name = spec.name.as_str();
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT version FROM replicas WHERE service = ? AND version < ? AND desired = ?",
    )
    .bind(name)
    .bind(version as i64)
    .bind(DesiredState::Run.as_str())
    .fetch_all(&mut *tx)
    .await?;
    for v in versions {
        let old: Option<String> =
            sqlx::query_scalar("SELECT spec FROM service_versions WHERE name = ? AND version = ?")
                .bind(name)
                .bind(v)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else { continue };
        let old: ServiceSpec =
            serde_json::from_str(&old).map_err(|e| corrupt("service spec", e))?;
        if !old.needs_replacement(spec) {
            sqlx::query(
                "UPDATE replicas SET version = ? WHERE service = ? AND version = ? AND desired = ?",
            )
            .bind(version as i64)
            .bind(name)
            .bind(v)
            .bind(DesiredState::Run.as_str())
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

fn removed_row(row: &SqliteRow) -> RemovedReplica {
    RemovedReplica {
        id: row.get("id"),
        service: row.get("service"),
        node: row.get("node"),
        version: row.get::<i64, _>("version") as u64,
        created_ms: row.get::<i64, _>("created_ms") as u64,
        removed_ms: row.get::<i64, _>("removed_ms") as u64,
    }
}

fn replica_row(row: &SqliteRow) -> Result<ReplicaInfo, StoreError> {
    RawReplica {
        id: row.get("id"),
        service: row.get("service"),
        version: row.get("version"),
        node: row.get("node"),
        desired: row.get("desired"),
        state: row.get("state"),
        ip: row.get("ip"),
        restarts: row.get("restarts"),
        exit_code: row.get("exit_code"),
        created_ms: row.get("created_ms"),
        started_ms: row.get("started_ms"),
        message: row.get("message"),
        run: row.get("run"),
        start_at_ms: row.get("start_at_ms"),
    }
    .into_info()
}

/// A row of `replicas` as stored, from a statement's columns or, in this order, from the
/// JSON array SQLite builds of them.
#[derive(serde::Deserialize)]
struct RawReplica {
    id: String,
    service: String,
    version: i64,
    node: Option<String>,
    desired: String,
    state: String,
    ip: Option<String>,
    restarts: i64,
    exit_code: Option<i64>,
    created_ms: i64,
    started_ms: Option<i64>,
    message: String,
    run: Option<i64>,
    start_at_ms: Option<i64>,
}

impl RawReplica {
    fn into_info(self) -> Result<ReplicaInfo, StoreError> {
        Ok(ReplicaInfo {
            desired: match self.desired.as_str() {
                "run" => DesiredState::Run,
                "stop" => DesiredState::Stop,
                "remove" => DesiredState::Remove,
                other => return Err(corrupt("replica desired state", other)),
            },
            state: ReplicaState::parse(&self.state)
                .ok_or_else(|| corrupt("replica state", &self.state))?,
            id: self.id,
            service: self.service,
            version: self.version as u64,
            node: self.node,
            ip: self.ip,
            restarts: self.restarts as u32,
            exit_code: self.exit_code.map(|c| c as i32),
            created_ms: self.created_ms as u64,
            started_ms: self.started_ms.map(|v| v as u64),
            message: self.message,
            run: self.run.map(|v| v as u64),
            start_at_ms: self.start_at_ms.map(|v| v as u64),
        })
    }
}

fn node_row(row: &SqliteRow) -> Result<NodeRecord, StoreError> {
    let state: String = row.get("state");
    let role: String = row.get("role");
    Ok(NodeRecord {
        id: row.get("id"),
        address: row.get("address"),
        role: NodeRole::parse(&role).ok_or_else(|| corrupt("node role", &role))?,
        state: NodeState::parse(&state).ok_or_else(|| corrupt("node state", &state))?,
        labels: serde_json::from_str(row.get("labels")).map_err(|e| corrupt("node labels", e))?,
        capacity: Resources {
            cpu_millis: row.get::<i64, _>("cpu_millis") as u32,
            memory_bytes: row.get::<i64, _>("memory_bytes") as u64,
        },
        subnet: row.get("subnet"),
        runtime: row.get("runtime"),
    })
}

mod jobs;
mod secrets;

pub use jobs::{JobRow, RunRow};
#[cfg(test)]
mod tests;

fn token_row(row: &SqliteRow) -> (TokenInfo, String) {
    (
        TokenInfo {
            id: row.get("id"),
            role: row.get("role"),
            created_ms: row.get::<i64, _>("created_ms") as u64,
            expires_ms: row.get::<Option<i64>, _>("expires_ms").map(|v| v as u64),
            revoked_ms: row.get::<Option<i64>, _>("revoked_ms").map(|v| v as u64),
        },
        row.get("secret_hash"),
    )
}
