//! Reads for the results and stats endpoints. They sum the partitions' rows, so every node
//! answers the same: a user's events are all on one partition, so sums, counts and unique
//! users add up.

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::Pool;
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use vexil_events::aggregate::AggregateRow;
use vexil_events::counters::{CounterRow, EventTotal, Window};
use vexil_events::store::Stats;
use vexil_events::Error;

use super::columns::{counter_at, sums_at};
use super::{db_error, pg, wait};

/// Reads of what every partition committed, summed.
pub(super) struct PostgresStats {
    pub(super) pool: Pool,
    pub(super) runtime: Handle,
}

impl PostgresStats {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, Error> {
        let client = self.pool.get().await.map_err(db_error)?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&statement, params).await.map_err(pg)
    }
}

impl Stats for PostgresStats {
    fn checkpoints(&self) -> Result<Vec<(u32, u64)>, Error> {
        let rows = wait(&self.runtime, self.query("SELECT log_partition, next_offset FROM event_partitions", &[]))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((u32::try_from(r.get::<_, i32>(0)).ok()?, u64::try_from(r.get::<_, i64>(1)).ok()?)))
            .collect())
    }

    fn aggregates(&self, experiment: &str) -> Result<Vec<AggregateRow>, Error> {
        let rows = wait(
            &self.runtime,
            self.query(
                "SELECT experiment, variant, metric, SUM(n)::BIGINT, SUM(sum_x), SUM(sum_x2), SUM(sum_y),
                     SUM(sum_y2), SUM(sum_xy)
                 FROM event_aggregates WHERE experiment = $1
                 GROUP BY experiment, variant, metric ORDER BY variant, metric",
                &[&experiment],
            ),
        )?;
        Ok(rows
            .iter()
            .map(|r| AggregateRow { experiment: r.get(0), variant: r.get(1), metric: r.get(2), sums: sums_at(r, 3) })
            .collect())
    }

    fn counters(
        &self,
        event: &str,
        experiment: Option<&str>,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error> {
        let (experiment, from, to) = (experiment.unwrap_or(""), from.timestamp(), to.timestamp());
        let rows = wait(
            &self.runtime,
            self.query(
                "SELECT start, event, experiment, variant, SUM(count)::BIGINT, SUM(sum), SUM(users)::BIGINT
                 FROM event_counters
                 WHERE period = $1 AND event = $2 AND experiment = $3 AND start >= $4 AND start < $5
                 GROUP BY start, event, experiment, variant ORDER BY start, variant",
                &[&window.name(), &event, &experiment, &from, &to],
            ),
        )?;
        Ok(rows
            .iter()
            .map(|r| CounterRow {
                start: Utc.timestamp_opt(r.get(0), 0).single().unwrap_or_default(),
                event: r.get(1),
                experiment: r.get(2),
                variant: r.get(3),
                counter: counter_at(r, 4),
            })
            .collect())
    }

    fn event_totals(&self, window: Window, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EventTotal>, Error> {
        let rows = wait(
            &self.runtime,
            self.query(
                "SELECT event, SUM(count)::BIGINT, SUM(sum) FROM event_counters
                 WHERE period = $1 AND experiment = '' AND start >= $2 AND start < $3
                 GROUP BY event ORDER BY event",
                &[&window.name(), &from.timestamp(), &to.timestamp()],
            ),
        )?;
        Ok(rows
            .iter()
            .map(|r| EventTotal { event: r.get(0), count: r.get::<_, i64>(1) as u64, sum: r.get(2) })
            .collect())
    }
}
