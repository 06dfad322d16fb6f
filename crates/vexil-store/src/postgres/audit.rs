//! [`AuditLog`] on the `audit` table, and the append every audited write shares.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{unsigned, PostgresStore};
use crate::change::appended;
use crate::{AuditLog, AuditQuery, AuditRecord, NewAuditRecord, StoreError, Timestamp};

/// Appends a record inside whatever transaction the caller's change runs in.
pub(super) async fn append(
    client: &impl GenericClient,
    at: Timestamp,
    entry: &NewAuditRecord,
) -> Result<AuditRecord, StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO audit (at, actor, action, entity, key, before, after, reason, environment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .await?;
    let row = client
        .query_one(
            &statement,
            &[
                &at,
                &entry.meta.actor,
                &entry.action,
                &entry.entity.as_str(),
                &entry.key,
                &entry.before,
                &entry.after,
                &entry.meta.reason,
                &entry.environment,
            ],
        )
        .await?;
    Ok(appended(unsigned(row.get(0))?, at, entry))
}

fn from_row(row: &Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: unsigned(row.get(0))?,
        at: row.get(1),
        actor: row.get(2),
        action: row.get(3),
        entity: row.get::<_, &str>(4).parse().map_err(|e| StoreError::Backend(format!("audit: {e}")))?,
        key: row.get(5),
        before: row.get(6),
        after: row.get(7),
        reason: row.get(8),
        environment: row.get(9),
    })
}

#[async_trait::async_trait]
impl AuditLog for PostgresStore {
    async fn record(&self, entry: NewAuditRecord) -> Result<AuditRecord, StoreError> {
        append(&self.client().await?, crate::now(), &entry).await
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        // Only the filters given appear in the SQL, so the planner can use the indexes.
        let entity = query.entity.map(|e| e.as_str());
        let before = query.before.map(|id| i64::try_from(id).unwrap_or(i64::MAX));
        let limit = i64::from(query.effective_limit());
        let mut filters = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(environment) = &query.environment {
            params.push(environment);
            filters.push(format!("(environment = ${} OR environment IS NULL)", params.len()));
        }
        if let Some(entity) = &entity {
            params.push(entity);
            filters.push(format!("entity = ${}", params.len()));
        }
        if let Some(key) = &query.key {
            params.push(key);
            filters.push(format!("key = ${}", params.len()));
        }
        if let Some(before) = &before {
            params.push(before);
            filters.push(format!("id < ${}", params.len()));
        }
        params.push(&limit);
        let filter = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT id, at, actor, action, entity, key, before, after, reason, environment
                 FROM audit {filter} ORDER BY id DESC LIMIT ${}",
                params.len()
            ))
            .await?;
        client.query(&statement, &params).await?.iter().map(from_row).collect()
    }
}
