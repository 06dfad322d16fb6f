//! [`DocumentStore`] on the `documents` and `revision` tables.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio::sync::watch;
use tokio_postgres::Row;

use super::audit::append;
use super::{unsigned, PostgresStore, CHANNEL};
use crate::change::{created, if_match, replaced, DocumentChange};
use crate::{
    ChangeMeta, DocumentChanges, DocumentStore, EntityKind, ShownDocument, StoreError, StoredDocument, Timestamp,
    Write, GLOBAL,
};

const SELECT: &str = "SELECT kind, key, id, version, created_at, updated_at, body FROM documents";

fn kind_of(row: &Row) -> Result<EntityKind, StoreError> {
    row.get::<_, &str>(0).parse().map_err(|e| StoreError::Backend(format!("documents: {e}")))
}

fn from_row(row: &Row) -> Result<StoredDocument, StoreError> {
    Ok(StoredDocument {
        kind: kind_of(row)?,
        key: row.get(1),
        id: row.get(2),
        version: unsigned(row.get(3))?,
        created_at: row.get(4),
        updated_at: row.get(5),
        body: row.get(6),
    })
}

async fn load(
    client: &impl GenericClient,
    env: &str,
    kind: EntityKind,
    key: &str,
) -> Result<Option<StoredDocument>, StoreError> {
    let statement =
        client.prepare_cached(&format!("{SELECT} WHERE environment = $1 AND kind = $2 AND key = $3")).await?;
    client.query_opt(&statement, &[&env, &kind.as_str(), &key]).await?.as_ref().map(from_row).transpose()
}

pub(super) async fn read_revision(client: &impl GenericClient) -> Result<u64, StoreError> {
    let statement = client.prepare_cached("SELECT value FROM revision WHERE id = 1").await?;
    unsigned(client.query_one(&statement, &[]).await?.get(0))
}

#[async_trait::async_trait]
impl DocumentStore for PostgresStore {
    async fn get_in(&self, env: &str, kind: EntityKind, key: &str) -> Result<Option<StoredDocument>, StoreError> {
        load(&self.client().await?, env, kind, key).await
    }

    async fn list_in(&self, env: &str, kind: EntityKind) -> Result<Vec<StoredDocument>, StoreError> {
        let client = self.client().await?;
        // The column collates "C", so this order is bytewise.
        let statement =
            client.prepare_cached(&format!("{SELECT} WHERE environment = $1 AND kind = $2 ORDER BY key")).await?;
        client.query(&statement, &[&env, &kind.as_str()]).await?.iter().map(from_row).collect()
    }

    async fn apply_in(
        &self,
        env: &str,
        writes: Vec<Write>,
        meta: &ChangeMeta,
    ) -> Result<Vec<Option<StoredDocument>>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // First the revision row: its lock queues concurrent changes, so each batch below reads
        // the versions it then writes without another writer in between.
        let bump = tx.prepare_cached("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value").await?;
        let revision = unsigned(tx.query_one(&bump, &[]).await?.get(0))?;
        // One time for the whole batch: it is one change.
        let now = crate::now();
        let mut docs = Vec::with_capacity(writes.len());
        for write in writes {
            docs.push(apply_one(&tx, env, write, now, meta).await?);
        }
        // Delivered to every listening node when, and only if, the transaction commits.
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &revision.to_string()]).await?;
        tx.commit().await?;
        self.publish(revision);
        Ok(docs)
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        read_revision(&self.client().await?).await
    }

    /// From the `revision` column and the `deleted_documents` table (migration 4), read in one
    /// REPEATABLE READ transaction, so in one snapshot of the database. Writers take the
    /// revision row's lock first and keep it until they commit, so they commit in revision
    /// order: the snapshot holds every change up to the revision it reads and none after it,
    /// and no change committed later can carry a revision a reader has already passed.
    async fn changes_since_in(&self, env: &str, revision: u64) -> Result<Option<DocumentChanges>, StoreError> {
        let since = i64::try_from(revision).map_err(|_| StoreError::Backend("revision overflow".into()))?;
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let statement = tx.prepare_cached("SELECT value, recorded_since FROM revision WHERE id = 1").await?;
        let row = tx.query_one(&statement, &[]).await?;
        let (now, recorded_since) = (unsigned(row.get(0))?, unsigned(row.get(1))?);
        if revision < recorded_since {
            return Ok(None);
        }
        let statement = tx
            .prepare_cached(&format!(
                "{SELECT} WHERE environment = $1 AND revision > $2 ORDER BY kind COLLATE \"C\", key"
            ))
            .await?;
        let changed = tx
            .query(&statement, &[&env, &since])
            .await?
            .iter()
            .map(|row| from_row(row).map(|doc| (doc.kind, ShownDocument::from(doc))))
            .collect::<Result<_, _>>()?;
        let statement = tx
            .prepare_cached(
                "SELECT kind, key FROM deleted_documents WHERE environment = $1 AND revision > $2
                 ORDER BY kind COLLATE \"C\", key",
            )
            .await?;
        let deleted = tx
            .query(&statement, &[&env, &since])
            .await?
            .iter()
            .map(|row| Ok((kind_of(row)?, row.get(1))))
            .collect::<Result<_, StoreError>>()?;
        tx.commit().await?;
        Ok(Some(DocumentChanges { revision: now, changed, deleted }))
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }
}

