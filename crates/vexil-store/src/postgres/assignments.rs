//! [`AssignmentStore`] on the `assignments` table.
//!
//! Insert-if-absent is `INSERT … ON CONFLICT` against the primary key, then a read of the
//! stored row in the same transaction. Under PostgreSQL's default isolation the conflicting
//! insert waits for a racing node's transaction to end, and the read that follows sees its
//! committed row, so every racer returns the one record that was stored first.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::model::{ASSIGNMENT_CONFLICT, ASSIGNMENT_INSERT};
use crate::{Assignment, AssignmentStore, Flush, StoreError, Timestamp};

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
        .prepare_cached(&format!(
            "{ASSIGNMENT_INSERT} VALUES ($1, $2, $3, $4, $5, $6) {ASSIGNMENT_CONFLICT} RETURNING 1"
        ))
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

    /// One upsert for the whole batch (`UNNEST` of column arrays) and one read of the records
    /// that were there first, instead of two round trips per assignment: the group commit of
    /// first assignments would otherwise wait on the network once per user.
    async fn assign_many_if_absent(&self, batch: Vec<Assignment>, flush: Flush) -> Result<Vec<Assignment>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // A unit listed twice is written once, by its first entry (one statement may not
        // upsert a row twice); the later entries answer with what that one stored.
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let unique: Vec<&Assignment> = batch
            .iter()
            .enumerate()
            .filter(|(i, a)| *first_of.entry((&a.experiment_id, &a.unit)).or_insert(*i) == *i)
            .map(|(_, a)| a)
            .collect();
        let column = |f: fn(&Assignment) -> &str| unique.iter().map(|a| f(a)).collect::<Vec<&str>>();
        let (experiments, units) = (column(|a| &a.experiment_id), column(|a| &a.unit));
        let (variants, ids) = (column(|a| &a.variant), column(|a| &a.assignment_id));
        let assigned: Vec<Timestamp> = unique.iter().map(|a| a.assigned_at).collect();
        let expires: Vec<Option<Timestamp>> = unique.iter().map(|a| a.expires_at).collect();

        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if flush == Flush::Background {
            // This transaction's commit does not wait for its WAL flush; later ones that do
            // (every other write here) flush it with theirs.
            tx.batch_execute("SET LOCAL synchronous_commit = off").await?;
        }
        let upsert = tx
            .prepare_cached(&format!(
                "{ASSIGNMENT_INSERT}
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
                 {ASSIGNMENT_CONFLICT} RETURNING experiment_id, unit"
            ))
            .await?;
        let written: HashSet<(String, String)> = tx
            .query(&upsert, &[&experiments, &units, &variants, &ids, &assigned, &expires])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut stored: HashMap<(String, String), Assignment> = HashMap::new();
        let lost: Vec<&&Assignment> =
            unique.iter().filter(|a| !written.contains(&(a.experiment_id.clone(), a.unit.clone()))).collect();
        if !lost.is_empty() {
            let (lost_experiments, lost_units): (Vec<&str>, Vec<&str>) =
                lost.iter().map(|a| (a.experiment_id.as_str(), a.unit.as_str())).unzip();
            let read = tx
                .prepare_cached(&format!(
                    "{SELECT} WHERE (experiment_id, unit) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
                ))
                .await?;
            for row in tx.query(&read, &[&lost_experiments, &lost_units]).await? {
                let existing = from_row(&row);
                stored.insert((existing.experiment_id.clone(), existing.unit.clone()), existing);
            }
        }
        tx.commit().await?;
        batch
            .iter()
            .map(|a| {
                let first = &batch[first_of[&(a.experiment_id.as_str(), a.unit.as_str())]];
                match stored.get(&(a.experiment_id.clone(), a.unit.clone())) {
                    Some(existing) => Ok(existing.clone()),
                    None if written.contains(&(a.experiment_id.clone(), a.unit.clone())) => Ok(first.clone()),
                    None => Err(StoreError::Backend(format!(
                        "assignment of {} to {} was neither written nor found",
                        a.unit, a.experiment_id
                    ))),
                }
            })
            .collect()
    }

    async fn purge_expired_assignments(&self, now: Timestamp) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement =
            client.prepare_cached("DELETE FROM assignments WHERE expires_at IS NOT NULL AND expires_at <= $1").await?;
        Ok(client.execute(&statement, &[&now]).await?)
    }
}
