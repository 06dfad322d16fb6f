//! [`KeyStore`] on the `api_keys` table. Secrets are generated and hashed by
//! [`crate::secret`], shared with every backend, so keys move between backends intact.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::audit::append;
use super::PostgresStore;
use crate::change::key_audit_record;
use crate::secret::{environments_column, environments_from_column, new_key, secret_hash};
use crate::{ApiKey, ChangeMeta, EntityKind, KeyGrant, KeyKind, KeyStore, StoreError};

const SELECT: &str = "SELECT id, kind, name, created_at, revoked_at, environment, role, environments FROM api_keys";

fn from_row(row: &Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.get(0),
        kind: row.get::<_, &str>(1).parse().map_err(|e| StoreError::Backend(format!("api_keys: {e}")))?,
        name: row.get(2),
        created_at: row.get(3),
        revoked_at: row.get(4),
        environment: row.get(5),
        role: row
            .get::<_, Option<&str>>(6)
            .map(str::parse)
            .transpose()
            .map_err(|e| StoreError::Backend(format!("api_keys: {e}")))?,
        environments: environments_from_column(row.get(7))
            .map_err(|e| StoreError::Backend(format!("api_keys: {e}")))?,
    })
}

#[async_trait::async_trait]
impl KeyStore for PostgresStore {
    /// Stores a new key with the hash of `secret`, audited in the same transaction. The unique
    /// hash decides between two nodes importing the same secret at once.
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO api_keys (id, kind, name, secret_sha256, created_at, environment, role, environments)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (secret_sha256) DO NOTHING",
                &[
                    &key.id,
                    &kind.as_str(),
                    &key.name,
                    &&hash[..],
                    &now,
                    &key.environment,
                    &key.role.map(|r| r.as_str()),
                    &environments_column(&key.environments),
                ],
            )
            .await?;
        if inserted == 0 {
            let existing = tx.query_one("SELECT id FROM api_keys WHERE secret_sha256 = $1", &[&&hash[..]]).await?;
            return Err(StoreError::AlreadyExists { kind: EntityKind::Key, key: existing.get(0) });
        }
        append(&tx, now, &key_audit_record(meta, "create", None, &key)).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&format!("{SELECT} ORDER BY created_at, id COLLATE \"C\"")).await?;
        client.query(&statement, &[]).await?.iter().map(from_row).collect()
    }

    async fn revoke_key(&self, id: &str, meta: &ChangeMeta) -> Result<ApiKey, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // FOR UPDATE: two nodes revoking at once audit one revocation, not two.
        let current = tx
            .query_opt(&format!("{SELECT} WHERE id = $1 FOR UPDATE"), &[&id])
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound { kind: EntityKind::Key, key: id.to_owned() })?;
        if current.revoked_at.is_some() {
            return Ok(current);
        }
        if current.kind == KeyKind::Admin {
            // Locking every active admin key: two nodes revoking the last two admin keys at once
            // must not both see the other one still active.
            let active =
                tx.query("SELECT id FROM api_keys WHERE kind = 'admin' AND revoked_at IS NULL FOR UPDATE", &[]).await?;
            if active.iter().all(|row| row.get::<_, &str>(0) == id) {
                return Err(StoreError::LastAdminKey { id: id.to_owned() });
            }
        }
        let now = crate::now();
        tx.execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1", &[&id, &now]).await?;
        let revoked = ApiKey { revoked_at: Some(now), ..current.clone() };
        append(&tx, now, &key_audit_record(meta, "revoke", Some(&current), &revoked)).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = secret_hash(secret);
        let client = self.client().await?;
        let statement =
            client.prepare_cached(&format!("{SELECT} WHERE secret_sha256 = $1 AND revoked_at IS NULL")).await?;
        client.query_opt(&statement, &[&&hash[..]]).await?.as_ref().map(from_row).transpose()
    }

    async fn has_keys(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM api_keys)", &[]).await?.get(0))
    }
}
