//! The consumer loop: reads each log partition this node holds and runs the stages,
//! checkpointing as it goes.
//!
//! ```text
//! supervisor thread: asks the state backend which partitions this node holds (leases) and
//!                    starts and stops one processor per partition to match
//!
//! partition p ──reader thread: read + decode──▶ bounded queue ──▶ processor thread:
//!     dedupe → enrich → aggregate → archive → counters → one commit of p's state (checkpoint)
//! ```
//!
//! One module per part: [`supervisor`] (leases → processors), [`reader`] (batching and
//! backpressure), [`processor`] (sessions, retries, flushes, progress), [`stages`] (what a batch
//! goes through, in order — [`stages::Stages::process_batch`]) and [`working_copy`] (what a
//! processor holds in memory between commits).
//!
//! The embedded mode holds its file log's one partition for good. In the distributed mode the
//! nodes share the topic's partitions (`vexil-distributed`'s consumer group); a processor
//! whose partition moved to another node is stopped, and if it tries to commit first, the
//! backend refuses the commit ([`Error::Fenced`]) and nothing of it counts.
//!
//! The queue between a reader and its processor holds a few batches: when the processor falls
//! behind, the reader blocks (backpressure) instead of reading the log into memory, and ingest
//! refuses new batches with 429 once the lag passes its limit.
//!
//! Failures: a step that fails (the database, the archive's disk) is retried with exponential
//! backoff, by dropping the in-memory state and starting again from the last commit, which is
//! exactly what happens after a crash. A record that cannot be decoded is retried the same way
//! and, after `max_attempts`, goes to the DLQ with its cause (a poison record) and is skipped.

mod processor;
mod reader;
mod stages;
mod supervisor;
mod working_copy;

use crate::archive::{ArchiveOptions, ArchiveStore};
use crate::dlq::Dlq;
use crate::error::Error;
use crate::log::EventBus;
use crate::metrics::Metrics;
use crate::store::{ProcessingBackend, Stats};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use supervisor::Supervisor;
use vexil_core::experiment::CompiledExperiment;

/// The experiments each environment aggregates (`None`: production, see
/// [`crate::environment`]).
pub type ExperimentsByEnv = BTreeMap<Option<String>, Vec<Arc<CompiledExperiment>>>;

/// Production's experiments alone (a deployment with one environment).
pub fn production(experiments: Vec<Arc<CompiledExperiment>>) -> ExperimentsByEnv {
    BTreeMap::from([(None, experiments)])
}

/// Tuning of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Records per read, and so per commit at most.
    pub batch_records: usize,
    /// Batches the reader may run ahead of the processor.
    pub queue_batches: usize,
    /// How long a batch that is not full waits for more records before it is processed.
    /// Every batch ends in one commit (an fsync and a rewrite of each state page it touched),
    /// so a steady trickle processed record by record costs many times what the same records
    /// cost together; the wait bounds how stale results may be.
    pub linger: Duration,
    /// Attempts before an undecodable record goes to the DLQ.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long an `event_id` is remembered (SPEC default: 7 days).
    pub dedupe_window: Duration,
    pub archive: ArchiveOptions,
    /// How long a processor waits for records before doing idle work, and how often the
    /// supervisor checks which partitions this node holds.
    pub idle_poll: Duration,
    /// How much per-user state this node keeps in memory between batches, shared by the
    /// partitions it processes.
    pub state_cache: StateCache,
    /// Called on a reader's or processor's thread when it goes idle after work. The binary's
    /// allocator keeps what a thread freed for that thread's next allocations, which an idle
    /// thread does not make, so the memory a burst of records took would stay resident until
    /// the next burst; `vexil serve` hands it back to the system here. Does nothing by default.
    pub release_freed_memory: fn(),
}

/// The sizes of a node's caches in front of its partitions' stores. Per-user state lives in the
/// store; memory holds the users and unique-user memberships that recent batches touched, up to
/// these counts, so a node's memory grows neither with the number of distinct users nor with
/// the partitions it takes over. Larger caches save store reads for users who come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCache {
    /// Exposed users (their assignments and metric values) kept by the node.
    pub users: usize,
    /// Counter memberships (a user counted in an hour's or a day's unique users of an event)
    /// kept by the node.
    pub members: usize,
}

impl Default for StateCache {
    fn default() -> Self {
        StateCache { users: 100_000, members: 1_000_000 }
    }
}

impl StateCache {
    /// One partition's share when the node processes `partitions` of them: an even split, and
    /// never below one of each, the smallest size the node's own settings may have.
    pub fn share(self, partitions: usize) -> StateCache {
        let partitions = partitions.max(1);
        StateCache { users: (self.users / partitions).max(1), members: (self.members / partitions).max(1) }
    }
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch_records: 2000,
            queue_batches: 4,
            linger: Duration::from_millis(100),
            max_attempts: 5,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(10),
            dedupe_window: Duration::from_secs(7 * 86_400),
            archive: ArchiveOptions::default(),
            idle_poll: Duration::from_millis(200),
            state_cache: StateCache::default(),
            release_freed_memory: || {},
        }
    }
}

/// The progress of one partition's processor.
#[derive(Default)]
struct PartitionProgress {
    /// Every record of the partition below this offset is processed and committed.
    committed: u64,
    /// The last flush request this processor carried out.
    flushed: u64,
    lag_events: u64,
    lag_seconds: u64,
    /// What the processor's caches held after its last commit.
    cached_users: u64,
    cached_members: u64,
}

