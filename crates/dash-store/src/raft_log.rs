//! The masters' Raft log on disk (`<data>/raft.db`): entries by index and a few values kept
//! beside them, as opaque text (dash-master's openraft adapter writes them as JSON). A file of
//! its own, with `synchronous = FULL`: an append or a vote is on disk when the call returns.
//!
//! Every write is one transaction, so an append of many entries costs one fsync (the group
//! commit the adapter builds on); writes are serialised by one lock, as Raft requires.

use std::path::Path;

use sqlx::{Row, SqlitePool};

use crate::error::StoreError;

/// The Raft log's file.
#[derive(Clone)]
pub struct RaftLogDb {
    pool: SqlitePool,
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Opens (creating if needed) the Raft log at `path` and runs its migrations.
pub async fn open_raft_log(path: &Path) -> Result<RaftLogDb, StoreError> {
    let pool = crate::connect_with(path, sqlx::sqlite::SqliteSynchronous::Full).await?;
    sqlx::migrate!("./migrations_raft").run(&pool).await?;
    Ok(RaftLogDb {
        pool,
        write: Default::default(),
    })
}

impl RaftLogDb {
    /// Appends (or overwrites) `entries` (index, text) in one transaction.
    pub async fn append(&self, entries: &[(u64, String)]) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        for (index, entry) in entries {
            sqlx::query("INSERT OR REPLACE INTO log (idx, entry) VALUES (?, ?)")
                .bind(*index as i64)
                .bind(entry)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The entries with `from <= index < to`, in order.
    pub async fn range(&self, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT entry FROM log WHERE idx >= ? AND idx < ? ORDER BY idx")
            .bind(from.min(i64::MAX as u64) as i64)
            .bind(to.min(i64::MAX as u64) as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get("entry")).collect())
    }

    /// The last entry, if any.
    pub async fn last(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT entry FROM log ORDER BY idx DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Removes the entries from `index` on (a conflicting suffix).
    pub async fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        sqlx::query("DELETE FROM log WHERE idx >= ?")
            .bind(index.min(i64::MAX as u64) as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the entries up to `index` and records `purged` (the last purged id) in one
    /// transaction.
    pub async fn purge_to(&self, index: u64, purged: &str) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM log WHERE idx <= ?")
            .bind(index.min(i64::MAX as u64) as i64)
            .execute(&mut *tx)
            .await?;
        set_meta(&mut tx, "last_purged", purged).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A value kept beside the log (`vote`, `committed`, `last_purged`).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Sets a value kept beside the log; on disk when this returns.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        set_meta(&mut tx, key, value).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn set_meta(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
