//! [`DocumentStore`] on the `documents` and `revision` tables.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::watch;

use super::audit::append;
use super::codec::{Json, Time};
use super::SqliteStore;
use crate::change::{created, if_match, replaced, DocumentChange};
use crate::{
    ChangeMeta, DocumentChanges, DocumentStore, EntityKind, ShownDocument, StoreError, StoredDocument, Timestamp,
    Write, GLOBAL,
};

const SELECT: &str = "SELECT kind, key, id, version, created_at, updated_at, body FROM documents";
/// What changed in an environment after a revision: a range of `documents_by_revision`.
const CHANGED_SINCE: &str = "SELECT kind, key, id, version, created_at, updated_at, body FROM documents
     WHERE environment = ?1 AND revision > ?2";
/// What was deleted in an environment after a revision: a range of `deleted_documents_by_revision`.
const DELETED_SINCE: &str = "SELECT kind, key FROM deleted_documents WHERE environment = ?1 AND revision > ?2";

fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredDocument> {
    Ok(StoredDocument {
        kind: row.get(0)?,
        key: row.get(1)?,
        id: row.get(2)?,
        version: row.get(3)?,
        created_at: row.get::<_, Time>(4)?.0,
        updated_at: row.get::<_, Time>(5)?.0,
        body: row.get::<_, Json>(6)?.0,
    })
}

fn load(conn: &Connection, env: &str, kind: EntityKind, key: &str) -> Result<Option<StoredDocument>, StoreError> {
    let doc = conn
        .prepare_cached(&format!("{SELECT} WHERE environment = ?1 AND kind = ?2 AND key = ?3"))?
        .query_row(params![env, kind, key], from_row)
        .optional()?;
    Ok(doc)
}

pub(super) fn read_revision(conn: &Connection) -> Result<u64, StoreError> {
    let revision = conn.query_row("SELECT value FROM revision WHERE id = 1", [], |row| row.get(0))?;
    Ok(revision)
}

#[async_trait::async_trait]
impl DocumentStore for SqliteStore {
    async fn get_in(&self, env: &str, kind: EntityKind, key: &str) -> Result<Option<StoredDocument>, StoreError> {
        let (env, key) = (env.to_owned(), key.to_owned());
        self.read(move |conn| load(conn, &env, kind, &key)).await
    }

    async fn list_in(&self, env: &str, kind: EntityKind) -> Result<Vec<StoredDocument>, StoreError> {
        let env = env.to_owned();
        self.read(move |conn| {
            let docs = conn
                .prepare_cached(&format!("{SELECT} WHERE environment = ?1 AND kind = ?2 ORDER BY key"))?
                .query_map(params![env, kind], from_row)?
                .collect::<Result<_, _>>()?;
            Ok(docs)
        })
        .await
    }

    async fn list_shown_in(&self, env: &str, kind: EntityKind) -> Result<Vec<ShownDocument>, StoreError> {
        let env = env.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT key, id, version, created_at, updated_at, body FROM documents
                 WHERE environment = ?1 AND kind = ?2 ORDER BY key",
            )?;
            let mut rows = statement.query(params![env, kind])?;
            let mut shown = Vec::new();
            while let Some(row) = rows.next()? {
                let (created_at, updated_at) = (row.get::<_, Time>(3)?.0, row.get::<_, Time>(4)?.0);
                let body = row.get_ref(5)?.as_str().map_err(rusqlite::Error::from)?;
                let document = ShownDocument::from_text(
                    row.get(0)?,
                    &row.get::<_, String>(1)?,
                    row.get(2)?,
                    &created_at,
                    &updated_at,
                    body,
                )
                .map_err(|e| StoreError::Backend(format!("documents: {e}")))?;
                shown.push(document);
            }
            Ok(shown)
        })
        .await
    }

    async fn list_bodies_in(&self, env: &str, kind: EntityKind) -> Result<Vec<Box<RawValue>>, StoreError> {
        let env = env.to_owned();
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT body FROM documents WHERE environment = ?1 AND kind = ?2 ORDER BY key")?;
            let mut rows = statement.query(params![env, kind])?;
            let mut bodies = Vec::new();
            while let Some(row) = rows.next()? {
                let body = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                let body = RawValue::from_string(body.trim().to_owned())
                    .map_err(|e| StoreError::Backend(format!("documents: {e}")))?;
                bodies.push(body);
            }
            Ok(bodies)
        })
        .await
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
        let meta = meta.clone();
        let env = env.to_owned();
        let (docs, revision) = self
            .write(move |tx| {
                // One time for the whole batch: it is one change.
                let now = crate::now();
                let docs = writes
                    .into_iter()
                    .map(|write| apply_one(tx, &env, write, now, &meta))
                    .collect::<Result<Vec<_>, _>>()?;
                let revision: u64 =
                    tx.query_row("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value", [], |row| {
                        row.get(0)
                    })?;
                Ok((docs, revision))
            })
            .await?;
        self.publish(revision);
        Ok(docs)
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        self.read(read_revision).await
    }

    /// From the `revision` column and the `deleted_documents` table (migration 4), read in one
    /// transaction with the revision, so a change commits wholly before or after the read.
    /// Sorted here rather than by the queries: with an `ORDER BY kind, key` SQLite's planner
    /// walks the environment's whole primary key to avoid a sort, reading every document to
    /// find the few changed ones, instead of the revision index.
    async fn changes_since_in(&self, env: &str, revision: u64) -> Result<Option<DocumentChanges>, StoreError> {
        let env = env.to_owned();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let now = read_revision(&tx)?;
            let mut changes = DocumentChanges { revision: now, ..DocumentChanges::default() };
            let mut statement = tx.prepare_cached(CHANGED_SINCE)?;
            let mut rows = statement.query(params![env, revision])?;
            while let Some(row) = rows.next()? {
                let (created_at, updated_at) = (row.get::<_, Time>(4)?.0, row.get::<_, Time>(5)?.0);
                let body = row.get_ref(6)?.as_str().map_err(rusqlite::Error::from)?;
                let document = ShownDocument::from_text(
                    row.get(1)?,
                    &row.get::<_, String>(2)?,
                    row.get(3)?,
                    &created_at,
                    &updated_at,
                    body,
                )
                .map_err(|e| StoreError::Backend(format!("documents: {e}")))?;
                changes.changed.push((row.get(0)?, document));
            }
            drop(rows);
            drop(statement);
            changes.deleted = tx
                .prepare_cached(DELETED_SINCE)?
                .query_map(params![env, revision], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            tx.commit()?;
            changes.changed.sort_by(|(a, x), (b, y)| (a.as_str(), &x.key).cmp(&(b.as_str(), &y.key)));
            changes.deleted.sort_by(|(a, x), (b, y)| (a.as_str(), x).cmp(&(b.as_str(), y)));
            Ok(Some(changes))
        })
        .await
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }
}

