//! Secrets and configs in the state: their transitions (`Command::PutSecret`, `RemoveSecret`,
//! `AddDataKey`, `RotateDataKey`) and reads. Values are sealed by the masters before they are
//! proposed; the state only keeps, counts and drops them.
//!
//! Versions: each update adds one and moves every service that lists the secret to it (a new
//! version of the service: its replicas are replaced by its update policy). An older version
//! is kept while a replica of a service version that lists it exists, and dropped after
//! ([`prune`], run when a replica or a version goes).

use std::collections::HashSet;

use dash_core::ServiceSpec;
use dash_core::api::{SecretInfo, SecretUse};
use dash_core::command::Resealed;
use dash_core::secret::Kind;
use sqlx::Row;

use super::{Applied, MasterStore, Rejection, StoreError, corrupt, put_service};

type Tx<'a, 'b> = &'a mut sqlx::Transaction<'b, sqlx::Sqlite>;

/// The (kind, name, version) of every file `spec` lists.
fn refs(spec: &ServiceSpec) -> impl Iterator<Item = (Kind, &str, u64)> {
    let secrets = spec.secrets.iter().map(|r| (Kind::Secret, r));
    let configs = spec.configs.iter().map(|r| (Kind::Config, r));
    secrets
        .chain(configs)
        .map(|(k, r)| (k, r.name.as_str(), r.version))
}

fn lists(spec: &ServiceSpec, kind: Kind, name: &str) -> bool {
    refs(spec).any(|(k, n, _)| k == kind && n == name)
}

pub(super) async fn add_data_key(
    tx: Tx<'_, '_>,
    id: u64,
    sealed: &str,
    at_ms: u64,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO data_keys (id, sealed, created_ms) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id as i64)
    .bind(sealed)
    .bind(at_ms as i64)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0)
}

/// A new version of secret (config) `name`; an update moves the services that list it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn put(
    tx: Tx<'_, '_>,
    kind: Kind,
    name: &str,
    sealed: &str,
    size: u64,
    create: bool,
    at_ms: u64,
) -> Result<Applied, StoreError> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM secrets WHERE kind = ? AND name = ?")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let k = kind.as_str();
    match (current, create) {
        (Some(_), true) => {
            return Err(Rejection::Conflict(format!(
                "{k} {name} exists; `dash {k} update {name} -f FILE` makes a new version of it"
            ))
            .into());
        }
        (None, false) => {
            return Err(Rejection::NotFound {
                what: k.into(),
                name: name.to_string(),
            }
            .into());
        }
        _ => {}
    }
    let version = current.unwrap_or(0) as u64 + 1;
    sqlx::query(
        "INSERT INTO secret_versions (kind, name, version, sealed, size, created_ms)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(k)
    .bind(name)
    .bind(version as i64)
    .bind(sealed)
    .bind(size as i64)
    .bind(at_ms as i64)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO secrets (kind, name, version, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version,
         updated_ms = excluded.updated_ms",
    )
    .bind(k)
    .bind(name)
    .bind(version as i64)
    .bind(at_ms as i64)
    .bind(at_ms as i64)
    .execute(&mut **tx)
    .await?;
    if !create {
        // Every service that lists it gets the new version (in the same entry: a failover
        // leaves no service behind).
        let rows = sqlx::query("SELECT spec FROM services WHERE removing = 0 ORDER BY name")
            .fetch_all(&mut **tx)
            .await?;
        for row in rows {
            let mut spec: ServiceSpec =
                serde_json::from_str(row.get("spec")).map_err(|e| corrupt("service spec", e))?;
            if !lists(&spec, kind, name) {
                continue;
            }
            let list = match kind {
                Kind::Secret => &mut spec.secrets,
                Kind::Config => &mut spec.configs,
            };
            for r in list.iter_mut().filter(|r| r.name == name) {
                r.version = version;
            }
            put_service(tx, &spec, at_ms).await?;
        }
        prune(tx).await?;
    }
    Ok(Applied {
        version: Some(version),
        changed: true,
        ..Applied::default()
    })
}

