//! persistence: Dash's state in SQLite, through sqlx.
//!
//! Two files under the data dir, WAL mode, foreign keys on, migrations embedded in the binary:
//! `dash.db`, the master's state (on masters), and `node.db`, a node's own records
//! ([`WorkerStore`]: its containers and addresses; on every node). They are apart because the
//! master's state is replicated and replaced whole by a snapshot, and a node's records are its
//! own. The master's state is read through [`MasterStore`] and changes only through
//! [`StateMachine::apply_at`]: one log entry (a [`Command`](dash_core::command::Command)) to one
//! transaction that also records the entry's index, so that a Raft log sits in front of it.

pub mod data_dir;
mod error;
mod master;
mod raft_log;
mod worker;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use error::StoreError;
pub use master::{
    Applied, JobRow, LogEntry, MasterStore, Rejection, RemovedReplica, RunRow, ServiceRow,
    StateMachine,
};
pub use raft_log::{RaftLogDb, open_raft_log};
pub use worker::{LocalReplica, USERNS_BASE, USERNS_SIZE, WorkerStore};

/// An open database: the pool and the one write lock that every store shares.
///
/// SQLite has one writer. A deferred transaction that reads and then writes fails with
/// SQLITE_BUSY_SNAPSHOT (517) instead of waiting when another connection committed in between,
/// so writers queue on this lock rather than on SQLite's.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: SqlitePool,
    pub(crate) write: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Every replica as last read, shared by every reader of this state (see
    /// `MasterStore::all_replicas`).
    pub(crate) reads: std::sync::Arc<master::SharedReads>,
}

impl Db {
    /// Closes every connection (a file about to be moved or removed).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Opens (creating if needed) the master's state at `path` (`<data>/dash.db`) and runs its
/// migrations.
pub async fn open(path: &Path) -> Result<Db, StoreError> {
    let pool = connect(path).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(Db {
        pool,
        write: Default::default(),
        reads: Default::default(),
    })
}

/// Opens a master's state that came from elsewhere (a backup being restored) and makes it the
/// state of a new cluster: it must already be a Dash master state (its tables present: a
/// foreign SQLite file is refused, not migrated into one), its migrations are brought up to
/// this version, and its record of the Raft log it was replicated with is dropped (the entries'
/// index stays, the log id and membership go), so that the next start makes a one-member
/// cluster of it, as for a state from before Raft.
pub async fn adopt_master_state(path: &Path) -> Result<Db, StoreError> {
    if !path.is_file() {
        return Err(StoreError::NotAState {
            path: path.into(),
            problem: "is missing".into(),
        });
    }
    let pool = connect(path).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('applied', 'services', 'nodes', '_sqlx_migrations')",
    )
    .fetch_one(&pool)
    .await
    .map_err(|e| StoreError::NotAState {
        path: path.into(),
        problem: format!("is not an SQLite database ({e})"),
    })?;
    if tables != 4 {
        pool.close().await;
        return Err(StoreError::NotAState {
            path: path.into(),
            problem: "is not a Dash master's state (its tables are missing)".into(),
        });
    }
    sqlx::migrate!("./migrations").run(&pool).await?;
    sqlx::query(
        "UPDATE applied SET log_index = MAX(log_index, 1), log_id = NULL, membership = NULL WHERE id = 1",
    )
    .execute(&pool)
    .await?;
    Ok(Db {
        pool,
        write: Default::default(),
        reads: Default::default(),
    })
}

/// Opens (creating if needed) a node's own records at `path` (`<data>/node.db`) and runs their
/// migrations. Until it has been done once, the records a data dir's `legacy` dash.db holds
/// (versions before node.db kept them there) are copied over first, in one transaction that
/// also records that it was done, so that the replicas running on the node are adopted after
/// the upgrade, not restarted; an interrupted copy is done again at the next start.
pub async fn open_node(path: &Path, legacy: &Path) -> Result<Db, StoreError> {
    let pool = connect(path).await?;
    sqlx::migrate!("./migrations_node").run(&pool).await?;
    let checked: Option<String> =
        sqlx::query_scalar("SELECT value FROM node_meta WHERE key = 'legacy_checked'")
            .fetch_optional(&pool)
            .await?;
    if checked.is_none() {
        copy_legacy_records(&pool, legacy).await?;
    }
    Ok(Db {
        pool,
        write: Default::default(),
        reads: Default::default(),
    })
}

/// Copies `local_replicas` and `ip_allocations` from `legacy` (if it exists and has them) into
/// `pool`'s database and marks it done, in one transaction. On a connection of its own (out
/// of the pool: it has `legacy` attached), then emptied in `legacy` (best effort: they are
/// read only from node.db from now on).
async fn copy_legacy_records(pool: &SqlitePool, legacy: &Path) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?.detach();
    let attached = legacy.exists();
    if attached {
        sqlx::query("ATTACH DATABASE ? AS legacy")
            .bind(legacy.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await?;
    }
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    let has: i64 = if attached {
        sqlx::query_scalar(
            "SELECT count(*) FROM legacy.sqlite_master WHERE type = 'table' AND name IN ('local_replicas', 'ip_allocations')",
        )
        .fetch_one(&mut *tx)
        .await?
    } else {
        0
    };
    if has == 2 {
        sqlx::query("INSERT INTO local_replicas SELECT id, service, version, spec, ip, restarts, created_ms, started_ms FROM legacy.local_replicas")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO ip_allocations SELECT ip, replica FROM legacy.ip_allocations")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO node_meta (key, value) VALUES ('legacy_checked', '1')")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if has == 2 {
        for table in ["local_replicas", "ip_allocations"] {
            if let Err(e) = sqlx::query(&format!("DELETE FROM legacy.{table}"))
                .execute(&mut conn)
                .await
            {
                tracing::warn!(table, error = %e, "emptying the copied records in dash.db");
            }
        }
    }
    Ok(())
}

/// A pool on the SQLite file at `path` (created if missing): WAL, foreign keys, a 5 s busy
/// timeout.
async fn connect(path: &Path) -> Result<SqlitePool, StoreError> {
    connect_with(path, SqliteSynchronous::Normal).await
}

/// [`connect`] with another `synchronous` setting (`Full` for the Raft log: on disk at commit).
async fn connect_with(
    path: &Path,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, StoreError> {
    let url = format!("sqlite://{}", path.display());
    let opts = SqliteConnectOptions::from_str(&url)
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        // Point reads (a heartbeat, a report's replica) must not queue behind the full reads
        // of a large state (the reconciler's, the assignment feed's), which hold a connection
        // for tens of milliseconds each.
        .max_connections(8)
        // Each open connection keeps its page cache (up to 2 MiB), its prepared statements and
        // a thread of its own: a burst of work (hundreds of replicas) leaves them all open and
        // grown. Closed after 30 s idle, or 60 s after they were opened: sqlx hands idle
        // connections out first in, first out, so on a daemon that writes every second (node
        // beats) each of them is used again long before it has been idle 30 s, and only the
        // lifetime closes them. A connection is reopened when one is needed and none is idle
        // (about a millisecond), so the pool shrinks back to what the load needs: measured
        // with bench/leak.sh, 17 connections were still open a minute after a burst.
        .idle_timeout(Duration::from_secs(30))
        .max_lifetime(Duration::from_secs(60))
        // A file on this host, not a server across a network: sqlx's ping before every
        // acquire was one more round trip to the connection's thread per statement.
        .test_before_acquire(false)
        .connect_with(opts)
        .await
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        })
}
