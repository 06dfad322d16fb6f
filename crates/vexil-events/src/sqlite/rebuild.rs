//! Rebuilding a state database in the current layout, offline.
//!
//! SQLite changes a database's page size only by writing the whole file again, so a state
//! database made by an older version keeps its 4 KiB pages when it is opened (see
//! [`super::PAGE_BYTES`]). `vexil rebuild-state` writes it again with the current page size,
//! packed, while no server runs on the data directory: the copy is made beside the database,
//! synced, and then renamed over it, so an interrupted rebuild leaves the database as it was.

use super::{open_db, page_bytes};
use crate::error::Error;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A state database before and after its rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rebuilt {
    pub page_bytes_before: i64,
    pub page_bytes: i64,
    /// The database file with its write-ahead log.
    pub bytes_before: u64,
    pub bytes: u64,
}

/// Writes the state database at `path` again with the current page size. The caller makes sure
/// no other process has it open (`vexil rebuild-state` holds the event log's lock).
pub fn rebuild(path: &Path) -> Result<Rebuilt, Error> {
    if !path.is_file() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no state database at {}", path.display()),
        )));
    }
    let copy = sibling(path, ".rebuilding");
    // What an interrupted rebuild left behind; the database itself was not touched.
    remove_if_present(&copy)?;
    let bytes_before = bytes_with_wal(path)?;
    let page_bytes_before = match write_copy(path, &copy) {
        Ok(page_bytes_before) => page_bytes_before,
        Err(e) => {
            // A partial copy can be as large as the database, on a disk that may just have filled.
            remove_if_present(&copy)?;
            return Err(e);
        }
    };
    std::fs::rename(&copy, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    let page_bytes = page_bytes(&open_db(path)?)?;
    Ok(Rebuilt { page_bytes_before, page_bytes, bytes_before, bytes: bytes_with_wal(path)? })
}

/// Writes the database at `path` into `copy` in the current page size and syncs it, leaving
/// `path` closed with no WAL beside it; the page size it had.
fn write_copy(path: &Path, copy: &Path) -> Result<i64, Error> {
    // Opening brings an older layout up to date first; its page_size pragma sets the page size
    // VACUUM INTO gives the copy.
    let conn = open_db(path)?;
    let page_bytes_before = page_bytes(&conn)?;
    let target = copy.to_str().ok_or_else(|| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the path {} is not UTF-8", copy.display()),
        ))
    })?;
    conn.execute("VACUUM INTO ?1", [target])?;
    // Closing the last connection copies the WAL into the database and removes it.
    conn.close().map_err(|(_, e)| e)?;
    if sibling(path, "-wal").exists() {
        return Err(Error::Io(std::io::Error::other(format!(
            "{} is still in use (its write-ahead log remains); stop what uses it and try again",
            path.display()
        ))));
    }
    File::open(copy)?.sync_all()?;
    Ok(page_bytes_before)
}

/// `path` with `suffix` appended to its file name, as SQLite names a database's WAL.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn bytes_with_wal(path: &Path) -> Result<u64, Error> {
    let wal = std::fs::metadata(sibling(path, "-wal")).map_or(0, |m| m.len());
    Ok(std::fs::metadata(path)?.len() + wal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::UserState;
    use crate::sqlite::tests::{assigned, commit_users, older_database, page_bytes_of};
    use crate::sqlite::{SqliteBackend, LEASE, PAGE_BYTES, STATE_FILE};
    use crate::store::ProcessingBackend;

    /// An older database rebuilt has the small pages, every user it had, and nothing left beside
    /// it; a copy an interrupted rebuild left behind does not stop the next one.
    #[test]
    fn an_older_database_rebuilt_has_small_pages_and_the_same_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        older_database(&path);
        let states: Vec<(String, UserState)> = (0..500)
            .map(|n| (format!("u{n}"), assigned(if n % 2 == 0 { "control" } else { "treatment" }, n)))
            .collect();
        let users: Vec<(&str, &UserState)> = states.iter().map(|(id, state)| (id.as_str(), state)).collect();
        commit_users(&mut *SqliteBackend::open(&path).unwrap().journaling(0).open(LEASE).unwrap(), &users, &[]);
        std::fs::write(dir.path().join(format!("{STATE_FILE}.rebuilding")), b"left by an interrupted rebuild").unwrap();

        let rebuilt = rebuild(&path).unwrap();
        assert_eq!((rebuilt.page_bytes_before, rebuilt.page_bytes), (4096, PAGE_BYTES));
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [STATE_FILE]);
        let ids: Vec<&str> = users.iter().map(|(id, _)| *id).collect();
        let read = SqliteBackend::open(&path).unwrap().open(LEASE).unwrap().users(&ids).unwrap();
        assert_eq!(read.len(), users.len());
        for (id, state) in users {
            assert_eq!(read.get(id), Some(state), "{id}");
        }
    }

    /// A database another connection still has open is left as it was, with no copy beside it:
    /// renaming a copy over it would leave that connection writing to a file no one reads.
    #[test]
    fn a_database_open_elsewhere_is_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        older_database(&path);
        let state = UserState { assignments: vec![] };
        let backend = SqliteBackend::open(&path).unwrap().journaling(0);
        let mut store = backend.open(LEASE).unwrap();
        commit_users(&mut *store, &[("u1", &state)], &[]);

        let refused = rebuild(&path).unwrap_err().to_string();
        assert!(refused.contains("still in use"), "{refused}");
        assert!(!dir.path().join(format!("{STATE_FILE}.rebuilding")).exists());
        assert_eq!(page_bytes_of(&path), 4096);
        assert_eq!(store.users(&["u1"]).unwrap().get("u1"), Some(&state));
    }
}
