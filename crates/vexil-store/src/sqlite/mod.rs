//! The embedded backend: one SQLite database file, `<data_dir>/vexil.db`, so `vexil serve`
//! needs no other process. Several processes (the server and the CLI) may open the same data
//! directory at once; SQLite's file locking keeps them consistent.
//!
//! Connections: one writer connection behind a mutex, plus a small pool of reader connections.
//! SQLite admits one writer at a time anyway, so serialising writes in-process costs nothing
//! and means this process never fights itself for the write lock — only other processes do,
//! and the busy timeout absorbs that. WAL mode lets readers run beside the writer, so reads
//! never queue behind writes. Every rusqlite call runs under `spawn_blocking`: it does file
//! I/O (and fsync) and must not stall the async workers. A dedicated writer thread would have
//! served as well; the mutex is simpler and batching is already explicit in the API
//! (`apply`, `assign_many_if_absent`).
//!
//! Change notification: every document write bumps the one-row `revision` table inside its
//! transaction. Writes through this handle publish the new revision at once; a background
//! thread polls the table every 250 ms to notice commits made by other processes.
//!
//! Checkpoints: the same background thread copies the WAL back into the database file
//! (`wal_checkpoint(PASSIVE)`, which never blocks the writer) on every tick, and the writer
//! connection does not checkpoint itself. SQLite's default is for the commit that pushes the
//! WAL past 1,000 pages to checkpoint, fsync of the database file included, before it
//! returns — and that commit is a group commit of first assignments that up to a thousand
//! requests are waiting for.

mod assignments;
mod audit;
mod codec;
mod documents;
mod keys;
mod migrations;
mod users;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::watch;

use crate::{Flush, StoreError};

/// The name of the database file inside the data directory.
pub const DB_FILE: &str = "vexil.db";

/// How long a connection waits for another process's write lock before failing. Write
/// transactions here are short (milliseconds), so seconds of waiting means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often other processes' commits are looked for. Well inside the 1 s the spec allows for
/// a configuration change to reach every node, and a one-row read costs next to nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Idle reader connections kept for reuse; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 4;

/// A [`Store`](crate::Store) on an SQLite database in a data directory.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    revision: watch::Sender<u64>,
    /// Never sent on: dropping it (with the last handle) stops the polling thread.
    _stop_polling: mpsc::Sender<()>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database in `data_dir` and migrates its schema. This
    /// blocks briefly on file I/O; it is meant for startup.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Backend(format!("cannot create the data directory {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DB_FILE);
        let mut writer = connect(&path)?;
        // WAL: readers never block the writer nor the writer the readers, and a commit is one
        // sequential append. The mode is persistent in the file; setting it each open is cheap.
        let mode: String = writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "SQLite refused WAL mode for {} (got {mode}); is it on a network filesystem?",
                path.display()
            )));
        }
        migrations::migrate(&mut writer)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (revision, _) = watch::channel(documents::read_revision(&writer)?);

        let poller = reader(&path)?;
        let checkpointer = connect(&path)?;
        let (stop_tx, stop_rx) = mpsc::channel();
        let published = revision.clone();
        thread::Builder::new()
            .name("vexil-store-upkeep".into())
            .spawn(move || upkeep(&poller, &checkpointer, &published, &stop_rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the upkeep thread: {e}")))?;

        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                revision,
                _stop_polling: stop_tx,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in an immediate write transaction — the write lock is taken at BEGIN, so a
    /// transaction never fails half-way to upgrade a read lock — and commits if it succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_flushed(Flush::OnCommit, f).await
    }

    /// [`write`](Self::write), with the commit flushed to disk as `flush` says.
    async fn write_flushed<T, F>(&self, flush: Flush, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            // Set on every write, so no transaction inherits another's level. NORMAL in WAL
            // mode commits without an fsync of the WAL; the next FULL commit or checkpoint
            // syncs the whole file, this transaction's frames included.
            let synchronous = match flush {
                Flush::OnCommit => "PRAGMA synchronous = FULL",
                Flush::Background => "PRAGMA synchronous = NORMAL",
            };
            conn.prepare_cached(synchronous)?.execute([])?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Runs `f` on a reader connection.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let idle = lock(&inner.readers).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => reader(&inner.path)?,
            };
            let value = f(&conn);
            let mut readers = lock(&inner.readers);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            value
        })
        .await
    }

    /// Tells watchers about a revision this handle committed.
    fn publish(&self, revision: u64) {
        crate::change::publish_revision(&self.inner.revision, revision);
    }
}

/// Opens a connection with the settings every connection needs.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open the database {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL rather than NORMAL. In WAL mode both survive a crash of the process: a commit is in
    // the WAL file, in the OS's hands, before it returns. They differ on power loss or an OS
    // crash: NORMAL fsyncs only at checkpoints, so the last transactions acknowledged before
    // the loss can vanish (the database stays consistent, just older). Here a commit is an
    // admin's acknowledged change or an audit record, so losing one is worse than an fsync
    // per transaction. The one high-rate write, first assignments, is group-committed
    // through `assign_many_if_absent`, which may choose NORMAL (see `Flush`).
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// A connection that cannot write, so a bug cannot write outside the writer's serialisation.
fn reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = connect(path)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Every tick: publishes other processes' commits and checkpoints the WAL.
fn upkeep(poller: &Connection, checkpointer: &Connection, revision: &watch::Sender<u64>, stop: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(POLL_INTERVAL) {
        // A failed read (say, the file briefly locked while another process recovers its WAL)
        // only delays notification to the next tick.
        if let Ok(current) = documents::read_revision(poller) {
            crate::change::publish_revision(revision, current);
        }
        // Likewise a checkpoint that fails (busy) is tried again next tick; the WAL only grows
        // meanwhile.
        if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "WAL checkpoint deferred");
        }
    }
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
}

/// A poisoned lock only means another task panicked while holding it; the connection inside
/// is still sound (rusqlite rolls back an unfinished transaction when it is dropped).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Assignment, AssignmentStore};

    #[test]
    fn open_migrates_once_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = connect(store.path()).unwrap();
        assert_eq!(migrations::version(&conn).unwrap(), migrations::LATEST);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(store);

        // Reopening must not run migrations again (they would fail on existing tables).
        SqliteStore::open(dir.path()).unwrap();

        conn.execute("INSERT INTO schema_version (version) VALUES (?1)", [migrations::LATEST + 1]).unwrap();
        let err = SqliteStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[tokio::test]
    async fn only_assignment_batches_that_ask_for_it_commit_without_an_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let synchronous =
            || -> i64 { lock(&store.inner.writer).pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap() };
        let (normal, full) = (1, 2);
        let a = Assignment {
            experiment_id: "exp_1".into(),
            unit: "user_1".into(),
            variant: "control".into(),
            assignment_id: "a1".into(),
            assigned_at: crate::now(),
            expires_at: None,
        };
        store.assign_many_if_absent(vec![a.clone()], Flush::Background).await.unwrap();
        assert_eq!(synchronous(), normal);
        // The next write of anything else is flushed on commit again.
        store.assign_if_absent(a).await.unwrap();
        assert_eq!(synchronous(), full);
    }

    #[test]
    fn the_audit_table_rejects_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = connect(store.path()).unwrap();
        conn.execute("INSERT INTO audit (at, actor, action, entity, key) VALUES ('t', 'a', 'b', 'flag', 'k')", [])
            .unwrap();
        for sql in ["UPDATE audit SET actor = 'x'", "DELETE FROM audit"] {
            let err = conn.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
    }
}
