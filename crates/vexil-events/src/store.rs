//! Where the processor's state is kept, behind traits, so one processor runs on the embedded
//! SQLite database ([`crate::sqlite`]) and on PostgreSQL (the distributed mode, in
//! `vexil-distributed`) alike.
//!
//! The state is kept per partition of the log: a partition's processor reads the assignments
//! and metric values of a batch's users from the store (keeping the recently seen ones in a
//! bounded cache, so memory does not grow with the number of users), and writes what a batch
//! changed —
//! users, aggregates, counters, new unique users, dedupe ids, the archive's open buffers and
//! the next offset — in **one transaction** ([`PartitionStore::commit`]). Because every event
//! of a user is on the user's partition (the bus is keyed by `user_id`), the partitions' sums,
//! counts and unique users add up to the totals, which is what [`Stats`] readers return.
//!
//! Which partitions a node processes is the [`ProcessingBackend`]'s decision, in [`Lease`]s: the
//! embedded backend always holds partition 0; the distributed one shares the partitions among
//! the live nodes. A commit under a lease that another node has since taken over must change
//! nothing and fail with [`Error::Fenced`]: that is what keeps the aggregates exactly-once when
//! a partition changes hands.

use crate::aggregate::{AggregateKey, AggregateRow, Sums};
use crate::archive::OpenFile;
use crate::counters::{Counter, CounterKey, CounterRow, EventTotal, Window};
use crate::enrich::UserState;
use crate::error::Error;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The right to process one partition, and the epoch that fences its commits: a node that took
/// the partition over holds a higher epoch, and commits under the older one fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lease {
    pub partition: u32,
    pub epoch: u64,
}

/// The committed state of a partition, as a processing session starts from it.
#[derive(Debug, Default)]
pub struct Committed {
    /// Every record of the partition below this offset is processed.
    pub next_offset: u64,
    pub open_files: Vec<OpenFile>,
    pub sums: HashMap<AggregateKey, Sums>,
}

/// One sender-given `event_id` seen for the first time: its offset and receive time (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstDelivery {
    pub event_id: String,
    pub offset: u64,
    pub received_at: i64,
}

/// What one commit writes: everything a batch changed, and the new checkpoint.
pub struct Changes<'a> {
    pub next_offset: u64,
    pub users: Vec<(&'a str, &'a UserState)>,
    pub sums: Vec<(&'a AggregateKey, &'a Sums)>,
    pub counters: Vec<(&'a CounterKey, &'a Counter)>,
    /// New members of counters' unique-user sets.
    pub counter_users: Vec<(&'a CounterKey, &'a str)>,
    pub deliveries: &'a [FirstDelivery],
    /// Forget ids first delivered before this time (Unix ms): the end of the dedupe window.
    pub expire_deliveries_before: Option<i64>,
    /// The archive's open buffers, replacing the ones stored.
    pub open_files: &'a [OpenFile],
}

/// How far a commit has reached when [`PartitionStore::commit`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On disk: the commit, and every commit before it, survives a power cut.
    Synced,
    /// Safe from a crash of the process but not yet from a power cut; the next synced commit
    /// makes it durable. The log keeps the records from the last synced checkpoint on, so a
    /// commit lost to a power cut is processed again.
    Deferred,
}

