//! Counters' integer ids (`counter_ids`), by which memberships name the counters, and the ones
//! kept in memory.

use crate::counters::CounterKey;
use crate::error::Error;
use hashbrown::HashMap;
use rusqlite::{Connection, OptionalExtension};

/// Counter ids kept in memory at most; past it they are forgotten and read again as needed.
const COUNTER_IDS_KEPT: usize = 100_000;

/// The ids of counters (`counter_ids`) that memberships were looked up or written for. An id
/// never changes once committed, so it is kept instead of read again at every batch.
#[derive(Default)]
pub(super) struct CounterIds {
    committed: HashMap<CounterKey, i64>,
}

impl CounterIds {
    /// The committed id of `key`, if the counter has one (a counter without one has no members).
    pub fn find(&mut self, conn: &Connection, key: &CounterKey) -> Result<Option<i64>, Error> {
        if let Some(id) = self.committed.get(key) {
            return Ok(Some(*id));
        }
        let id = select_counter_id(conn, key)?;
        if let Some(id) = id {
            self.keep([(key.clone(), id)]);
        }
        Ok(id)
    }

    /// The id of `key` in `tx`, given one there if the counter has none yet. Ids read or given
    /// in `tx` go to `seen`, to be kept once `tx` commits ([`CounterIds::keep`]): a rolled-back
    /// id may be given to another counter.
    pub fn find_or_give(
        &self,
        tx: &Connection,
        key: &CounterKey,
        seen: &mut Vec<(CounterKey, i64)>,
    ) -> Result<i64, Error> {
        if let Some(id) = self.committed.get(key) {
            return Ok(*id);
        }
        let id = match select_counter_id(tx, key)? {
            Some(id) => id,
            None => tx
                .prepare_cached(
                    "INSERT INTO counter_ids (window, start, event, experiment, variant)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )?
                .query_row(counter_params(key), |r| r.get(0))?,
        };
        seen.push((key.clone(), id));
        Ok(id)
    }

    pub fn keep(&mut self, ids: impl IntoIterator<Item = (CounterKey, i64)>) {
        if self.committed.len() > COUNTER_IDS_KEPT {
            self.committed.clear();
        }
        self.committed.extend(ids);
    }
}

fn select_counter_id(conn: &Connection, key: &CounterKey) -> Result<Option<i64>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM counter_ids WHERE window = ?1 AND start = ?2 AND event = ?3 AND experiment = ?4 AND variant = ?5",
    )?;
    Ok(stmt.query_row(counter_params(key), |r| r.get(0)).optional()?)
}

fn counter_params(key: &CounterKey) -> (&'static str, i64, &str, &str, &str) {
    (key.window.name(), key.start, &key.event, &key.experiment, &key.variant)
}

/// A memo of one call's counter ids. The keys of one call are references into the processor's
/// counters, one per counter, so their addresses tell them apart without hashing their strings
/// at every membership (equal keys at two addresses only cost a second lookup).
pub(super) type ByAddress<T> = HashMap<*const CounterKey, T>;