/// One write inside the batch's transaction. The write lock is held from BEGIN, so reading
/// the current version and then writing cannot race with another writer.
fn apply_one(
    conn: &Connection,
    env: &str,
    write: Write,
    now: Timestamp,
    meta: &ChangeMeta,
) -> Result<Option<StoredDocument>, StoreError> {
    match write {
        Write::Create { kind, key, body } => match load(conn, env, kind, &key)? {
            Some(_) => Err(StoreError::AlreadyExists { kind, key }),
            None => insert(conn, env, kind, key, body, now, meta).map(Some),
        },
        Write::Update { kind, key, body, expected_version } => {
            let current = if_match(load(conn, env, kind, &key)?, kind, key, expected_version)?;
            replace(conn, env, current, body, now, meta).map(Some)
        }
        Write::Upsert { kind, key, body } => match load(conn, env, kind, &key)? {
            Some(current) => replace(conn, env, current, body, now, meta),
            None => insert(conn, env, kind, key, body, now, meta),
        }
        .map(Some),
        Write::Delete { kind, key, expected_version } => {
            let current = if_match(load(conn, env, kind, &key)?, kind, key, expected_version)?;
            conn.prepare_cached("DELETE FROM documents WHERE environment = ?1 AND kind = ?2 AND key = ?3")?
                .execute(params![env, current.kind, current.key])?;
            if env == GLOBAL && kind == EntityKind::Environment {
                // The environment's contents go with it; its experiments' assignments first,
                // while the experiments still say which ids they had.
                conn.prepare_cached(
                    "DELETE FROM assignments WHERE experiment_id IN
                     (SELECT id FROM documents WHERE environment = ?1 AND kind = 'experiment')",
                )?
                .execute([&current.key])?;
                conn.prepare_cached("DELETE FROM documents WHERE environment = ?1")?.execute([&current.key])?;
            }
            audit(conn, env, meta, now, DocumentChange::Deleted(&current))?;
            Ok(None)
        }
    }
}

fn insert(
    conn: &Connection,
    env: &str,
    kind: EntityKind,
    key: String,
    body: Value,
    now: Timestamp,
    meta: &ChangeMeta,
) -> Result<StoredDocument, StoreError> {
    let doc = created(kind, key, body, now);
    conn.prepare_cached(
        "INSERT INTO documents (environment, kind, key, id, version, created_at, updated_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?
    .execute(params![env, doc.kind, doc.key, doc.id, doc.version, Time(now), Json(doc.body.clone())])?;
    audit(conn, env, meta, now, DocumentChange::Created(&doc))?;
    Ok(doc)
}

fn replace(
    conn: &Connection,
    env: &str,
    current: StoredDocument,
    body: Value,
    now: Timestamp,
    meta: &ChangeMeta,
) -> Result<StoredDocument, StoreError> {
    let doc = replaced(&current, body, now);
    conn.prepare_cached(
        "UPDATE documents SET version = ?4, updated_at = ?5, body = ?6 WHERE environment = ?1 AND kind = ?2 AND key = ?3",
    )?
    .execute(params![env, doc.kind, doc.key, doc.version, Time(now), Json(doc.body.clone())])?;
    audit(conn, env, meta, now, DocumentChange::Updated(&current, &doc))?;
    Ok(doc)
}

/// Audits a document write in the write's transaction.
fn audit(
    conn: &Connection,
    env: &str,
    meta: &ChangeMeta,
    now: Timestamp,
    change: DocumentChange<'_>,
) -> Result<(), StoreError> {
    append(conn, now, &change.audit_record(env, meta))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write's follower reads what changed since its revision; reading the whole environment
    /// instead made every write's cost grow with the number of flags.
    #[test]
    fn changes_since_reads_a_range_of_the_revision_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = super::super::connect(store.path()).unwrap();
        for (query, index) in
            [(CHANGED_SINCE, "documents_by_revision"), (DELETED_SINCE, "deleted_documents_by_revision")]
        {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .unwrap()
                .query_map(params!["production", 7], |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains(&format!("INDEX {index} (environment=? AND revision>?)")), "{query}: {plan}");
        }
    }
}
