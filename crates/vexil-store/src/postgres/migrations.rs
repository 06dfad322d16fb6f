//! Schemas as ordered lists of migrations applied at connect.
//!
//! A version table (`schema_version` for the store's own tables) holds one row per applied
//! migration; migrations are only ever appended. Many nodes may start at once against a new
//! database: the transaction first takes an advisory lock, so exactly one of them migrates and
//! the others then find the work done. Other parts of vexil that keep tables in the same
//! database (the distributed event pipeline) version theirs the same way, in a version table of
//! their own.

use deadpool_postgres::GenericClient;

use crate::StoreError;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_environments.sql"),
    include_str!("migrations/0003_key_roles.sql"),
    include_str!("migrations/0004_people.sql"),
];

/// The store's schema.
pub(super) const STORE: Schema = Schema { version_table: "schema_version", migrations: MIGRATIONS };

/// Key of the advisory lock that serialises migrations (an arbitrary constant: "vexil" in ASCII).
const MIGRATION_LOCK: i64 = 0x0076_6578_696c;

/// A set of tables and the migrations that build them.
pub struct Schema {
    /// The table recording which migrations are applied.
    pub version_table: &'static str,
    /// Migration `n` (1-based) is `migrations[n - 1]`.
    pub migrations: &'static [&'static str],
}

/// Brings the database up to the last migration of `schema`.
pub async fn migrate(client: &mut deadpool_postgres::Client, schema: &Schema) -> Result<(), StoreError> {
    let latest = schema.migrations.len() as i32;
    let table = schema.version_table;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )"
    ))
    .await?;
    let current = version(&tx, table).await?;
    if current > latest {
        return Err(StoreError::Backend(format!(
            "the database has {table} {current}, newer than the {latest} this vexil \
             knows: it was written by a newer vexil, run that one"
        )));
    }
    for (version, sql) in (1..).zip(schema.migrations).skip(current as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(&format!("INSERT INTO {table} (version) VALUES ($1)"), &[&version]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The version of a schema in the database: 0 for a new one.
async fn version(client: &impl GenericClient, table: &str) -> Result<i32, StoreError> {
    let row = client.query_one(&format!("SELECT max(version) FROM {table}"), &[]).await?;
    Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
}
