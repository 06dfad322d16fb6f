//! The schema, as an ordered list of migrations applied at connect.
//!
//! `schema_version` holds one row per applied migration; migrations are only ever appended.
//! Many nodes may start at once against a new database: the transaction first takes an
//! advisory lock, so exactly one of them migrates and the others then find the work done.

use deadpool_postgres::GenericClient;

use crate::StoreError;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_initial.sql")];

/// The schema version this build writes.
pub(super) const LATEST: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock that serialises migrations (an arbitrary constant: "vexil" in ASCII).
const MIGRATION_LOCK: i64 = 0x0076_6578_696c;

/// Brings the database up to [`LATEST`].
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current = version(&tx).await?;
    if current > LATEST {
        return Err(StoreError::Backend(format!(
            "the database has schema version {current}, newer than the {LATEST} this vexil \
             knows: it was written by a newer vexil, run that one"
        )));
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(current as usize) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&version]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version of the database: 0 for a new one.
pub(super) async fn version(client: &impl GenericClient) -> Result<i32, StoreError> {
    let row = client.query_one("SELECT max(version) FROM schema_version", &[]).await?;
    Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
}
