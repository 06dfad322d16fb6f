//! What results and stats read from the embedded state database, beside the processor.

use super::columns::{counter_at, sums_at};
use super::{committed_offset, LEASE};
use crate::aggregate::AggregateRow;
use crate::counters::{CounterRow, EventTotal, Window};
use crate::error::Error;
use crate::store::Stats;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OpenFlags};
use std::path::Path;

/// Read access to an embedded state database (a read-only connection; the processor keeps
/// writing beside it, WAL lets both go on).
pub struct SqliteStats {
    conn: Connection,
}

impl SqliteStats {
    /// Opens the state database at `path` for reading.
    pub fn open(path: &Path) -> Result<SqliteStats, Error> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(SqliteStats { conn })
    }
}

impl Stats for SqliteStats {
    fn checkpoints(&self) -> Result<Vec<(u32, u64)>, Error> {
        Ok(committed_offset(&self.conn)?.map(|offset| (LEASE.partition, offset)).into_iter().collect())
    }

    fn aggregates(&self, experiment: &str) -> Result<Vec<AggregateRow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy FROM aggregates
             WHERE experiment = ?1 ORDER BY variant, metric",
        )?;
        let rows = stmt.query_map([experiment], |r| {
            Ok(AggregateRow { experiment: r.get(0)?, variant: r.get(1)?, metric: r.get(2)?, sums: sums_at(r, 3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn counters(
        &self,
        event: &str,
        experiment: Option<&str>,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT start, event, experiment, variant, count, sum, users FROM counters
             WHERE window = ?1 AND event = ?2 AND experiment = ?3 AND start >= ?4 AND start < ?5
             ORDER BY start, variant",
        )?;
        let rows = stmt.query_map(
            params![window.name(), event, experiment.unwrap_or(""), from.timestamp(), to.timestamp()],
            |r| {
                Ok(CounterRow {
                    start: Utc.timestamp_opt(r.get(0)?, 0).single().unwrap_or_default(),
                    event: r.get(1)?,
                    experiment: r.get(2)?,
                    variant: r.get(3)?,
                    counter: counter_at(r, 4)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn event_totals(&self, window: Window, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EventTotal>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event, SUM(count), SUM(sum) FROM counters
             WHERE window = ?1 AND experiment = '' AND start >= ?2 AND start < ?3
             GROUP BY event ORDER BY event",
        )?;
        let rows = stmt.query_map(params![window.name(), from.timestamp(), to.timestamp()], |r| {
            Ok(EventTotal { event: r.get(0)?, count: r.get::<_, i64>(1)? as u64, sum: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
