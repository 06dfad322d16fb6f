//! Rebuilding a state database in the current layout, offline.
//!
//! SQLite changes a database's page size only by writing the whole file again, so a state
//! database made by an older version keeps its 4 KiB pages when it is opened (see
//! [`super::PAGE_BYTES`]). `vexil rebuild-state` writes it again with the current page size,
//! packed, while no server runs on the data directory: the copy is made beside the database,
//! synced, and then renamed over it, so an interrupted rebuild leaves the database as it was.

use super::open_db;
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
    let conn = open_db(path)?;
    let page_bytes: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
    drop(conn);
    Ok(Rebuilt { page_bytes_before, page_bytes, bytes_before, bytes: bytes_with_wal(path)? })
}

/// Writes the database at `path` into `copy` in the current page size and syncs it, leaving
/// `path` closed with no WAL beside it; the page size it had.
fn write_copy(path: &Path, copy: &Path) -> Result<i64, Error> {
    // Opening brings an older layout up to date first; its page_size pragma sets the page size
    // VACUUM INTO gives the copy.
    let conn = open_db(path)?;
    let page_bytes_before: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
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
