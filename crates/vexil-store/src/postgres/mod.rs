//! The distributed backend: PostgreSQL, shared by any number of stateless `vexil serve` nodes.
//!
//! Client: `tokio-postgres` with a `deadpool-postgres` pool (see docs/storage.md for why not
//! sqlx). Every statement is prepared once per connection and cached.
//!
//! Concurrency is the database's job, exactly as in the embedded backend:
//!
//! - a document change first bumps the one-row `revision` table, so concurrent `apply`s queue
//!   on that row lock and each reads-then-writes without a race (the role SQLite's `BEGIN
//!   IMMEDIATE` plays);
//! - assignments are `INSERT … ON CONFLICT` against the primary key, then a read of what is
//!   stored, so racing nodes agree on one record;
//! - key secrets are unique by their hash.
//!
//! Change notification: each `apply` sends `NOTIFY vexil_revision` in its transaction, which
//! PostgreSQL delivers at commit to every listening node. A background task per store LISTENs
//! on a dedicated connection and, as a fallback for a dropped connection or a missed
//! notification, also reads the revision row every [`POLL_INTERVAL`].

mod assignments;
mod audit;
mod documents;
mod keys;
mod migrations;
mod users;

pub use migrations::{migrate, Schema};

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::StoreError;

/// The channel `apply` notifies on, with the new revision as payload.
const CHANNEL: &str = "vexil_revision";

/// Fallback polling of the revision row, for when a notification is lost (the listening
/// connection dropped and is being re-established). Below the 1 s the spec allows.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Wait before re-opening a dropped listening connection.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Connections per node. Requests are short; more connections than cores on the database
/// only add contention, and a node's requests queue for a connection instead.
const POOL_SIZE: usize = 16;

/// How long a request waits for a pooled connection (or to open one) before failing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        // `Display` of a server error is only "db error"; the message is in the source.
        match err.as_db_error() {
            Some(db) => StoreError::Backend(format!("PostgreSQL: {db}")),
            None => StoreError::Backend(format!("PostgreSQL: {err}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => StoreError::Backend(format!("PostgreSQL connection pool: {other}")),
        }
    }
}

/// A pool of at most `size` connections to the database at `url`
/// (`postgres://user:password@host:port/database`, or the key=value form), with the settings
/// every PostgreSQL user of vexil shares, and the parsed configuration.
pub fn connection_pool(url: &str, size: usize) -> Result<(Pool, tokio_postgres::Config), StoreError> {
    let config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
    let manager =
        Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL connection pool: {e}")))?;
    Ok((pool, config))
}

/// A stored `BIGINT` as the traits' unsigned numbers (versions, revisions, ids never go
/// negative; a negative one means the data was edited by hand).
fn unsigned(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("PostgreSQL: unexpected negative number {value}")))
}

/// A [`Store`](crate::Store) on a PostgreSQL database, given by a `postgres://` URL.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    revision: watch::Sender<u64>,
    watcher: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// or the key=value form), migrates its schema, and starts listening for changes made by
    /// other nodes. Needs a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (pool, config) = connection_pool(url, POOL_SIZE)?;
        let mut client = pool.get().await?;
        migrations::migrate(&mut client, &migrations::STORE).await?;
        let (revision, _) = watch::channel(documents::read_revision(&client).await?);
        drop(client);

        let watcher = tokio::spawn(watch_revision(config, pool.clone(), revision.clone()));
        Ok(PostgresStore { inner: Arc::new(Inner { pool, revision, watcher }) })
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.inner.pool.get().await?)
    }

    /// Tells watchers about a revision this handle committed.
    fn publish(&self, revision: u64) {
        crate::change::publish_revision(&self.inner.revision, revision);
    }
}

/// Keeps `revision` current: LISTENs for other nodes' commits, and polls the row as a
/// fallback. Runs until the store is dropped, which aborts it.
async fn watch_revision(config: tokio_postgres::Config, pool: Pool, revision: watch::Sender<u64>) {
    tokio::join!(listen(config, &revision), poll(pool, &revision));
}

async fn poll(pool: Pool, revision: &watch::Sender<u64>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A failed read (the database restarting, say) only delays notification to the next tick.
        if let Ok(client) = pool.get().await {
            if let Ok(current) = documents::read_revision(&client).await {
                publish_off_worker(revision, current).await;
            }
        }
    }
}

/// Publishes from the blocking pool: publishing takes the channel's write lock, and a receiver
/// that holds a borrow across an `.await` would otherwise block this runtime worker — and with
/// it tasks queued on the worker that the borrower may be waiting for.
async fn publish_off_worker(revision: &watch::Sender<u64>, value: u64) {
    let sender = revision.clone();
    // Only fails if the runtime is shutting down, and then nobody is watching.
    let _ = tokio::task::spawn_blocking(move || crate::change::publish_revision(&sender, value)).await;
}

/// LISTENs on a dedicated connection, reconnecting whenever it drops. A notification's payload
/// is the committed revision.
async fn listen(config: tokio_postgres::Config, revision: &watch::Sender<u64>) {
    loop {
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            // The connection only makes progress while polled, so LISTEN runs beside it.
            let sql = format!("LISTEN {CHANNEL}");
            let subscribe = client.batch_execute(&sql);
            tokio::pin!(subscribe);
            let mut subscribed = false;
            loop {
                tokio::select! {
                    done = &mut subscribe, if !subscribed => {
                        if done.is_err() { break; }
                        subscribed = true;
                    }
                    message = messages.next() => match message {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if let Ok(value) = n.payload().parse() {
                                publish_off_worker(revision, value).await;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
        }
        tokio::time::sleep(RELISTEN_DELAY).await;
    }
}
