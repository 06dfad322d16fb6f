//! [`AssignmentStore`] on the `assignments` table.
//!
//! Insert-if-absent is one `INSERT … ON CONFLICT` statement against the primary key, so the
//! database decides who was first — within this process and across processes alike.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::codec::Time;
use super::SqliteStore;
use crate::model::{ASSIGNMENT_CONFLICT, ASSIGNMENT_INSERT};
use crate::{Assignment, AssignmentStore, Flush, StoreError, Timestamp};

fn from_row(row: &Row<'_>) -> rusqlite::Result<Assignment> {
    Ok(Assignment {
        experiment_id: row.get(0)?,
        unit: row.get(1)?,
        variant: row.get(2)?,
        assignment_id: row.get(3)?,
        assigned_at: row.get::<_, Time>(4)?.0,
        expires_at: row.get::<_, Option<Time>>(5)?.map(|t| t.0),
    })
}

/// Stores `a` unless an unexpired record exists, then returns whichever record is stored.
fn insert_if_absent(conn: &Connection, a: Assignment) -> Result<Assignment, StoreError> {
    // The conflict branch overwrites only a record that had expired by the time of `a`.
    let written = conn
        .prepare_cached(&format!("{ASSIGNMENT_INSERT} VALUES (?1, ?2, ?3, ?4, ?5, ?6) {ASSIGNMENT_CONFLICT}"))?
        .execute(params![
            a.experiment_id,
            a.unit,
            a.variant,
            a.assignment_id,
            Time(a.assigned_at),
            a.expires_at.map(Time),
        ])?;
    // One row changed: `a` was inserted (or replaced an expired record) and is what is stored.
    // None: an unexpired record was there first. Same transaction, write lock held, so the
    // read sees exactly what the statement left.
    if written == 1 {
        return Ok(a);
    }
    let stored = conn
        .prepare_cached(
            "SELECT experiment_id, unit, variant, assignment_id, assigned_at, expires_at
             FROM assignments WHERE experiment_id = ?1 AND unit = ?2",
        )?
        .query_row(params![a.experiment_id, a.unit], from_row)?;
    Ok(stored)
}

#[async_trait::async_trait]
impl AssignmentStore for SqliteStore {
    async fn get_assignment(
        &self,
        experiment_id: &str,
        unit: &str,
        now: Timestamp,
    ) -> Result<Option<Assignment>, StoreError> {
        let (experiment_id, unit) = (experiment_id.to_owned(), unit.to_owned());
        self.read(move |conn| {
            let found = conn
                .prepare_cached(
                    "SELECT experiment_id, unit, variant, assignment_id, assigned_at, expires_at
                     FROM assignments
                     WHERE experiment_id = ?1 AND unit = ?2
                       AND (expires_at IS NULL OR expires_at > ?3)",
                )?
                .query_row(params![experiment_id, unit, Time(now)], from_row)
                .optional()?;
            Ok(found)
        })
        .await
    }

    async fn assign_if_absent(&self, a: Assignment) -> Result<Assignment, StoreError> {
        self.write(move |tx| insert_if_absent(tx, a)).await
    }

    async fn assign_many_if_absent(&self, batch: Vec<Assignment>, flush: Flush) -> Result<Vec<Assignment>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write_flushed(flush, move |tx| batch.into_iter().map(|a| insert_if_absent(tx, a)).collect()).await
    }

    async fn purge_expired_assignments(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let purged = tx
                .prepare_cached("DELETE FROM assignments WHERE expires_at IS NOT NULL AND expires_at <= ?1")?
                .execute([Time(now)])?;
            Ok(purged as u64)
        })
        .await
    }
}
