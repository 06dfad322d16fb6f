//! One partition's processing state, under one lease.
//!
//! A partition's commit is one transaction: the fence (its `event_partitions` row, updated
//! only if this node still owns it under its epoch, carrying the new checkpoint), then the
//! changed users, aggregates, counters, new unique users, dedupe ids and open archive
//! buffers, each table in one statement over arrays (`UNNEST`), all sent at once (pipelined)
//! so a commit costs one round trip and a few statements, whatever the batch size.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use futures_util::future::try_join_all;
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use vexil_events::aggregate::AggregateKey;
use vexil_events::archive::OpenFile;
use vexil_events::counters::{Counter, CounterKey};
use vexil_events::enrich::UserState;
use vexil_events::store::{Changes, Committed, Durability, Lease, PartitionStore};
use vexil_events::Error;

use super::columns::{counter_at, counter_key, sums_at, KeyColumns, SumColumns};
use super::{db_error, pg, wait};

/// One partition's state, under one lease.
pub(super) struct PostgresPartition {
    pub(super) pool: Pool,
    pub(super) runtime: Handle,
    pub(super) lease: Lease,
    pub(super) node: String,
}

impl PostgresPartition {
    fn partition(&self) -> i32 {
        self.lease.partition as i32
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
            Ok(Committed { next_offset: next_offset as u64, open_files, sums })
        })
    }

    fn users(&mut self, user_ids: &[&str]) -> Result<HashMap<String, UserState>, Error> {
        let p = self.partition();
        wait(&self.runtime, async {
            let client = self.pool.get().await.map_err(db_error)?;
            let statement = client
                .prepare_cached("SELECT user_id, state FROM event_users WHERE log_partition = $1 AND user_id = ANY($2)")
                .await
                .map_err(pg)?;
            let mut found = HashMap::new();
            for row in client.query(&statement, &[&p, &user_ids]).await.map_err(pg)? {
                found.insert(row.get(0), serde_json::from_str(row.get(1))?);
            }
            Ok(found)
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

    fn known_members(&mut self, members: &[(&CounterKey, &str)]) -> Result<Vec<bool>, Error> {
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
                    "SELECT k.asked
                     FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[])
                         WITH ORDINALITY AS k(period, start, event, experiment, variant, user_id, asked)
                     JOIN event_counter_users u ON u.log_partition = $1 AND u.period = k.period
                         AND u.start = k.start AND u.event = k.event AND u.experiment = k.experiment
                         AND u.variant = k.variant AND u.user_id = k.user_id",
                )
                .await
                .map_err(pg)?;
            let params: [&(dyn ToSql + Sync); 7] =
                [&p, &k.periods, &k.starts, &k.events, &k.experiments, &k.variants, &users];
            let rows = client.query(&statement, &params).await.map_err(pg)?;
            let mut known = vec![false; members.len()];
            for row in rows {
                // WITH ORDINALITY counts from 1.
                let asked: i64 = row.get(0);
                if let Some(known) = usize::try_from(asked - 1).ok().and_then(|i| known.get_mut(i)) {
                    *known = true;
                }
            }
            Ok(known)
        })
    }

    /// PostgreSQL's commit is on disk when it returns (its default, `synchronous_commit = on`).
    fn commit(&mut self, changes: Changes<'_>) -> Result<Durability, Error> {
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
        })?;
        Ok(Durability::Synced)
    }
}
