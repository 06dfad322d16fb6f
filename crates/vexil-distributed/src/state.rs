//! The distributed mode's processing state: every partition's state in one PostgreSQL
//! database shared by the nodes (the tables of `migrations/`, each keyed by `log_partition`),
//! with the partitions shared among the nodes by the [`group`](crate::group).
//!
//! - A partition's commit is one transaction: the fence (its `event_partitions` row, updated
//!   only if this node still owns it under its epoch, carrying the new checkpoint), then the
//!   changed users, aggregates, counters, new unique users, dedupe ids and open archive
//!   buffers, each table in one statement over arrays (`UNNEST`), all sent at once (pipelined)
//!   so a commit costs one round trip and a few statements, whatever the batch size.
//! - Reads for the results and stats endpoints sum the partitions' rows, so every node answers
//!   the same: a user's events are all on one partition, so sums, counts and unique users add up.
//!
//! The pipeline's traits are blocking (processors run on their own threads); calls go to the
//! tokio runtime the backend was created in.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::Pool;
use futures_util::future::try_join_all;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use vexil_events::aggregate::{AggregateKey, AggregateRow, Sums};
use vexil_events::archive::OpenFile;
use vexil_events::counters::{Counter, CounterKey, CounterRow, Window};
use vexil_events::store::{Changes, Committed, Lease, PartitionStore, StateBackend, Stats};
use vexil_events::Error;
use vexil_store::postgres::{connection_pool, migrate, Schema};

use crate::group::{Group, GroupOptions};

/// The pipeline's tables, versioned apart from the store's.
const SCHEMA: Schema = Schema {
    version_table: "events_schema_version",
    migrations: &[include_str!("migrations/0001_event_processing.sql")],
};

/// Connections per node for processing: one per busy processor, the heartbeat and readers.
const POOL_SIZE: usize = 10;

/// A PostgreSQL failure as the pipeline's error.
pub(crate) fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("PostgreSQL: {e}"))
}

fn pg(e: tokio_postgres::Error) -> Error {
    // `Display` of a server error is only "db error"; the message is in the source.
    match e.as_db_error() {
        Some(db) => db_error(db),
        None => db_error(e),
    }
}

/// The processing state of the distributed mode.
pub struct PostgresBackend {
    pool: Pool,
    group: Arc<Group>,
    runtime: Handle,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresBackend {
    /// Connects to the database at `url`, creates the pipeline's tables, checks that they are
    /// the state of `topic` with `partitions` partitions (creating the partitions' rows for a
    /// new database), joins the consumer group and takes a first share of the partitions.
    /// Must run inside the tokio runtime that will carry the requests.
    pub async fn connect(
        url: &str,
        topic: &str,
        partitions: u32,
        options: GroupOptions,
    ) -> Result<PostgresBackend, String> {
        let (pool, _) = connection_pool(url, POOL_SIZE).map_err(|e| e.to_string())?;
        let mut client = pool.get().await.map_err(|e| format!("cannot reach the database: {e}"))?;
        migrate(&mut client, &SCHEMA).await.map_err(|e| e.to_string())?;
        let count = partitions as i32;
        client
            .execute(
                "INSERT INTO event_topic (id, topic, partitions) VALUES (0, $1, $2) ON CONFLICT (id) DO NOTHING",
                &[&topic, &count],
            )
            .await
            .map_err(pg)
            .map_err(|e| e.to_string())?;
        let row = client
            .query_one("SELECT topic, partitions FROM event_topic", &[])
            .await
            .map_err(pg)
            .map_err(|e| e.to_string())?;
        let (known_topic, known_partitions): (String, i32) = (row.get(0), row.get(1));
        if (known_topic.as_str(), known_partitions) != (topic, count) {
            return Err(format!(
                "the database holds the processing state of topic {known_topic} with {known_partitions} \
                 partitions, but the event bus is topic {topic} with {partitions}: every node must read \
                 the same topic, and a topic's partition count must not change (it would move users \
                 between partitions)"
            ));
        }
        client
            .execute(
                "INSERT INTO event_partitions (log_partition) SELECT generate_series(0, $1 - 1)
                 ON CONFLICT (log_partition) DO NOTHING",
                &[&count],
            )
            .await
            .map_err(pg)
            .map_err(|e| e.to_string())?;
        drop(client);
        let group = Arc::new(Group::new(pool.clone(), node_name(), partitions, options));
        group.tick().await.map_err(|e| format!("cannot join the consumer group: {e}"))?;
        let heartbeat = tokio::spawn({
            let group = group.clone();
            async move { group.run().await }
        });
        Ok(PostgresBackend { pool, group, runtime: Handle::current(), heartbeat: Mutex::new(Some(heartbeat)) })
    }

    /// This node's name in the consumer group.
    pub fn node(&self) -> &str {
        self.group.node()
    }
}

/// A name no other process has: the host, the process and a random part.
fn node_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "node".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Runs `future` on `runtime` from blocking code: a processor's thread, a blocking task, or an
/// async handler (whose worker thread is handed over to other tasks meanwhile).
fn wait<F: Future>(runtime: &Handle, future: F) -> F::Output {
    tokio::task::block_in_place(|| runtime.block_on(future))
}

impl StateBackend for PostgresBackend {
    fn leases(&self) -> Vec<Lease> {
        self.group.leases()
    }

