//! The conformance suite against the PostgreSQL backend, on a real server: the one
//! `VEXIL_TEST_DATABASE_URL` names (`scripts/test.sh` starts a throwaway cluster and sets it).
//! Each check gets a database of its own on that server, so checks run in parallel without
//! seeing each other's rows or notifications.
//!
//! Without the variable the checks fail: a green run must have run them
//! (`VEXIL_TEST_ALLOW_SKIPS=1` turns that into a recorded skip; see
//! `vexil_store::testkit::required_variable`).

use std::sync::Arc;

use vexil_store::postgres::PostgresStore;
use vexil_store::testkit::TestBackend;
use vexil_store::{Backend, DocumentStore, EntityKind};

/// One fresh database; each `open` is a separate `PostgresStore`, as a separate node's.
struct PostgresBackend {
    url: String,
}

async fn postgres_backend() -> Option<PostgresBackend> {
    Some(PostgresBackend { url: vexil_store::testkit::postgres::fresh_database().await? })
}

#[async_trait::async_trait]
impl TestBackend for PostgresBackend {
    async fn open_backend(&self) -> Arc<dyn Backend> {
        Arc::new(PostgresStore::connect(&self.url).await.expect("open the store"))
    }

    /// Looks through every row of every table, as text, the way someone with a dump would.
    async fn persisted_data_contains(&self, needle: &str) -> bool {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let tables = client
            .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
            .await
            .unwrap();
        for table in tables {
            let table: String = table.get(0);
            let sql = format!("SELECT EXISTS (SELECT 1 FROM \"{table}\" t WHERE strpos(row_to_json(t)::text, $1) > 0)");
            if client.query_one(&sql, &[&needle]).await.unwrap().get::<_, bool>(0) {
                return true;
            }
        }
        false
    }
}

vexil_store::conformance_suite!(optional postgres_backend);

/// A raw connection to a backend's database, beside the store.
async fn raw(backend: &PostgresBackend) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&backend.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(backend) = postgres_backend().await else { return };
    let mut nodes = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = backend.url.clone();
        nodes.spawn(async move { PostgresStore::connect(&url).await.map(drop) });
    }
    while let Some(node) = nodes.join_next().await {
        node.unwrap().expect("every node starts");
    }
    let client = raw(&backend).await;
    let applied: i64 = client.query_one("SELECT count(*) FROM schema_version", &[]).await.unwrap().get(0);
    let latest: i32 = client.query_one("SELECT max(version) FROM schema_version", &[]).await.unwrap().get(0);
    assert_eq!(applied, i64::from(latest), "each migration applied once");

    client.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&(latest + 1)]).await.unwrap();
    let err = PostgresStore::connect(&backend.url).await.err().expect("a newer schema is refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_table_rejects_updates_and_deletes() {
    let Some(backend) = postgres_backend().await else { return };
    PostgresStore::connect(&backend.url).await.unwrap();
    let client = raw(&backend).await;
    client
        .execute("INSERT INTO audit (at, actor, action, entity, key) VALUES (now(), 'a', 'b', 'flag', 'k')", &[])
        .await
        .unwrap();
    for sql in ["UPDATE audit SET actor = 'x'", "DELETE FROM audit", "TRUNCATE audit"] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert!(format!("{:?}", err).contains("append-only"), "{sql}: {err:?}");
    }
}

/// A database written before document revisions (migration 4): its documents are served as
/// they were; a reader at a revision from before the migration is told to read everything
/// (deletions before it were never recorded), one from after it gets the changes; and a node of
/// the previous release, still writing during a rolling upgrade, has its changes listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_document_revisions_keeps_working() {
    let Some(backend) = postgres_backend().await else { return };
    let (pool, _) = vexil_store::postgres::connection_pool(&backend.url, 1).unwrap();
    let before_revisions = vexil_store::postgres::Schema {
        version_table: "schema_version",
        migrations: &[
            include_str!("../src/postgres/migrations/0001_initial.sql"),
            include_str!("../src/postgres/migrations/0002_environments.sql"),
            include_str!("../src/postgres/migrations/0003_key_roles.sql"),
        ],
    };
    vexil_store::postgres::migrate(&mut pool.get().await.unwrap(), &before_revisions).await.unwrap();
    drop(pool);
    let client = raw(&backend).await;
    let insert = |key: &str| {
        format!(
            "INSERT INTO documents (environment, kind, key, id, version, created_at, updated_at, body)
             VALUES ('production', 'flag', '{key}', '{key}-id', 1, now(), now(), '{{\"key\": \"{key}\"}}')"
        )
    };
    old_release_write(&client, &insert("a")).await;
    let old_reader_revision = 1;
    old_release_write(&client, &insert("b")).await;
    old_release_write(&client, "DELETE FROM documents WHERE key = 'a'").await;

    let store = PostgresStore::connect(&backend.url).await.unwrap();
    let flags = store.list_in("production", EntityKind::Flag).await.unwrap();
    assert_eq!(flags.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(store.changes_since_in("production", old_reader_revision).await.unwrap().is_none());
    let migrated_at = store.revision().await.unwrap();
    let nothing = store.changes_since_in("production", migrated_at).await.unwrap().expect("changes since");
    assert_eq!((nothing.revision, nothing.changed.len(), nothing.deleted.len()), (3, 0, 0));

    let update = "UPDATE documents SET version = 2, body = '{\"key\": \"b\", \"n\": 2}' WHERE key = 'b'";
    old_release_write(&client, update).await;
    old_release_write(&client, &insert("c")).await;
    let changes = store.changes_since_in("production", migrated_at).await.unwrap().expect("changes since");
    let changed: Vec<_> = changes.changed.iter().map(|(_, d)| d.key.as_str()).collect();
    assert_eq!((changes.revision, changed), (5, vec!["b", "c"]));
    let b: serde_json::Value = serde_json::from_str(changes.changed[0].1.json.get()).unwrap();
    assert_eq!((&b["n"], &b["version"]), (&serde_json::json!(2), &serde_json::json!(2)));
    old_release_write(&client, "DELETE FROM documents WHERE key = 'c'").await;
    let changes = store.changes_since_in("production", 5).await.unwrap().expect("changes since");
    assert_eq!(changes.deleted, [(EntityKind::Flag, "c".to_string())]);
}

/// A document change as the previous release made it: the revision row first, then the write.
async fn old_release_write(client: &tokio_postgres::Client, sql: &str) {
    let change = format!("BEGIN; UPDATE revision SET value = value + 1 WHERE id = 1; {sql}; COMMIT");
    client.batch_execute(&change).await.unwrap();
}
