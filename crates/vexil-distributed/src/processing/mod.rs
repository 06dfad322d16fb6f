//! The distributed mode's processing state: every partition's state in one PostgreSQL
//! database shared by the nodes (the tables of `migrations/`, each keyed by `log_partition`),
//! with the partitions shared among the nodes by the [`group`](crate::group).
//!
//! This module is the backend: it connects, checks that the database holds the state of the
//! topic being read, joins the group (unless the node only ingests, `event_processing = false`),
//! and hands out the parts that do the work:
//!
//! - `partition`: one partition's state under its lease: loading it, the pipeline's lookups,
//!   and its fenced commit;
//! - `stats`: the reads of the results and stats endpoints, summed over the partitions;
//! - `columns`: counter keys and sums as statement parameters (arrays) and out of rows.
//!
//! The pipeline's traits are blocking (processors run on their own threads); calls go to the
//! tokio runtime the backend was created in.

mod columns;
mod partition;
mod stats;

use std::future::Future;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use vexil_events::store::{Lease, PartitionStore, ProcessingBackend, Stats};
use vexil_events::Error;
use vexil_store::postgres::{connection_pool, migrate, Schema};

use self::partition::PostgresPartition;
use self::stats::PostgresStats;
use crate::group::{Group, GroupOptions};

/// The pipeline's tables, versioned apart from the store's.
const SCHEMA: Schema = Schema {
    version_table: "events_schema_version",
    migrations: &[
        include_str!("../migrations/0001_event_processing.sql"),
        include_str!("../migrations/0002_counted_users_have_rows.sql"),
        include_str!("../migrations/0003_event_ends.sql"),
    ],
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
    /// Connects to the database at `url` (see [`prepare`]), joins the consumer group and takes a
    /// first share of the partitions. Must run inside the tokio runtime that will carry the
    /// requests.
    pub async fn connect(
        url: &str,
        topic: &str,
        partitions: u32,
        options: GroupOptions,
    ) -> Result<PostgresBackend, String> {
        let pool = prepare(url, topic, partitions).await?;
        let group = Arc::new(Group::new(pool.clone(), node_name(), partitions, options));
        group.tick().await.map_err(|e| format!("cannot join the consumer group: {e}"))?;
        let heartbeat = tokio::spawn({
            let group = group.clone();
            async move { group.run().await }
        });
        Ok(PostgresBackend { pool, group, runtime: Handle::current(), heartbeat: Mutex::new(Some(heartbeat)) })
    }

    /// The backend of a node that only ingests (`event_processing = false`): it reads the shared
    /// state for results and stats, but never joins the consumer group, so it holds no
    /// partition and the processing nodes share them all. Must run inside the tokio runtime
    /// that will carry the requests.
    pub async fn connect_without_processing(
        url: &str,
        topic: &str,
        partitions: u32,
    ) -> Result<PostgresBackend, String> {
        let pool = prepare(url, topic, partitions).await?;
        let group = Arc::new(Group::new(pool.clone(), node_name(), partitions, GroupOptions::default()));
        Ok(PostgresBackend { pool, group, runtime: Handle::current(), heartbeat: Mutex::new(None) })
    }

    /// This node's name in the consumer group.
    pub fn node(&self) -> &str {
        self.group.node()
    }
}

/// Connects to the database at `url`, creates the pipeline's tables and checks that they are the
/// state of `topic` with `partitions` partitions (creating the partitions' rows for a new
/// database).
async fn prepare(url: &str, topic: &str, partitions: u32) -> Result<Pool, String> {
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
    Ok(pool)
}

/// Raises each partition's shared end in `event_ends` to `ends[partition]` where that is
/// further, and returns every partition's shared end (0 for one never shared).
async fn share_ends(pool: &Pool, ends: &[u64]) -> Result<Vec<u64>, Error> {
    let partitions: Vec<i32> = (0..ends.len()).map(|p| p as i32).collect();
    let offsets: Vec<i64> = ends.iter().map(|&end| i64::try_from(end).unwrap_or(i64::MAX)).collect();
    let client = pool.get().await.map_err(db_error)?;
    let share = client
        .prepare_cached(
            "INSERT INTO event_ends (log_partition, end_offset) SELECT * FROM unnest($1::INTEGER[], $2::BIGINT[])
             ON CONFLICT (log_partition) DO UPDATE SET end_offset = excluded.end_offset
             WHERE event_ends.end_offset < excluded.end_offset",
        )
        .await
        .map_err(pg)?;
    client.execute(&share, &[&partitions, &offsets]).await.map_err(pg)?;
    let read = client.prepare_cached("SELECT log_partition, end_offset FROM event_ends").await.map_err(pg)?;
    let mut shared = vec![0; ends.len()];
    for row in client.query(&read, &[]).await.map_err(pg)? {
        let (partition, end): (i32, i64) = (row.get(0), row.get(1));
        if let (Some(slot), Ok(end)) =
            (usize::try_from(partition).ok().and_then(|p| shared.get_mut(p)), u64::try_from(end))
        {
            *slot = end;
        }
    }
    Ok(shared)
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

impl ProcessingBackend for PostgresBackend {
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

    fn share_ends(&self, ends: &[u64]) -> Result<Vec<u64>, Error> {
        wait(&self.runtime, share_ends(&self.pool, ends))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupOptions;
    use std::time::Duration;
    use vexil_events::enrich::UserState;
    use vexil_store::testkit::postgres::fresh_database;

    /// A database at the first version, where only exposed users had rows in `event_users`:
    /// after the upgrade every user in a counter's unique users has one (an unexposed user's
    /// empty state), and the exposed user's state is untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counted_users_of_a_first_version_database_get_rows() {
        let Some(url) = fresh_database().await else { return };
        let (pool, _) = connection_pool(&url, 1).unwrap();
        let first = Schema { version_table: SCHEMA.version_table, migrations: &SCHEMA.migrations[..1] };
        let exposed = r#"{"assignments":[{"experiment":"exp","variant":"control","first_exposure":0}]}"#;
        {
            let mut client = pool.get().await.unwrap();
            migrate(&mut client, &first).await.unwrap();
            client
                .batch_execute(&format!(
                    "INSERT INTO event_users VALUES (0, 'u2', '{exposed}');
                     INSERT INTO event_counter_users VALUES
                         (0, 'day', 0, 'purchase', '', '', 'u1'), (0, 'hour', 0, 'purchase', '', '', 'u1'),
                         (0, 'day', 0, 'purchase', '', '', 'u2'), (3, 'day', 0, 'purchase', '', '', 'u3');"
                ))
                .await
                .unwrap();
        }
        let options = GroupOptions { heartbeat: Duration::from_millis(100), lease: Duration::from_millis(1500) };
        let backend = PostgresBackend::connect(&url, "events", 4, options).await.unwrap();
        let mut partition = backend.open(Lease { partition: 0, epoch: 0 }).unwrap();
        let users = partition.users(&["u1", "u2", "u3"]).unwrap();
        assert_eq!(users.len(), 2, "{users:?}");
        assert_eq!(users["u1"], UserState::default());
        assert_eq!(users["u2"], serde_json::from_str::<UserState>(exposed).unwrap());
        let mut other = backend.open(Lease { partition: 3, epoch: 0 }).unwrap();
        assert_eq!(other.users(&["u3"]).unwrap()["u3"], UserState::default(), "each partition's members get rows");
    }
}