    fn open(&self, lease: Lease) -> Result<Box<dyn PartitionStore>, Error> {
        Ok(Box::new(PostgresPartition {
            pool: self.pool.clone(),
            runtime: self.runtime.clone(),
            lease,
            node: self.group.node().to_owned(),
        }))
    }

    fn released(&self, lease: Lease) {
        // If freeing fails, the lease expires on its own and another node takes it then.
        let _ = wait(&self.runtime, self.group.release(lease));
    }

    fn stats(&self) -> Result<Box<dyn Stats>, Error> {
        Ok(Box::new(PostgresStats { pool: self.pool.clone(), runtime: self.runtime.clone() }))
    }

    fn holds(&self, lease: Lease) -> bool {
        self.group.holds(lease)
    }

    fn leave(&self) {
        if let Some(heartbeat) = self.heartbeat.lock().expect("heartbeat poisoned").take() {
            heartbeat.abort();
        }
        // If this fails, the membership and leases expire on their own.
        let _ = wait(&self.runtime, self.group.leave());
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.lock().expect("heartbeat poisoned").take() {
            heartbeat.abort();
        }
    }
}

/// One partition's state, under one lease.
struct PostgresPartition {
    pool: Pool,
    runtime: Handle,
    lease: Lease,
    node: String,
}

impl PostgresPartition {
    fn partition(&self) -> i32 {
        self.lease.partition as i32
    }
}

/// Columns of counter keys, as arrays for `UNNEST`.
#[derive(Default)]
struct KeyColumns<'a> {
    periods: Vec<&'static str>,
    starts: Vec<i64>,
    events: Vec<&'a str>,
    experiments: Vec<&'a str>,
    variants: Vec<&'a str>,
}

impl<'a> KeyColumns<'a> {
    fn push(&mut self, key: &'a CounterKey) {
        self.periods.push(key.window.name());
        self.starts.push(key.start);
        self.events.push(&key.event);
        self.experiments.push(&key.experiment);
        self.variants.push(&key.variant);
    }
}

fn counter_key(row: &tokio_postgres::Row) -> Result<CounterKey, Error> {
    let period: String = row.get(0);
    Ok(CounterKey {
        window: Window::parse(&period).ok_or_else(|| db_error(format!("unknown counter period {period:?}")))?,
        start: row.get(1),
        event: row.get(2),
        experiment: row.get(3),
        variant: row.get(4),
    })
}

fn sums_at(row: &tokio_postgres::Row, first: usize) -> Sums {
    Sums {
        n: row.get::<_, i64>(first) as u64,
        sum_x: row.get(first + 1),
        sum_x2: row.get(first + 2),
        sum_y: row.get(first + 3),
        sum_y2: row.get(first + 4),
        sum_xy: row.get(first + 5),
    }
}

