//! [`AuditLog`] on the `audit` table, and the append every audited write shares.

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::codec::{Json, Time};
use super::SqliteStore;
use crate::{AuditLog, AuditQuery, AuditRecord, NewAuditRecord, StoreError, Timestamp};

/// Appends a record on `conn`, inside whatever transaction the caller's change runs in.
pub(super) fn append(conn: &Connection, at: Timestamp, entry: &NewAuditRecord) -> Result<AuditRecord, StoreError> {
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO audit (at, actor, action, entity, key, before, after, reason, environment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        )?
        .query_row(
            rusqlite::params![
                Time(at),
                entry.meta.actor,
                entry.action,
                entry.entity,
                entry.key,
                entry.before.clone().map(Json),
                entry.after.clone().map(Json),
                entry.meta.reason,
                entry.environment,
            ],
            |row| row.get(0),
        )?;
    Ok(crate::change::appended(id, at, entry))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get(0)?,
        at: row.get::<_, Time>(1)?.0,
        actor: row.get(2)?,
        action: row.get(3)?,
        entity: row.get(4)?,
        key: row.get(5)?,
        before: row.get::<_, Option<Json>>(6)?.map(|j| j.0),
        after: row.get::<_, Option<Json>>(7)?.map(|j| j.0),
        reason: row.get(8)?,
        environment: row.get(9)?,
    })
}

#[async_trait::async_trait]
impl AuditLog for SqliteStore {
    async fn record(&self, entry: NewAuditRecord) -> Result<AuditRecord, StoreError> {
        self.write(move |tx| append(tx, crate::now(), &entry)).await
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            // Only the filters given appear in the SQL, so the planner can use the indexes
            // (`?1 IS NULL OR entity = ?1` would defeat them).
            let mut filters = Vec::new();
            let mut params: Vec<Box<dyn ToSql>> = Vec::new();
            if let Some(environment) = &query.environment {
                filters.push("(environment = ? OR environment IS NULL)");
                params.push(Box::new(environment.clone()));
            }
            if let Some(entity) = query.entity {
                filters.push("entity = ?");
                params.push(Box::new(entity));
            }
            if let Some(key) = &query.key {
                filters.push("key = ?");
                params.push(Box::new(key.clone()));
            }
            if let Some(before) = query.before {
                filters.push("id < ?");
                params.push(Box::new(before));
            }
            let filter = if filters.is_empty() { String::new() } else { format!("WHERE {}", filters.join(" AND ")) };
            params.push(Box::new(query.effective_limit()));
            let records = conn
                .prepare_cached(&format!(
                    "SELECT id, at, actor, action, entity, key, before, after, reason, environment
                     FROM audit {filter} ORDER BY id DESC LIMIT ?"
                ))?
                .query_map(rusqlite::params_from_iter(params), from_row)?
                .collect::<Result<_, _>>()?;
            Ok(records)
        })
        .await
    }
}
