//! The worker's own record: the replicas it runs and the addresses it handed out, so that a
//! restarted daemon re-adopts running containers instead of starting them again.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use dash_core::ServiceSpec;
use sqlx::{Row, SqlitePool};

use crate::error::{StoreError, corrupt};

/// A replica this node runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReplica {
    pub id: String,
    pub service: String,
    pub version: u64,
    pub spec: ServiceSpec,
    pub ip: Option<Ipv4Addr>,
    pub restarts: u32,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
}

#[derive(Clone)]
pub struct WorkerStore {
    pool: SqlitePool,
    /// SQLite has one writer; a deferred transaction that later writes can fail with
    /// SQLITE_BUSY instead of waiting, so writers queue here.
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl WorkerStore {
    pub fn new(db: crate::Db) -> Self {
        Self {
            pool: db.pool,
            write: db.write,
        }
    }

    pub async fn put(&self, r: &LocalReplica) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        let spec = serde_json::to_string(&r.spec).map_err(|e| corrupt("service spec", e))?;
        sqlx::query(
            "INSERT INTO local_replicas (id, service, version, spec, ip, restarts, created_ms, started_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET ip = excluded.ip, restarts = excluded.restarts,
               started_ms = excluded.started_ms",
        )
        .bind(&r.id)
        .bind(&r.service)
        .bind(r.version as i64)
        .bind(spec)
        .bind(r.ip.map(|ip| ip.to_string()))
        .bind(i64::from(r.restarts))
        .bind(r.created_ms as i64)
        .bind(r.started_ms.map(|v| v as i64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_restarts(
        &self,
        id: &str,
        restarts: u32,
        started_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE local_replicas SET restarts = ?, started_ms = ? WHERE id = ?")
            .bind(i64::from(restarts))
            .bind(started_ms.map(|v| v as i64))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a replica and frees its address, in one transaction.
    pub async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM local_replicas WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM ip_allocations WHERE replica = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM userns_slots WHERE replica = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The first host id of the replica's user namespace range ([`USERNS_SIZE`] ids): the
    /// one it has, else the lowest free slot's. Two replicas never share a range.
    pub async fn allocate_userns(&self, replica: &str) -> Result<u32, StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let mine: Option<i64> =
            sqlx::query_scalar("SELECT slot FROM userns_slots WHERE replica = ?")
                .bind(replica)
                .fetch_optional(&mut *tx)
                .await?;
        let slot = match mine {
            Some(slot) => slot as u32,
            None => {
                let used: BTreeSet<u32> =
                    sqlx::query_scalar::<_, i64>("SELECT slot FROM userns_slots")
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .map(|s| s as u32)
                        .collect();
                let slot = (0..USERNS_SLOTS)
                    .find(|s| !used.contains(s))
                    .ok_or(StoreError::UsernsFull)?;
                sqlx::query("INSERT INTO userns_slots (slot, replica) VALUES (?, ?)")
                    .bind(i64::from(slot))
                    .bind(replica)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                slot
            }
        };
        Ok(USERNS_BASE + slot * USERNS_SIZE)
    }

    pub async fn list(&self) -> Result<Vec<LocalReplica>, StoreError> {
        let rows = sqlx::query("SELECT * FROM local_replicas ORDER BY created_ms, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let ip: Option<String> = row.get("ip");
                Ok(LocalReplica {
                    id: row.get("id"),
                    service: row.get("service"),
                    version: row.get::<i64, _>("version") as u64,
                    spec: serde_json::from_str(row.get("spec"))
                        .map_err(|e| corrupt("service spec", e))?,
                    ip: ip
                        .map(|s| s.parse().map_err(|e| corrupt("replica ip", e)))
                        .transpose()?,
                    restarts: row.get::<i64, _>("restarts") as u32,
                    created_ms: row.get::<i64, _>("created_ms") as u64,
                    started_ms: row.get::<Option<i64>, _>("started_ms").map(|v| v as u64),
                })
            })
            .collect()
    }

    /// Gives up the replica's address (its container exited for good and is kept only for its
    /// logs: a job's finished attempt): another replica may get it.
    pub async fn release_ip(&self, replica: &str) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ip_allocations WHERE replica = ?")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE local_replicas SET ip = NULL WHERE id = ?")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The replica's address in `network/prefix`: the one it already has, else the lowest free
    /// host address above the gateway (`.1`).
    pub async fn allocate_ip(
        &self,
        replica: &str,
        network: Ipv4Addr,
        prefix: u8,
    ) -> Result<Ipv4Addr, StoreError> {
        let _writer = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let mine: Option<String> =
            sqlx::query_scalar("SELECT ip FROM ip_allocations WHERE replica = ?")
                .bind(replica)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(ip) = mine {
            return ip.parse().map_err(|e| corrupt("allocated ip", e));
        }
        let used: BTreeSet<Ipv4Addr> = sqlx::query("SELECT ip FROM ip_allocations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .filter_map(|r| r.get::<String, _>("ip").parse().ok())
            .collect();
        let ip = lowest_free(network, prefix, &used).ok_or_else(|| StoreError::SubnetFull {
            subnet: format!("{network}/{prefix}"),
        })?;
        sqlx::query("INSERT INTO ip_allocations (ip, replica) VALUES (?, ?)")
            .bind(ip.to_string())
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ip)
    }
}

/// Where the replicas' user namespace ranges start on the host: 2^30, far above the ids of
/// users and of `/etc/subuid` ranges (which start at 100,000 by default).
pub const USERNS_BASE: u32 = 1 << 30;
/// Host ids per replica: the 16-bit range of uids an image expects.
pub const USERNS_SIZE: u32 = 65_536;
/// Slots: up to 2^31 - 1 on the host.
pub const USERNS_SLOTS: u32 = 16_383;

/// The lowest host address of `network/prefix` above the gateway (`.1`) not in `used`.
pub fn lowest_free(network: Ipv4Addr, prefix: u8, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    if !(8..=30).contains(&prefix) {
        return None;
    }
    let base = u32::from(network) & (u32::MAX << (32 - prefix));
    let size = 1u32 << (32 - prefix);
    (2..size - 1)
        .map(|i| Ipv4Addr::from(base + i))
        .find(|ip| !used.contains(ip))
}