fn counter_at(row: &tokio_postgres::Row, first: usize) -> Counter {
    Counter {
        count: row.get::<_, i64>(first) as u64,
        sum: row.get(first + 1),
        unique_users: row.get::<_, i64>(first + 2) as u64,
    }
}

impl PartitionStore for PostgresPartition {
    fn load(&mut self) -> Result<Committed, Error> {
        let p = self.partition();
        wait(&self.runtime, async {
            let client = self.pool.get().await.map_err(db_error)?;
            let next_offset: i64 = client
                .query_one("SELECT next_offset FROM event_partitions WHERE log_partition = $1", &[&p])
                .await
                .map_err(pg)?
                .get(0);
            let mut users = HashMap::new();
            for row in client
                .query("SELECT user_id, state FROM event_users WHERE log_partition = $1", &[&p])
                .await
                .map_err(pg)?
            {
                users.insert(row.get(0), serde_json::from_str(row.get(1))?);
            }
            let mut sums = HashMap::new();
            for row in client
                .query(
                    "SELECT experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy
                     FROM event_aggregates WHERE log_partition = $1",
                    &[&p],
                )
                .await
                .map_err(pg)?
            {
                let key: AggregateKey = (row.get(0), row.get(1), row.get(2));
                sums.insert(key, sums_at(&row, 3));
            }
            let open_files = client
                .query(
                    "SELECT archive_partition, first_offset, first_received FROM event_archive_open
                     WHERE log_partition = $1",
                    &[&p],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|r| OpenFile {
                    partition: r.get(0),
                    first_offset: r.get::<_, i64>(1) as u64,
                    first_received: r.get(2),
                })
                .collect();
            Ok(Committed { next_offset: next_offset as u64, open_files, users, sums })
        })
    }

    fn first_deliveries(&mut self, ids: &[&str]) -> Result<HashMap<String, u64>, Error> {
        let p = self.partition();
        wait(&self.runtime, async {
            let client = self.pool.get().await.map_err(db_error)?;
            let statement = client
                .prepare_cached(
                    "SELECT event_id, log_offset FROM event_dedupe WHERE log_partition = $1 AND event_id = ANY($2)",
                )
                .await
                .map_err(pg)?;
            let rows = client.query(&statement, &[&p, &ids]).await.map_err(pg)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
        })
    }

