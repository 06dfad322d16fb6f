//! Reading the state database's rows into the pipeline's types: the columns the store and the
//! stats both read.

use crate::aggregate::Sums;
use crate::counters::Counter;

/// n, Σx, Σx², Σy, Σy², Σxy from `row`, starting at column `first`.
pub(super) fn sums_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Sums> {
    Ok(Sums {
        n: row.get::<_, i64>(first)? as u64,
        sum_x: row.get(first + 1)?,
        sum_x2: row.get(first + 2)?,
        sum_y: row.get(first + 3)?,
        sum_y2: row.get(first + 4)?,
        sum_xy: row.get(first + 5)?,
    })
}

/// count, sum, unique users from `row`, starting at column `first`.
pub(super) fn counter_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Counter> {
    Ok(Counter {
        count: row.get::<_, i64>(first)? as u64,
        sum: row.get(first + 1)?,
        unique_users: row.get::<_, i64>(first + 2)? as u64,
    })
}
