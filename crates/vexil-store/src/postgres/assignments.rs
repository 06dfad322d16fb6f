//! [`AssignmentStore`] on the `assignments` table.
//!
//! Insert-if-absent is `INSERT … ON CONFLICT` against the primary key, then a read of the
//! stored row in the same transaction. Under PostgreSQL's default isolation the conflicting
//! insert waits for a racing node's transaction to end, and the read that follows sees its
//! committed row, so every racer returns the one record that was stored first.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::{Assignment, AssignmentStore, StoreError, Timestamp};

const SELECT: &str = "SELECT experiment_id, unit, variant, assignment_id, assigned_at, expires_at FROM assignments";

fn from_row(row: &Row) -> Assignment {
    Assignment {
        experiment_id: row.get(0),
        unit: row.get(1),
        variant: row.get(2),
        assignment_id: row.get(3),
        assigned_at: row.get(4),
        expires_at: row.get(5),
    }
}

/// Stores `a` unless an unexpired record exists, then returns whichever record is stored.
async fn insert_if_absent(client: &impl GenericClient, a: Assignment) -> Result<Assignment, StoreError> {
    // The conflict branch overwrites only a record that had expired by the time of `a`;
    // `RETURNING` yields a row exactly when `a` was stored.
    let upsert = client
        .prepare_cached(
            "INSERT INTO assignments (experiment_id, unit, variant, assignment_id, assigned_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (experiment_id, unit) DO UPDATE SET
                 variant = excluded.variant,
                 assignment_id = excluded.assignment_id,
                 assigned_at = excluded.assigned_at,
                 expires_at = excluded.expires_at
             WHERE assignments.expires_at IS NOT NULL
               AND assignments.expires_at <= excluded.assigned_at
             RETURNING 1",
        )
        .await?;
    let stored = client
        .query_opt(&upsert, &[&a.experiment_id, &a.unit, &a.variant, &a.assignment_id, &a.assigned_at, &a.expires_at])
        .await?;
    if stored.is_some() {
        return Ok(a);
    }
    let existing = client.prepare_cached(&format!("{SELECT} WHERE experiment_id = $1 AND unit = $2")).await?;
    Ok(from_row(&client.query_one(&existing, &[&a.experiment_id, &a.unit]).await?))
}

#[async_trait::async_trait]
impl AssignmentStore for PostgresStore {
    async fn get_assignment(
        &self,
        experiment_id: &str,
        unit: &str,
        now: Timestamp,
    ) -> Result<Option<Assignment>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "{SELECT} WHERE experiment_id = $1 AND unit = $2 AND (expires_at IS NULL OR expires_at > $3)"
            ))
            .await?;
        Ok(client.query_opt(&statement, &[&experiment_id, &unit, &now]).await?.as_ref().map(from_row))
    }

    async fn assign_if_absent(&self, a: Assignment) -> Result<Assignment, StoreError> {
        insert_if_absent(&self.client().await?, a).await
    }

    async fn assign_many_if_absent(&self, batch: Vec<Assignment>) -> Result<Vec<Assignment>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut stored = Vec::with_capacity(batch.len());
        for a in batch {
            stored.push(insert_if_absent(&tx, a).await?);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn purge_expired_assignments(&self, now: Timestamp) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached("DELETE FROM assignments WHERE expires_at IS NOT NULL AND expires_at <= $1").await?;
        Ok(client.execute(&statement, &[&now]).await?)
    }
}