    fn counters(&mut self, keys: &[&CounterKey]) -> Result<Vec<(CounterKey, Counter)>, Error> {
        let p = self.partition();
        let mut k = KeyColumns::default();
        keys.iter().for_each(|key| k.push(key));
        wait(&self.runtime, async {
            let client = self.pool.get().await.map_err(db_error)?;
            let statement = client
                .prepare_cached(
                    "SELECT k.period, k.start, k.event, k.experiment, k.variant, c.count, c.sum, c.users
                     FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[])
                         AS k(period, start, event, experiment, variant)
                     JOIN event_counters c ON c.log_partition = $1 AND c.period = k.period
                         AND c.event = k.event AND c.experiment = k.experiment AND c.start = k.start
                         AND c.variant = k.variant",
                )
                .await
                .map_err(pg)?;
            let params: [&(dyn ToSql + Sync); 6] = [&p, &k.periods, &k.starts, &k.events, &k.experiments, &k.variants];
            let rows = client.query(&statement, &params).await.map_err(pg)?;
            rows.iter().map(|r| Ok((counter_key(r)?, counter_at(r, 5)))).collect()
        })
    }

    fn known_members(&mut self, members: &[(&CounterKey, &str)]) -> Result<HashSet<(CounterKey, String)>, Error> {
        let p = self.partition();
        let mut k = KeyColumns::default();
        let mut users = Vec::with_capacity(members.len());
        for (key, user) in members {
            k.push(key);
            users.push(*user);
        }
        wait(&self.runtime, async {
            let client = self.pool.get().await.map_err(db_error)?;
            let statement = client
                .prepare_cached(
                    "SELECT k.period, k.start, k.event, k.experiment, k.variant, k.user_id
                     FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[])
                         AS k(period, start, event, experiment, variant, user_id)
                     JOIN event_counter_users u ON u.log_partition = $1 AND u.period = k.period
                         AND u.start = k.start AND u.event = k.event AND u.experiment = k.experiment
                         AND u.variant = k.variant AND u.user_id = k.user_id",
                )
                .await
                .map_err(pg)?;
            let params: [&(dyn ToSql + Sync); 7] =
                [&p, &k.periods, &k.starts, &k.events, &k.experiments, &k.variants, &users];
            let rows = client.query(&statement, &params).await.map_err(pg)?;
            rows.iter().map(|r| Ok((counter_key(r)?, r.get(5)))).collect()
        })
    }

    fn commit(&mut self, changes: Changes<'_>) -> Result<(), Error> {
        let p = self.partition();
        let (node, epoch) = (self.node.as_str(), self.lease.epoch as i64);
        let next = changes.next_offset as i64;

        let (user_ids, states): (Vec<&str>, Vec<String>) = changes
            .users
            .iter()
            .map(|(u, s)| Ok((*u, serde_json::to_string(s)?)))
            .collect::<Result<Vec<_>, Error>>()?
            .into_iter()
            .unzip();
        let mut sums = SumColumns::default();
        changes.sums.iter().for_each(|(key, s)| sums.push(key, s));
        let mut counters = KeyColumns::default();
        let (mut counts, mut totals, mut uniques) = (Vec::new(), Vec::new(), Vec::new());
        for (key, c) in &changes.counters {
            counters.push(key);
            counts.push(c.count as i64);
            totals.push(c.sum);
            uniques.push(c.unique_users as i64);
        }
        let mut members = KeyColumns::default();
        let member_users: Vec<&str> = changes.counter_users.iter().map(|(_, u)| *u).collect();
        changes.counter_users.iter().for_each(|(key, _)| members.push(key));
        let ids: Vec<&str> = changes.deliveries.iter().map(|d| d.event_id.as_str()).collect();
        let offsets: Vec<i64> = changes.deliveries.iter().map(|d| d.offset as i64).collect();
        let seen: Vec<i64> = changes.deliveries.iter().map(|d| d.received_at).collect();
        let open_partitions: Vec<&str> = changes.open_files.iter().map(|o| o.partition.as_str()).collect();
        let open_offsets: Vec<i64> = changes.open_files.iter().map(|o| o.first_offset as i64).collect();
        let open_received: Vec<i64> = changes.open_files.iter().map(|o| o.first_received).collect();

        wait(&self.runtime, async {
            let mut client = self.pool.get().await.map_err(db_error)?;
            let tx = client.transaction().await.map_err(pg)?;
            // Statements of one transaction, sent together; the fence comes first, and takes
            // the partition's row lock until the commit.
            let mut statements: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = vec![(
                "UPDATE event_partitions SET next_offset = $2
                 WHERE log_partition = $1 AND owner = $3 AND epoch = $4",
                vec![&p, &next, &node, &epoch],
            )];
            if !user_ids.is_empty() {
                statements.push((
                    "INSERT INTO event_users (log_partition, user_id, state)
                     SELECT $1, * FROM UNNEST($2::text[], $3::text[])
                     ON CONFLICT (log_partition, user_id) DO UPDATE SET state = excluded.state",
                    vec![&p, &user_ids, &states],
                ));
            }
            if !sums.experiments.is_empty() {
                statements.push((
                    "INSERT INTO event_aggregates
                         (log_partition, experiment, variant, metric, n, sum_x, sum_x2, sum_y, sum_y2, sum_xy)
                     SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::float8[],
                         $7::float8[], $8::float8[], $9::float8[], $10::float8[])
                     ON CONFLICT (experiment, variant, metric, log_partition) DO UPDATE SET n = excluded.n,
                         sum_x = excluded.sum_x, sum_x2 = excluded.sum_x2, sum_y = excluded.sum_y,
                         sum_y2 = excluded.sum_y2, sum_xy = excluded.sum_xy",
                    vec![
                        &p,
                        &sums.experiments,
                        &sums.variants,
                        &sums.metrics,
                        &sums.n,
                        &sums.sum_x,
                        &sums.sum_x2,
                        &sums.sum_y,
                        &sums.sum_y2,
                        &sums.sum_xy,
                    ],
                ));
            }
            if !counts.is_empty() {
                statements.push((
                    "INSERT INTO event_counters
                         (log_partition, period, start, event, experiment, variant, count, sum, users)
                     SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                         $7::int8[], $8::float8[], $9::int8[])
                     ON CONFLICT (period, event, experiment, start, variant, log_partition) DO UPDATE
                         SET count = excluded.count, sum = excluded.sum, users = excluded.users",
                    vec![
                        &p,
                        &counters.periods,
                        &counters.starts,
                        &counters.events,
                        &counters.experiments,
                        &counters.variants,
                        &counts,
                        &totals,
                        &uniques,
                    ],
                ));
            }
            if !member_users.is_empty() {
                statements.push((
                    "INSERT INTO event_counter_users (log_partition, period, start, event, experiment, variant, user_id)
                     SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[])
                     ON CONFLICT DO NOTHING",
                    vec![
                        &p,
                        &members.periods,
                        &members.starts,
                        &members.events,
                        &members.experiments,
                        &members.variants,
                        &member_users,
                    ],
                ));
            }
            if !ids.is_empty() {
                statements.push((
                    "INSERT INTO event_dedupe (log_partition, event_id, log_offset, seen_at)
                     SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::int8[])
                     ON CONFLICT DO NOTHING",
                    vec![&p, &ids, &offsets, &seen],
                ));
            }
            let expire = changes.expire_deliveries_before;
            if let Some(before) = &expire {
                statements
                    .push(("DELETE FROM event_dedupe WHERE log_partition = $1 AND seen_at < $2", vec![&p, before]));
            }
            statements.push(("DELETE FROM event_archive_open WHERE log_partition = $1", vec![&p]));
            if !open_partitions.is_empty() {
                statements.push((
                    "INSERT INTO event_archive_open (log_partition, archive_partition, first_offset, first_received)
                     SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::int8[])",
                    vec![&p, &open_partitions, &open_offsets, &open_received],
                ));
            }
            let mut prepared = Vec::with_capacity(statements.len());
            for (sql, _) in &statements {
                prepared.push(tx.prepare_cached(sql).await.map_err(pg)?);
            }
            let results = try_join_all(
                prepared.iter().zip(&statements).map(|(statement, (_, params))| tx.execute(statement, &params[..])),
            )
            .await
            .map_err(pg)?;
            if results[0] != 1 {
                // Another node owns the partition now; dropping the transaction rolls it back.
                return Err(Error::Fenced(self.lease.partition));
            }
            tx.commit().await.map_err(pg)
        })
    }
}