/// The processing state of one partition, under one lease.
pub trait PartitionStore: Send {
    /// The committed state, without the users: they are read as batches need them
    /// ([`PartitionStore::users`]), so a takeover reads no more than a restart does.
    fn load(&mut self) -> Result<Committed, Error>;
    /// The committed states of those of `user_ids` the partition has processed an event of (the
    /// others have no row). Every user in a counter's unique users has a row: processing relies
    /// on it to skip [`PartitionStore::known_members`] for users without one.
    fn users(&mut self, user_ids: &[&str]) -> Result<HashMap<String, UserState>, Error>;
    /// Of `ids`, the ones already delivered, with the offset of their first delivery.
    fn first_deliveries(&mut self, ids: &[&str]) -> Result<HashMap<String, u64>, Error>;
    /// The committed values of those of `keys` that exist.
    fn counters(&mut self, keys: &[&CounterKey]) -> Result<Vec<(CounterKey, Counter)>, Error>;
    /// Of `members` (a counter and a user), whether each is already in the counter's unique
    /// users, in their order.
    fn known_members(&mut self, members: &[(&CounterKey, &str)]) -> Result<Vec<bool>, Error>;
    /// Writes `changes` in one transaction, and says whether it is on disk yet. Fails with
    /// [`Error::Fenced`], having written nothing, when the lease has passed to another node.
    fn commit(&mut self, changes: Changes<'_>) -> Result<Durability, Error>;
}

/// Where a node's processing state is kept, and which partitions it processes.
pub trait ProcessingBackend: Send + Sync {
    /// The partitions this node should process now. The pipeline asks often and starts and
    /// stops processors to match.
    fn leases(&self) -> Vec<Lease>;
    /// The state of a leased partition.
    fn open(&self, lease: Lease) -> Result<Box<dyn PartitionStore>, Error>;
    /// The processor of `lease` has stopped (after its last commit, or because it was fenced):
    /// the partition may go to another node.
    fn released(&self, lease: Lease);
    /// Read access to what every partition has committed.
    fn stats(&self) -> Result<Box<dyn Stats>, Error>;
    /// Shares with the other nodes what this node knows of each partition's end on the bus
    /// (`ends[partition]`: its own acknowledged appends and what its readers fetched), and
    /// returns each partition's end as the furthest any node has shared. Where this node is the
    /// bus's only writer (the embedded mode) its own view is the whole truth.
    fn share_ends(&self, ends: &[u64]) -> Result<Vec<u64>, Error> {
        Ok(ends.to_vec())
    }
    /// The pipeline has stopped for good (every processor released): other nodes may take
    /// everything over at once.
    fn leave(&self) {}
    /// Whether this node may still act on `lease` as far as it knows now. Commits are fenced by
    /// the store itself; archive files, written outside it, are written only while this holds,
    /// so a node that lost its partition stops overwriting the new owner's files.
    fn holds(&self, _lease: Lease) -> bool {
        true
    }
}

/// Read access to the committed aggregates and counters, summed over partitions (for the
/// results and stats endpoints and the safety rails).
pub trait Stats: Send {
    /// Every partition's checkpoint, as `(partition, offset)`: its records below the offset are
    /// processed. A partition no node has committed yet may be missing (its checkpoint is 0).
    fn checkpoints(&self) -> Result<Vec<(u32, u64)>, Error>;

    /// The sufficient statistics of every variant × metric of `experiment`, ordered by variant
    /// and metric.
    fn aggregates(&self, experiment: &str) -> Result<Vec<AggregateRow>, Error>;

    /// Windows of `window` starting in `[from, to)` of `event`: the per-event counter
    /// (`experiment` = None; for `$evaluation:<flag>` one row per flag variant) or every variant
    /// of `experiment`; ordered by start and variant.
    fn counters(
        &self,
        event: &str,
        experiment: Option<&str>,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error>;

    /// Every event name with a per-event counter of `window` starting in `[from, to)`, with its
    /// count and sum over those windows, ordered by name (evaluation counts included).
    fn event_totals(&self, window: Window, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EventTotal>, Error>;

    /// `GET /v1/stats/events?event=&window=&from=&to=`: windows starting in `[from, to)`.
    fn event_counters(
        &self,
        event: &str,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error> {
        self.counters(event, None, window, from, to)
    }

    /// The same per variant of `experiment` (events attributed to it).
    fn variant_counters(
        &self,
        event: &str,
        experiment: &str,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error> {
        self.counters(event, Some(experiment), window, from, to)
    }
}
