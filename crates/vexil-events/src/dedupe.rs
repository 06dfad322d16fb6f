//! Dedupe: each `event_id` is counted once, however often it is delivered (SPEC 1.4), within a
//! window (default 7 days) of its first delivery.
//!
//! The first delivery's id is stored with its log offset in the state database, inside the same
//! transaction that applies the event to the aggregates and advances the checkpoint. A crash
//! therefore either keeps all three or none: a redelivery can never be counted twice, and an
//! event can never be marked seen without being counted. Only sender-given ids are stored; a
//! generated id is a fresh UUID and cannot come back.

use crate::error::Error;
use rusqlite::{params, Connection, OptionalExtension};

/// Whether the record at `offset` carries an id already delivered at another offset; records
/// the id when it is new. Asking again for the same offset (a replay) answers `false`.
pub fn is_duplicate(conn: &Connection, event_id: &str, offset: u64, received_at: i64) -> Result<bool, Error> {
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO dedupe (event_id, log_offset, seen_at) VALUES (?1, ?2, ?3)")?
        .execute(params![event_id, offset as i64, received_at])?;
    if inserted == 1 {
        return Ok(false);
    }
    let first: Option<i64> = conn
        .prepare_cached("SELECT log_offset FROM dedupe WHERE event_id = ?1")?
        .query_row([event_id], |r| r.get(0))
        .optional()?;
    Ok(first != Some(offset as i64))
}

/// Forgets ids first delivered before `before` (Unix ms): the end of the dedupe window.
pub fn expire(conn: &Connection, before: i64) -> Result<usize, Error> {
    Ok(conn.prepare_cached("DELETE FROM dedupe WHERE seen_at < ?1")?.execute([before])?)
}