#[derive(Default)]
struct Progress {
    /// The partitions being processed on this node.
    partitions: BTreeMap<u32, PartitionProgress>,
    flushes_requested: u64,
    last_error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    progress: Mutex<Progress>,
    changed: Condvar,
    /// The experiments to aggregate, with a generation that each change bumps.
    experiments: Mutex<(u64, ExperimentsByEnv)>,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().expect("progress poisoned")
    }

    /// Sets the gauges from every partition's progress (lag in events and cache contents summed,
    /// lag in seconds the largest) and the count of partitions.
    fn update_gauges(&self) {
        let progress = self.progress();
        let partitions = progress.partitions.values();
        Metrics::set(&self.metrics.partitions, partitions.len() as u64);
        Metrics::set(&self.metrics.lag_events, partitions.clone().map(|p| p.lag_events).sum());
        Metrics::set(&self.metrics.lag_seconds, partitions.clone().map(|p| p.lag_seconds).max().unwrap_or(0));
        Metrics::set(&self.metrics.cached_users, partitions.clone().map(|p| p.cached_users).sum());
        Metrics::set(&self.metrics.cached_members, partitions.map(|p| p.cached_members).sum());
    }
}

/// The running pipeline. Dropping it stops it (after closing open archive files).
pub struct Pipeline {
    shared: Arc<Shared>,
    backend: Arc<dyn ProcessingBackend>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Pipeline {
    /// Starts processing the partitions of `bus` that `backend` leases to this node, with
    /// their state kept there, archiving to `archive` and aggregating `experiments` (the
    /// core's, compiled against the flag set whose segments their metric filters use). The
    /// partitions leased now are opened before this returns, so a state that cannot be read
    /// fails here.
    pub fn start(
        bus: Arc<dyn EventBus>,
        backend: Arc<dyn ProcessingBackend>,
        dlq: Arc<Dlq>,
        archive: Arc<dyn ArchiveStore>,
        experiments: ExperimentsByEnv,
        metrics: Arc<Metrics>,
        options: PipelineOptions,
    ) -> Result<Pipeline, Error> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            experiments: Mutex::new((0, experiments)),
            bus,
            metrics,
        });
        let mut supervisor = Supervisor::new(shared.clone(), backend.clone(), dlq, archive, options);
        supervisor.reconcile()?;
        let thread = std::thread::Builder::new().name("vexil-pipeline".into()).spawn(move || supervisor.run())?;
        Ok(Pipeline { shared, backend, supervisor: Mutex::new(Some(thread)) })
    }

    /// Replaces the experiments being aggregated in production; applies from each processor's
    /// next batch on.
    pub fn set_experiments(&self, experiments: Vec<Arc<CompiledExperiment>>) {
        self.set_experiments_of(None, experiments);
    }

    /// Replaces the experiments being aggregated in environment `env` (`None`: production; an
    /// empty list forgets the environment); applies from each processor's next batch on.
    pub fn set_experiments_of(&self, env: Option<&str>, experiments: Vec<Arc<CompiledExperiment>>) {
        let mut current = self.shared.experiments.lock().expect("experiments poisoned");
        current.0 += 1;
        let env = env.map(str::to_owned);
        if experiments.is_empty() {
            current.1.remove(&env);
        } else {
            current.1.insert(env, experiments);
        }
    }

    /// The partitions this node processes now.
    pub fn partitions(&self) -> Vec<u32> {
        self.shared.progress().partitions.keys().copied().collect()
    }

    /// Records of this node's partitions not yet processed and committed.
    pub fn lag(&self) -> u64 {
        let progress = self.shared.progress();
        progress.partitions.iter().map(|(p, pp)| self.shared.bus.end_offset(*p).saturating_sub(pp.committed)).sum()
    }

    /// The last processing failure, if a processor is retrying.
    pub fn last_error(&self) -> Option<String> {
        self.shared.progress().last_error.clone()
    }

    /// Waits until every partition this node processes has committed what its log held when
    /// this was called (a partition that moves to another node meanwhile is that node's to
    /// finish); false on timeout.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let progress = self.shared.progress();
        let ends: Vec<(u32, u64)> = progress.partitions.keys().map(|&p| (p, self.shared.bus.end_offset(p))).collect();
        let behind = |p: &mut Progress| {
            ends.iter().any(|(partition, end)| p.partitions.get(partition).is_some_and(|pp| pp.committed < *end))
        };
        let (mut progress, _) =
            self.shared.changed.wait_timeout_while(progress, timeout, behind).expect("progress poisoned");
        !behind(&mut progress)
    }

    /// Closes every open archive file now (they would otherwise wait for 1,000 events, 5 MiB or
    /// 60 s) and waits for that commit on every partition; false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let mut progress = self.shared.progress();
        progress.flushes_requested += 1;
        let wanted = progress.flushes_requested;
        let pending = |p: &mut Progress| p.partitions.values().any(|pp| pp.flushed < wanted);
        let (mut progress, _) =
            self.shared.changed.wait_timeout_while(progress, timeout, pending).expect("progress poisoned");
        !pending(&mut progress)
    }

    /// A reader of the committed aggregates and counters of every partition.
    pub fn stats(&self) -> Result<Box<dyn Stats>, Error> {
        self.backend.stats()
    }

    /// Stops after closing open archive files and committing; later calls do nothing.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.supervisor.lock().expect("supervisor poisoned").take() {
            // Processors report their failures through `last_error`; a panic has nothing to add.
            let _ = thread.join();
            self.backend.leave();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::StateCache;

    #[test]
    fn each_partition_gets_an_even_share_of_the_nodes_caches_and_never_none() {
        let node = StateCache { users: 100_000, members: 1_000_000 };
        assert_eq!(node.share(1), node, "the embedded mode's one partition");
        assert_eq!(node.share(0), node, "no partitions counted is taken as one");
        assert_eq!(node.share(8), StateCache { users: 12_500, members: 125_000 });
        assert_eq!(StateCache { users: 3, members: 5 }.share(4), StateCache { users: 1, members: 1 });
    }
}