/// Columns of aggregate rows, as arrays for `UNNEST`.
#[derive(Default)]
struct SumColumns<'a> {
    experiments: Vec<&'a str>,
    variants: Vec<&'a str>,
    metrics: Vec<&'a str>,
    n: Vec<i64>,
    sum_x: Vec<f64>,
    sum_x2: Vec<f64>,
    sum_y: Vec<f64>,
    sum_y2: Vec<f64>,
    sum_xy: Vec<f64>,
}

impl<'a> SumColumns<'a> {
    fn push(&mut self, (experiment, variant, metric): &'a AggregateKey, s: &Sums) {
        self.experiments.push(experiment);
        self.variants.push(variant);
        self.metrics.push(metric);
        self.n.push(s.n as i64);
        self.sum_x.push(s.sum_x);
        self.sum_x2.push(s.sum_x2);
        self.sum_y.push(s.sum_y);
        self.sum_y2.push(s.sum_y2);
        self.sum_xy.push(s.sum_xy);
    }
}

/// Reads of what every partition committed, summed.
struct PostgresStats {
    pool: Pool,
    runtime: Handle,
}

impl PostgresStats {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, Error> {
        let client = self.pool.get().await.map_err(db_error)?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&statement, params).await.map_err(pg)
    }
}

impl Stats for PostgresStats {
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
}
