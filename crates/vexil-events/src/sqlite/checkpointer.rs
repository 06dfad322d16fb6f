//! Copying the state database's write-ahead log into the database file, on a thread of its own.
//!
//! SQLite copies the WAL back (a checkpoint) inside the commit that grows it past its limit,
//! which put a tenth of the processor's time, and an fsync of the database file, on the
//! processor's thread. The checkpointer does it beside the processor instead, on its own
//! connection, a short while after commits: a passive checkpoint never waits for the writer nor
//! makes it wait. The processor's connection keeps a large automatic checkpoint as the WAL's
//! bound: the WAL starts over only from it while commits keep coming (see [`WAL_BOUND_BYTES`]),
//! and it holds the WAL should this thread fall behind or fail.

use crate::error::Error;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the checkpointer lets commits gather after the first one before it checkpoints: each
/// checkpoint syncs the database file, so fewer, larger ones.
const GATHER: Duration = Duration::from_millis(100);

/// The WAL size at which the processor's own connection checkpoints, and to which a longer WAL
/// is cut back when it starts over.
///
/// Under a sustained load of returning users the checkpointer's passive checkpoints copy the WAL
/// but never finish it (commits land meanwhile), so the WAL only starts over from a checkpoint
/// on the processor's connection at this bound, with an fsync of the database file on the
/// processor's thread. At 64 MiB that came every half second with 20 M users known; 512 MiB
/// makes it an eighth as often (returning users processed 13–18 % faster), for up to 512 MiB of
/// WAL on disk.
const WAL_BOUND_BYTES: i64 = 512 * 1024 * 1024;

/// Bounds the WAL of `conn`, the processor's connection, at [`WAL_BOUND_BYTES`] in pages of the
/// database's own size (older state databases have larger pages than new ones).
pub(super) fn bound_wal(conn: &Connection) -> Result<(), Error> {
    conn.pragma_update(None, "wal_autocheckpoint", WAL_BOUND_BYTES / super::page_bytes(conn)?)?;
    // A WAL past the bound is cut back to it when it starts over, instead of keeping its largest
    // size on disk for good.
    conn.pragma_update(None, "journal_size_limit", WAL_BOUND_BYTES)?;
    Ok(())
}

/// The checkpointer of one state database; stops (and is waited for) when dropped.
pub(super) struct Checkpointer {
    committed: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` after the commits it is told of.
    pub fn start(path: &Path) -> Result<Checkpointer, Error> {
        let conn = Connection::open(path)?;
        let (committed, commits) = channel::<()>();
        let thread = std::thread::Builder::new().name("vexil-state-checkpointer".into()).spawn(move || {
            crate::background::lower_priority();
            while commits.recv().is_ok() {
                let until = Instant::now() + GATHER;
                loop {
                    match commits.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(()) => continue,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpointing the event state's write-ahead log failed; will retry");
                }
            }
        })?;
        Ok(Checkpointer { committed: Some(committed), thread: Some(thread) })
    }

    /// A commit was made: checkpoint soon.
    pub fn committed(&self) {
        if let Some(committed) = &self.committed {
            // A checkpointer that has stopped leaves the WAL to the automatic bound.
            let _ = committed.send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.committed.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL's bound is the same number of bytes in a database of either page size.
    #[test]
    fn the_wal_is_bounded_in_bytes_whatever_the_page_size() {
        let dir = tempfile::tempdir().unwrap();
        for page_bytes in [2048_i64, 4096] {
            let conn = Connection::open(dir.path().join(format!("{page_bytes}.sqlite"))).unwrap();
            conn.pragma_update(None, "page_size", page_bytes).unwrap();
            conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x);").unwrap();
            bound_wal(&conn).unwrap();
            let pages: i64 = conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0)).unwrap();
            assert_eq!(pages * page_bytes, WAL_BOUND_BYTES, "{page_bytes}-byte pages");
        }
    }
}