/// Removes secret (config) `name` and every version of it; refused while a service lists it.
pub(super) async fn remove(tx: Tx<'_, '_>, kind: Kind, name: &str) -> Result<bool, StoreError> {
    let k = kind.as_str();
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT version FROM secrets WHERE kind = ? AND name = ?")
            .bind(k)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    if exists.is_none() {
        return Err(Rejection::NotFound {
            what: k.into(),
            name: name.to_string(),
        }
        .into());
    }
    let rows = sqlx::query("SELECT name, spec FROM services WHERE removing = 0 ORDER BY name")
        .fetch_all(&mut **tx)
        .await?;
    let mut users = Vec::new();
    for row in rows {
        let spec: ServiceSpec =
            serde_json::from_str(row.get("spec")).map_err(|e| corrupt("service spec", e))?;
        if lists(&spec, kind, name) {
            users.push(row.get::<String, _>("name"));
        }
    }
    if !users.is_empty() {
        return Err(Rejection::Conflict(format!(
            "{k} {name} is used by {} {}; take it out of their [[{}]] and apply them first",
            if users.len() == 1 {
                "service"
            } else {
                "services"
            },
            users.join(", "),
            kind.plural()
        ))
        .into());
    }
    for table in ["secret_versions", "secrets"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE kind = ? AND name = ?"))
            .bind(k)
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}

/// Data key `id` replaces every other; each kept version gets its value sealed with it. The
/// rotation must cover every kept version (else the state changed meanwhile: refused, and the
/// master that rotates tries again).
pub(super) async fn rotate(
    tx: Tx<'_, '_>,
    id: u64,
    sealed_key: &str,
    resealed: &[Resealed],
    at_ms: u64,
) -> Result<bool, StoreError> {
    let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM data_keys")
        .fetch_one(&mut **tx)
        .await?;
    if max.is_some_and(|m| m as u64 >= id) {
        return Err(Rejection::Conflict(format!(
            "data key {id} is not newer than the current one ({}); rotate again",
            max.unwrap_or(0)
        ))
        .into());
    }
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_versions")
        .fetch_one(&mut **tx)
        .await?;
    let mut done = 0;
    for r in resealed {
        done += sqlx::query(
            "UPDATE secret_versions SET sealed = ? WHERE kind = ? AND name = ? AND version = ?",
        )
        .bind(&r.sealed)
        .bind(r.kind.as_str())
        .bind(&r.name)
        .bind(r.version as i64)
        .execute(&mut **tx)
        .await?
        .rows_affected() as i64;
    }
    if done != kept {
        return Err(Rejection::Conflict(format!(
            "secrets changed during the key rotation ({done} of {kept} values sealed again); \
             rotate again"
        ))
        .into());
    }
    sqlx::query("INSERT INTO data_keys (id, sealed, created_ms) VALUES (?, ?, ?)")
        .bind(id as i64)
        .bind(sealed_key)
        .bind(at_ms as i64)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM data_keys WHERE id != ?")
        .bind(id as i64)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Drops the older versions no service lists and no replica's version uses. Cheap when there
/// is none (the common case: a single query).
pub(super) async fn prune(tx: Tx<'_, '_>) -> Result<(), StoreError> {
    let old = sqlx::query(
        "SELECT v.kind, v.name, v.version FROM secret_versions v
         JOIN secrets s ON s.kind = v.kind AND s.name = v.name WHERE v.version < s.version",
    )
    .fetch_all(&mut **tx)
    .await?;
    if old.is_empty() {
        return Ok(());
    }
    let mut used: HashSet<(String, String, u64)> = HashSet::new();
    let current = sqlx::query("SELECT spec FROM services")
        .fetch_all(&mut **tx)
        .await?;
    let running = sqlx::query(
        "SELECT DISTINCT v.spec FROM replicas r
         JOIN service_versions v ON v.name = r.service AND v.version = r.version",
    )
    .fetch_all(&mut **tx)
    .await?;
    for row in current.iter().chain(running.iter()) {
        let spec: ServiceSpec =
            serde_json::from_str(row.get("spec")).map_err(|e| corrupt("service spec", e))?;
        used.extend(refs(&spec).map(|(k, n, v)| (k.as_str().to_string(), n.to_string(), v)));
    }
    for row in old {
        let key: (String, String, u64) = (
            row.get("kind"),
            row.get("name"),
            row.get::<i64, _>("version") as u64,
        );
        if !used.contains(&key) {
            sqlx::query("DELETE FROM secret_versions WHERE kind = ? AND name = ? AND version = ?")
                .bind(&key.0)
                .bind(&key.1)
                .bind(key.2 as i64)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

impl MasterStore {
    /// Every secret (config), by name.
    pub async fn secrets(&self, kind: Kind) -> Result<Vec<SecretInfo>, StoreError> {
        self.secret_infos(kind, None).await
    }

    /// Secret (config) `name`.
    pub async fn secret(&self, kind: Kind, name: &str) -> Result<Option<SecretInfo>, StoreError> {
        Ok(self.secret_infos(kind, Some(name)).await?.pop())
    }

    async fn secret_infos(
        &self,
        kind: Kind,
        only: Option<&str>,
    ) -> Result<Vec<SecretInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.name, s.version, s.created_ms, s.updated_ms, v.size FROM secrets s
             JOIN secret_versions v ON v.kind = s.kind AND v.name = s.name AND v.version = s.version
             WHERE s.kind = ?1 AND (?2 IS NULL OR s.name = ?2) ORDER BY s.name",
        )
        .bind(kind.as_str())
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let versions = sqlx::query(
            "SELECT name, version FROM secret_versions WHERE kind = ? ORDER BY name, version",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        let services = sqlx::query("SELECT name, spec FROM services ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut specs = Vec::new();
        for s in &services {
            specs.push(self.spec_of(s.get("name"), s.get("spec"))?);
        }
        Ok(rows
            .iter()
            .map(|row| {
                let name: String = row.get("name");
                SecretInfo {
                    kind,
                    version: row.get::<i64, _>("version") as u64,
                    size_bytes: row.get::<i64, _>("size") as u64,
                    created_ms: row.get::<i64, _>("created_ms") as u64,
                    updated_ms: row.get::<i64, _>("updated_ms") as u64,
                    versions: versions
                        .iter()
                        .filter(|v| v.get::<String, _>("name") == name)
                        .map(|v| v.get::<i64, _>("version") as u64)
                        .collect(),
                    services: specs
                        .iter()
                        .filter_map(|spec| {
                            refs(spec).find(|(k, n, _)| *k == kind && *n == name).map(
                                |(_, _, v)| SecretUse {
                                    service: spec.name.to_string(),
                                    version: v,
                                },
                            )
                        })
                        .collect(),
                    name,
                }
            })
            .collect())
    }

    /// The sealed value of a version of secret (config) `name`.
    pub async fn secret_sealed(
        &self,
        kind: Kind,
        name: &str,
        version: u64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT sealed FROM secret_versions WHERE kind = ? AND name = ? AND version = ?",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(version as i64)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every kept version's sealed value: (kind, name, version, sealed).
    pub async fn secret_versions(&self) -> Result<Vec<Resealed>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, name, version, sealed FROM secret_versions ORDER BY kind, name, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get("kind");
                Ok(Resealed {
                    kind: Kind::parse(&kind).ok_or_else(|| corrupt("secret kind", &kind))?,
                    name: r.get("name"),
                    version: r.get::<i64, _>("version") as u64,
                    sealed: r.get("sealed"),
                })
            })
            .collect()
    }

    /// The data keys (id, sealed with the CA-derived key), newest last.
    pub async fn data_keys(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, sealed FROM data_keys ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>("id") as u64, r.get("sealed")))
            .collect())
    }
}
