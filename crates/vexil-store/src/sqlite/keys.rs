//! [`KeyStore`] on the `api_keys` table. Secrets are generated and hashed by
//! [`crate::secret`], shared with every backend.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::audit::append;
use super::codec::Time;
use super::SqliteStore;
use crate::change::key_audit_record;
use crate::secret::{environments_column, environments_from_column};
use crate::secret::{new_key, secret_hash};
use crate::{ApiKey, ChangeMeta, EntityKind, KeyGrant, KeyKind, KeyStore, StoreError, Timestamp};

const SELECT: &str = "SELECT id, kind, name, created_at, revoked_at, environment, role, environments FROM api_keys";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        created_at: row.get::<_, Time>(3)?.0,
        revoked_at: row.get::<_, Option<Time>>(4)?.map(|t| t.0),
        environment: row.get(5)?,
        role: row.get::<_, Option<String>>(6)?.map(|r| r.parse()).transpose().map_err(|e: crate::UnknownName| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, e.into())
        })?,
        environments: environments_from_column(row.get(7)?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into()))?,
    })
}

fn audit(
    conn: &Connection,
    meta: &ChangeMeta,
    now: Timestamp,
    action: &str,
    before: Option<&ApiKey>,
    after: &ApiKey,
) -> Result<(), StoreError> {
    append(conn, now, &key_audit_record(meta, action, before, after))?;
    Ok(())
}

#[async_trait::async_trait]
impl KeyStore for SqliteStore {
    /// Stores a new key with the hash of `secret`, audited in the same transaction.
    async fn import_key(
        &self,
        kind: KeyKind,
        name: &str,
        grant: &KeyGrant,
        secret: &str,
        meta: &ChangeMeta,
    ) -> Result<ApiKey, StoreError> {
        let (key, hash) = new_key(kind, name, grant, secret);
        let now = key.created_at;
        let meta = meta.clone();
        self.write(move |tx| {
            let existing: Option<String> = tx
                .query_row("SELECT id FROM api_keys WHERE secret_sha256 = ?1", [&hash[..]], |row| row.get(0))
                .optional()?;
            if let Some(id) = existing {
                return Err(StoreError::AlreadyExists { kind: EntityKind::Key, key: id });
            }
            tx.execute(
                "INSERT INTO api_keys (id, kind, name, secret_sha256, created_at, environment, role, environments)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key.id,
                    key.kind,
                    key.name,
                    &hash[..],
                    Time(now),
                    key.environment,
                    key.role.map(|r| r.as_str()),
                    environments_column(&key.environments),
                ],
            )?;
            audit(tx, &meta, now, "create", None, &key)?;
            Ok(key)
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.read(|conn| {
            let keys = conn
                .prepare_cached(&format!("{SELECT} ORDER BY created_at, id"))?
                .query_map([], from_row)?
                .collect::<Result<_, _>>()?;
            Ok(keys)
        })
        .await
    }

    async fn revoke_key(&self, id: &str, meta: &ChangeMeta) -> Result<ApiKey, StoreError> {
        let id = id.to_owned();
        let meta = meta.clone();
        self.write(move |tx| {
            let current = tx
                .query_row(&format!("{SELECT} WHERE id = ?1"), [&id], from_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound { kind: EntityKind::Key, key: id.clone() })?;
            if current.revoked_at.is_some() {
                return Ok(current);
            }
            if current.kind == KeyKind::Admin {
                let other_admins: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM api_keys WHERE kind = 'admin' AND revoked_at IS NULL AND id <> ?1",
                    [&id],
                    |row| row.get(0),
                )?;
                if other_admins == 0 {
                    return Err(StoreError::LastAdminKey { id: id.clone() });
                }
            }
            let now = crate::now();
            tx.execute("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1", params![id, Time(now)])?;
            let revoked = ApiKey { revoked_at: Some(now), ..current.clone() };
            audit(tx, &meta, now, "revoke", Some(&current), &revoked)?;
            Ok(revoked)
        })
        .await
    }

    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = secret_hash(secret);
        self.read(move |conn| {
            let key = conn
                .prepare_cached(&format!("{SELECT} WHERE secret_sha256 = ?1 AND revoked_at IS NULL"))?
                .query_row([&hash[..]], from_row)
                .optional()?;
            Ok(key)
        })
        .await
    }

    async fn has_keys(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            let any = conn.query_row("SELECT EXISTS (SELECT 1 FROM api_keys)", [], |row| row.get(0))?;
            Ok(any)
        })
        .await
    }
}
