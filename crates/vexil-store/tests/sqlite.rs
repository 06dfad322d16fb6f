//! The conformance suite against the SQLite backend on real files in a temporary directory,
//! plus what only the embedded backend has: its data directory surviving a restart.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::json;
use tempfile::TempDir;
use vexil_store::sqlite::SqliteStore;
use vexil_store::testkit::TestBackend;
use vexil_store::{
    Assignment, AssignmentStore, AuditLog, AuditQuery, Backend, ChangeMeta, ConfigStore, EntityKind, KeyKind, KeyStore,
    Scoped, Write, DEFAULT_ENVIRONMENT,
};

/// The default environment of a store opened in `dir`, and the database file's path.
fn open(dir: &std::path::Path) -> (Scoped, std::path::PathBuf) {
    let sqlite = SqliteStore::open(dir).unwrap();
    let path = sqlite.path().to_owned();
    (Scoped::new(Arc::new(sqlite), DEFAULT_ENVIRONMENT), path)
}

/// One data directory; each `open` is a separate `SqliteStore`, as a separate process's.
struct SqliteBackend {
    dir: TempDir,
}

async fn sqlite_backend() -> SqliteBackend {
    SqliteBackend { dir: tempfile::tempdir().expect("temporary directory") }
}

#[async_trait::async_trait]
impl TestBackend for SqliteBackend {
    async fn open_backend(&self) -> Arc<dyn Backend> {
        Arc::new(SqliteStore::open(self.dir.path()).expect("open the store"))
    }

    /// Looks through every file of the data directory — the database, its WAL and shared
    /// memory — as raw bytes, the way someone with a copy of the directory would.
    async fn persisted_data_contains(&self, needle: &str) -> bool {
        std::fs::read_dir(self.dir.path())
            .expect("data directory")
            .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read file"))
            .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

vexil_store::conformance_suite!(sqlite_backend);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let meta = ChangeMeta::new("cli");
    let assigned_at = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    let assignment = Assignment {
        experiment_id: "exp_1".into(),
        unit: "user_1".into(),
        variant: "treatment".into(),
        assignment_id: "asg_1".into(),
        assigned_at,
        expires_at: None,
    };

    let (store, path) = open(dir.path());
    let flag = store
        .apply(
            vec![Write::Create {
                kind: EntityKind::Flag,
                key: "checkout".into(),
                body: json!({"key": "checkout", "enabled": true}),
            }],
            &meta,
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let (key, secret) =
        store.create_key(KeyKind::Admin, "admin", &vexil_store::KeyGrant::default(), &meta).await.unwrap();
    store.assign_if_absent(assignment.clone()).await.unwrap();
    let revision = store.revision().await.unwrap();
    let audit = store.query(&AuditQuery::default()).await.unwrap();
    drop(store);

    let (store, reopened) = open(dir.path());
    assert_eq!(reopened, path);
    assert!(path.ends_with(vexil_store::sqlite::DB_FILE));
    assert_eq!(store.get(EntityKind::Flag, "checkout").await.unwrap(), Some(flag));
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(*store.watch().borrow(), revision, "the watch starts at the stored revision");
    assert_eq!(store.authenticate(&secret).await.unwrap(), Some(key));
    assert_eq!(store.get_assignment("exp_1", "user_1", assigned_at).await.unwrap(), Some(assignment));
    assert_eq!(store.query(&AuditQuery::default()).await.unwrap(), audit);

    // Writing continues from where it was: versions and revisions keep growing.
    let updated = store
        .apply(
            vec![Write::Update {
                kind: EntityKind::Flag,
                key: "checkout".into(),
                body: json!({"key": "checkout", "enabled": false}),
                expected_version: Some(1),
            }],
            &meta,
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(updated.version, 2);
    assert!(store.revision().await.unwrap() > revision);
}

#[tokio::test]
async fn open_creates_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("vexil-data");
    let store = SqliteStore::open(&data_dir).unwrap();
    assert!(data_dir.join(vexil_store::sqlite::DB_FILE).is_file());
    assert!(!store.has_keys().await.unwrap());
}