async fn apply_one(
    tx: &impl GenericClient,
    env: &str,
    write: Write,
    now: Timestamp,
    meta: &ChangeMeta,
) -> Result<Option<StoredDocument>, StoreError> {
    match write {
        Write::Create { kind, key, body } => match load(tx, env, kind, &key).await? {
            Some(_) => Err(StoreError::AlreadyExists { kind, key }),
            None => insert(tx, env, kind, key, body, now, meta).await.map(Some),
        },
        Write::Update { kind, key, body, expected_version } => {
            let current = if_match(load(tx, env, kind, &key).await?, kind, key, expected_version)?;
            replace(tx, env, current, body, now, meta).await.map(Some)
        }
        Write::Upsert { kind, key, body } => match load(tx, env, kind, &key).await? {
            Some(current) => replace(tx, env, current, body, now, meta).await.map(Some),
            None => insert(tx, env, kind, key, body, now, meta).await.map(Some),
        },
        Write::Delete { kind, key, expected_version } => {
            let current = if_match(load(tx, env, kind, &key).await?, kind, key, expected_version)?;
            let statement =
                tx.prepare_cached("DELETE FROM documents WHERE environment = $1 AND kind = $2 AND key = $3").await?;
            tx.execute(&statement, &[&env, &current.kind.as_str(), &current.key]).await?;
            if env == GLOBAL && kind == EntityKind::Environment {
                // The environment's contents go with it; its experiments' assignments first,
                // while the experiments still say which ids they had.
                tx.execute(
                    "DELETE FROM assignments WHERE experiment_id IN
                     (SELECT id FROM documents WHERE environment = $1 AND kind = 'experiment')",
                    &[&current.key],
                )
                .await?;
                tx.execute("DELETE FROM documents WHERE environment = $1", &[&current.key]).await?;
            }
            append(tx, now, &DocumentChange::Deleted(&current).audit_record(env, meta)).await?;
            Ok(None)
        }
    }
}

async fn insert(
    tx: &impl GenericClient,
    env: &str,
    kind: EntityKind,
    key: String,
    body: Value,
    now: Timestamp,
    meta: &ChangeMeta,
) -> Result<StoredDocument, StoreError> {
    let doc = created(kind, key, body, now);
    let statement = tx
        .prepare_cached(
            "INSERT INTO documents (environment, kind, key, id, version, created_at, updated_at, body)
             VALUES ($1, $2, $3, $4, 1, $5, $5, $6)",
        )
        .await?;
    tx.execute(&statement, &[&env, &doc.kind.as_str(), &doc.key, &doc.id, &now, &doc.body]).await?;
    append(tx, now, &DocumentChange::Created(&doc).audit_record(env, meta)).await?;
    Ok(doc)
}

async fn replace(
    tx: &impl GenericClient,
    env: &str,
    current: StoredDocument,
    body: Value,
    now: Timestamp,
    meta: &ChangeMeta,
) -> Result<StoredDocument, StoreError> {
    let doc = replaced(&current, body, now);
    let version = i64::try_from(doc.version).map_err(|_| StoreError::Backend("version overflow".into()))?;
    let statement = tx
        .prepare_cached(
            "UPDATE documents SET version = $4, updated_at = $5, body = $6
             WHERE environment = $1 AND kind = $2 AND key = $3",
        )
        .await?;
    tx.execute(&statement, &[&env, &doc.kind.as_str(), &doc.key, &version, &now, &doc.body]).await?;
    append(tx, now, &DocumentChange::Updated(&current, &doc).audit_record(env, meta)).await?;
    Ok(doc)
}
