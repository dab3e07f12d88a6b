//! persistence: Dash's state in SQLite, through sqlx.
//!
//! One file under the data dir (`dash.db`), WAL mode, foreign keys on, migrations embedded in
//! the binary. The master's state is read through [`MasterStore`] and changes only through
//! [`StateMachine::apply_at`]: one log entry (a [`Command`](dash_core::command::Command)) to one
//! transaction that also records the entry's index, so that a Raft log sits in front of it. The worker's record of its local replicas
//! ([`WorkerStore`]) shares the file on a single node.

mod error;
mod master;
mod worker;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use error::StoreError;
pub use master::{Applied, MasterStore, Rejection, RemovedReplica, ServiceRow, StateMachine};
pub use worker::{LocalReplica, WorkerStore};

/// An open database: the pool and the one write lock that every store shares.
///
/// SQLite has one writer. A deferred transaction that reads and then writes fails with
/// SQLITE_BUSY_SNAPSHOT (517) instead of waiting when another connection committed in between,
/// so writers queue on this lock rather than on SQLite's.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: SqlitePool,
    pub(crate) write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Opens (creating if needed) the database at `path` and runs the migrations.
pub async fn open(path: &Path) -> Result<Db, StoreError> {
    let url = format!("sqlite://{}", path.display());
    let opts = SqliteConnectOptions::from_str(&url)
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        // Each open connection keeps its page cache (up to 2 MiB) and prepared statements: a
        // burst of work (hundreds of replicas) leaves them all grown. Closed after 30 s idle,
        // the daemon's memory comes back down; reopening one costs about a millisecond.
        .idle_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: e,
        })?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(Db {
        pool,
        write: Default::default(),
    })
}
