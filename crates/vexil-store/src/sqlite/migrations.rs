//! The schema, as an ordered list of migrations applied at open.
//!
//! `schema_version` holds one row per applied migration. Migrations only ever get appended:
//! a released one is never edited, since databases in the field have already run it.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_environments.sql"),
    include_str!("migrations/0003_key_roles.sql"),
    include_str!("migrations/0004_document_revisions.sql"),
    include_str!("migrations/0005_people.sql"),
];

/// The schema version this build writes.
pub(super) const LATEST: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`LATEST`]. The immediate transaction takes the write lock first,
/// so two processes opening a new data directory at once migrate it exactly once.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         )",
    )?;
    let current = version(&tx)?;
    if current > LATEST {
        return Err(StoreError::Backend(format!(
            "the database has schema version {current}, newer than the {LATEST} this vexil \
             knows: it was written by a newer vexil, run that one"
        )));
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [version])?;
    }
    tx.commit()?;
    Ok(())
}

/// The schema version of the database: 0 for a new one.
pub(super) fn version(conn: &Connection) -> Result<u32, StoreError> {
    let version: Option<u32> = conn.query_row("SELECT max(version) FROM schema_version", [], |row| row.get(0))?;
    Ok(version.unwrap_or(0))
}
