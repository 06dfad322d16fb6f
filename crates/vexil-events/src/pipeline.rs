//! The consumer loop: reads each log partition this node holds and runs the stages,
//! checkpointing as it goes.
//!
//! ```text
//! supervisor thread: asks the state backend which partitions this node holds (leases) and
//!                    starts and stops one processor per partition to match
//!
//! partition p ──reader thread: read + decode──▶ bounded queue ──▶ processor thread:
//!     dedupe → enrich → aggregate + counters → archive → one commit of p's state (checkpoint)
//! ```
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

use crate::archive::{partition_of, ArchiveOptions, ArchiveStore, Archiver, ClosedFile};
use crate::dedupe::Deliveries;
use crate::dlq::Dlq;
use crate::error::Error;
use crate::event::{Event, EventError, LogRecord, StoredEvent};
use crate::log::{BusReader, EventBus, Record};
use crate::metrics::Metrics;
use crate::state::{event_contributions, Experiments, State};
use crate::store::{Lease, PartitionStore, StateBackend, Stats};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vexil_core::experiment::CompiledExperiment;

/// The consumer name under which the pipeline commits to the bus (for log retention).
pub const CONSUMER: &str = "pipeline";

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
    experiments: Mutex<(u64, Vec<Arc<CompiledExperiment>>)>,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().expect("progress poisoned")
    }
}

/// The running pipeline. Dropping it stops it (after closing open archive files).
pub struct Pipeline {
    shared: Arc<Shared>,
    backend: Arc<dyn StateBackend>,
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
        backend: Arc<dyn StateBackend>,
        dlq: Arc<Dlq>,
        archive: Arc<dyn ArchiveStore>,
        experiments: Vec<Arc<CompiledExperiment>>,
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
        let mut supervisor = Supervisor {
            shared: shared.clone(),
            backend: backend.clone(),
            dlq,
            archive,
            options,
            running: BTreeMap::new(),
        };
        supervisor.reconcile()?;
        let thread = std::thread::Builder::new().name("vexil-pipeline".into()).spawn(move || supervisor.run())?;
        Ok(Pipeline { shared, backend, supervisor: Mutex::new(Some(thread)) })
    }

    /// Replaces the experiments being aggregated; applies from each processor's next batch on.
    pub fn set_experiments(&self, experiments: Vec<Arc<CompiledExperiment>>) {
        let mut current = self.shared.experiments.lock().expect("experiments poisoned");
        *current = (current.0 + 1, experiments);
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

/// A processor at work on one partition.
struct Running {
    lease: Lease,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Keeps one processor running per partition the backend leases to this node.
struct Supervisor {
    shared: Arc<Shared>,
    backend: Arc<dyn StateBackend>,
    dlq: Arc<Dlq>,
    archive: Arc<dyn ArchiveStore>,
    options: PipelineOptions,
    running: BTreeMap<u32, Running>,
}

impl Supervisor {
    fn run(mut self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(self.options.idle_poll);
            if let Err(e) = self.reconcile() {
                self.shared.progress().last_error = Some(e.to_string());
            }
        }
        let partitions: Vec<u32> = self.running.keys().copied().collect();
        for partition in partitions {
            self.retire(partition);
        }
    }

    /// Stops the processors of partitions no longer leased (or whose processor ended), and
    /// starts processors for newly leased ones.
    fn reconcile(&mut self) -> Result<(), Error> {
        let leases: BTreeMap<u32, Lease> = self.backend.leases().into_iter().map(|l| (l.partition, l)).collect();
        let retired: Vec<u32> = self
            .running
            .iter()
            .filter(|(p, r)| leases.get(p) != Some(&r.lease) || r.thread.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for partition in retired {
            self.retire(partition);
        }
        for lease in leases.into_values() {
            if !self.running.contains_key(&lease.partition) {
                self.begin(lease)?;
            }
        }
        Ok(())
    }

    fn begin(&mut self, lease: Lease) -> Result<(), Error> {
        let store = self.backend.open(lease)?;
        let stop = Arc::new(AtomicBool::new(false));
        let processor = Processor {
            lease,
            shared: self.shared.clone(),
            stop: stop.clone(),
            store,
            dlq: self.dlq.clone(),
            options: self.options.clone(),
            archiver: Archiver::new(
                Arc::new(LeasedArchive { inner: self.archive.clone(), backend: self.backend.clone(), lease }),
                lease.partition,
                self.options.archive.clone(),
            ),
            experiments: (u64::MAX, Experiments::new(&[])),
            attempts: HashMap::new(),
            poisoned: HashSet::new(),
            last_expiry: None,
        };
        // Flushes asked for before this processor existed are not its to answer.
        let flushed = self.shared.progress().flushes_requested;
        self.shared.progress().partitions.insert(lease.partition, PartitionProgress { flushed, ..Default::default() });
        let name = format!("vexil-pipeline-{}", lease.partition);
        match std::thread::Builder::new().name(name).spawn(move || {
            background_priority();
            processor.run()
        }) {
            Ok(thread) => {
                self.running.insert(lease.partition, Running { lease, stop, thread });
                update_lag_metrics(&self.shared);
                Ok(())
            }
            Err(e) => {
                self.shared.progress().partitions.remove(&lease.partition);
                Err(e.into())
            }
        }
    }

    /// Stops a partition's processor (it closes its archive files and commits, unless it was
    /// fenced) and hands the partition back.
    fn retire(&mut self, partition: u32) {
        let Some(running) = self.running.remove(&partition) else { return };
        running.stop.store(true, Ordering::SeqCst);
        // A processor that panicked has nothing left to commit.
        let _ = running.thread.join();
        self.shared.progress().partitions.remove(&partition);
        self.shared.changed.notify_all();
        self.backend.released(running.lease);
        update_lag_metrics(&self.shared);
    }
}

/// A processor's archive: writes only while its lease holds (see [`StateBackend::holds`]).
struct LeasedArchive {
    inner: Arc<dyn ArchiveStore>,
    backend: Arc<dyn StateBackend>,
    lease: Lease,
}

impl ArchiveStore for LeasedArchive {
    fn put(&self, partition: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !self.backend.holds(self.lease) {
            return Err(std::io::Error::other(format!(
                "log partition {} may have passed to another node; not writing {partition}/{name}",
                self.lease.partition
            )));
        }
        self.inner.put(partition, name, bytes)
    }
}

/// Sets the lag metrics from every partition's (events summed, seconds the largest) and the
/// count of partitions.
fn update_lag_metrics(shared: &Shared) {
    let progress = shared.progress();
    Metrics::set(&shared.metrics.partitions, progress.partitions.len() as u64);
    Metrics::set(&shared.metrics.lag_events, progress.partitions.values().map(|p| p.lag_events).sum());
    Metrics::set(&shared.metrics.lag_seconds, progress.partitions.values().map(|p| p.lag_seconds).max().unwrap_or(0));
}

/// A log record as the reader decoded it.
struct Decoded {
    offset: u64,
    record: Result<LogRecord, (String, Vec<u8>)>,
}

type Batch = Result<Vec<Decoded>, Error>;

/// How a session ended.
enum Failure {
    /// The environment failed (database, disk, log); retry the same records.
    Step(Error),
    /// This record could not be decoded.
    Record(u64, String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Step(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Step(e.into())
    }
}

/// The processor of one partition.
struct Processor {
    lease: Lease,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    store: Box<dyn PartitionStore>,
    dlq: Arc<Dlq>,
    options: PipelineOptions,
    archiver: Archiver,
    /// The experiments aggregated, and the generation they are of.
    experiments: (u64, Experiments),
    /// Failed decode attempts per offset, and the offsets given up on (sent to the DLQ).
    attempts: HashMap<u64, u32>,
    poisoned: HashSet<u64>,
    last_expiry: Option<Instant>,
}

/// An event as the archive stores it: the event, when it was received, and its experiments.
#[derive(Serialize)]
struct Archived<'a> {
    #[serde(flatten)]
    event: &'a Event,
    received_at: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    experiments: BTreeMap<&'a str, &'a str>,
}

fn archive_line(stored: &StoredEvent, attribution: &[(String, String)]) -> Vec<u8> {
    let received = Utc.timestamp_millis_opt(stored.received_at).single().unwrap_or_default();
    let archived = Archived {
        event: &stored.event,
        received_at: received.to_rfc3339_opts(SecondsFormat::Millis, true),
        experiments: attribution.iter().map(|(e, v)| (e.as_str(), v.as_str())).collect(),
    };
    serde_json::to_vec(&archived).expect("events serialize")
}

impl Processor {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        let mut backoff = self.options.backoff_initial;
        while !self.stopping() {
            let before = self.committed();
            match self.session() {
                Ok(()) => return,
                // Another node owns the partition now: its processor carries on from the last
                // commit, and nothing this one did since counts.
                Err(Failure::Step(Error::Fenced(_))) => return,
                Err(failure) => {
                    let message = match failure {
                        Failure::Step(e) => format!("partition {}: {e}", self.lease.partition),
                        Failure::Record(offset, cause) => {
                            format!("partition {}, record {offset}: {cause}", self.lease.partition)
                        }
                    };
                    Metrics::add(&self.shared.metrics.retries_total, 1);
                    if self.committed() > before {
                        backoff = self.options.backoff_initial;
                    }
                    self.shared.progress().last_error = Some(message);
                    let deadline = Instant::now() + backoff;
                    while Instant::now() < deadline && !self.stopping() {
                        std::thread::sleep(Duration::from_millis(10).min(backoff));
                    }
                    backoff = (backoff * 2).min(self.options.backoff_max);
                }
            }
        }
    }

    fn committed(&self) -> u64 {
        self.shared.progress().partitions.get(&self.lease.partition).map_or(0, |p| p.committed)
    }

    /// Processes from the last commit until stopped or until something fails.
    fn session(&mut self) -> Result<(), Failure> {
        let mut state = State::load(&mut *self.store)?;
        if let Some(p) = self.shared.progress().partitions.get_mut(&self.lease.partition) {
            p.committed = state.next_offset;
        }
        self.shared.changed.notify_all();
        self.archiver.restore(&state.open_files);
        let done = Arc::new(AtomicBool::new(false));
        let (reader, batches) = self.spawn_reader(state.replay_from(), done.clone())?;
        let result = self.process(&mut state, &batches);
        done.store(true, Ordering::SeqCst);
        drop(batches);
        // The reader stops at its next poll, or at once if it is waiting to send.
        let _ = reader.join();
        result
    }

    fn spawn_reader(&self, from: u64, done: Arc<AtomicBool>) -> Result<(JoinHandle<()>, Receiver<Batch>), Failure> {
        let (sender, receiver) = sync_channel::<Batch>(self.options.queue_batches);
        let mut reader = self.shared.bus.reader(self.lease.partition, from).map_err(Error::from)?;
        let (max, wait, linger) = (self.options.batch_records, self.options.idle_poll, self.options.linger);
        // The reader runs until the processor is done with it (not until `stop`): a reader that
        // stopped first would end the processor's session before it closed the archive files.
        let name = format!("vexil-pipeline-reader-{}", self.lease.partition);
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            background_priority();
            while !done.load(Ordering::SeqCst) {
                let batch = poll_lingering(&mut *reader, max, wait, linger).map_err(Error::from).map(|records| {
                    records
                        .into_iter()
                        .map(|Record { offset, payload }| Decoded {
                            offset,
                            record: serde_json::from_slice(&payload).map_err(|e| (e.to_string(), payload)),
                        })
                        .collect::<Vec<_>>()
                });
                let failed = batch.is_err();
                if matches!(&batch, Ok(records) if records.is_empty()) {
                    continue;
                }
                if sender.send(batch).is_err() || failed {
                    return;
                }
            }
        })?;
        Ok((handle, receiver))
    }

    fn process(&mut self, state: &mut State, batches: &Receiver<Batch>) -> Result<(), Failure> {
        loop {
            if self.stopping() {
                let closed = self.archiver.close_all()?;
                return self.commit(state, closed);
            }
            self.take_new_experiments();
            let flush = {
                let p = self.shared.progress();
                let flushed = p.partitions.get(&self.lease.partition).map_or(0, |pp| pp.flushed);
                (p.flushes_requested > flushed).then_some(p.flushes_requested)
            };
            if let Some(flush) = flush {
                let closed = self.archiver.close_all()?;
                self.commit(state, closed)?;
                if let Some(p) = self.shared.progress().partitions.get_mut(&self.lease.partition) {
                    p.flushed = flush;
                }
                self.shared.changed.notify_all();
            }
            match batches.recv_timeout(self.options.idle_poll) {
                Ok(batch) => {
                    // Definitions set before these records were appended apply to them.
                    self.take_new_experiments();
                    self.process_batch(state, batch?)?
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.update_lag(state.next_offset, None);
                    let closed = self.archiver.close_idle(Utc::now().timestamp_millis())?;
                    if !closed.is_empty() {
                        self.commit(state, closed)?;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn take_new_experiments(&mut self) {
        let current = self.shared.experiments.lock().expect("experiments poisoned");
        if current.0 != self.experiments.0 {
            self.experiments = (current.0, Experiments::new(&current.1));
        }
    }

    fn process_batch(&mut self, state: &mut State, batch: Vec<Decoded>) -> Result<(), Failure> {
        let Some(last) = batch.last().map(|d| d.offset) else { return Ok(()) };
        let checkpoint = state.next_offset;
        // One lookup of the batch's sender-given ids, before any of them is judged.
        let ids: Vec<&str> = batch
            .iter()
            .filter_map(|d| match &d.record {
                Ok(LogRecord::Event(stored)) if stored.id_given => Some(stored.event.event_id.as_str()),
                _ => None,
            })
            .collect();
        let mut deliveries = Deliveries::lookup(&mut *self.store, &ids)?;
        let mut closed = Vec::new();
        let mut processed = 0;
        let mut newest_received = None;
        let mut counted = Vec::new();
        for Decoded { offset, record } in &batch {
            let offset = *offset;
            if self.poisoned.contains(&offset) {
                continue;
            }
            let record = match record {
                Ok(record) => record,
                Err((cause, payload)) => {
                    let attempts = self.attempts.entry(offset).or_default();
                    *attempts += 1;
                    if *attempts < self.options.max_attempts {
                        return Err(Failure::Record(offset, cause.clone()));
                    }
                    let error =
                        EventError::new("undecodable_record", None, format!("cannot decode log record: {cause}"));
                    self.dlq.push_poison(offset, &error, &String::from_utf8_lossy(payload), *attempts)?;
                    Metrics::add(&self.shared.metrics.poison_total, 1);
                    self.poisoned.insert(offset);
                    continue;
                }
            };
            let replayed = offset < checkpoint;
            newest_received = Some(record.received_at());
            match record {
                LogRecord::Event(stored) => {
                    if stored.id_given && deliveries.is_duplicate(&stored.event.event_id, offset, stored.received_at) {
                        if !replayed {
                            Metrics::add(&self.shared.metrics.processed_duplicates_total, 1);
                        }
                        continue;
                    }
                    let partition = partition_of(stored.event.timestamp);
                    if replayed {
                        // Already counted; only an archive buffer that was open at the crash
                        // needs it again.
                        if self.archiver.wants_replayed(&partition, offset) {
                            let line = archive_line(stored, &state.attribution(stored));
                            closed.extend(self.archiver.add(partition, offset, stored.received_at, &line)?);
                        }
                        continue;
                    }
                    let attribution = state.apply_event(&self.experiments.1, stored, &self.shared.metrics);
                    let line = archive_line(stored, &attribution);
                    closed.extend(self.archiver.add(partition, offset, stored.received_at, &line)?);
                    counted.push((stored, attribution));
                    processed += 1;
                }
                LogRecord::EvaluationCounts(counts) if !replayed => {
                    state.count_evaluations(&mut *self.store, counts)?
                }
                LogRecord::EvaluationCounts(_) => {}
            }
        }
        let mut contributions = Vec::with_capacity(counted.len() * 4);
        for (stored, attribution) in &counted {
            event_contributions(stored, attribution, &mut contributions);
        }
        state.count(&mut *self.store, &contributions)?;
        let due = self.last_expiry.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
        let expire = due.then(|| {
            self.last_expiry = Some(Instant::now());
            let window = chrono::Duration::from_std(self.options.dedupe_window).unwrap_or(chrono::Duration::days(7));
            (Utc::now() - window).timestamp_millis()
        });
        let open = self.archiver.open_files();
        state.commit(&mut *self.store, (last + 1).max(checkpoint), open, deliveries.new_ids(), expire)?;
        self.committed_batch(state, &closed, processed, newest_received)
    }

    /// Commits the archive's state (after closing files) without new records.
    fn commit(&mut self, state: &mut State, closed: Vec<ClosedFile>) -> Result<(), Failure> {
        let open = self.archiver.open_files();
        state.commit(&mut *self.store, state.next_offset, open, &[], None)?;
        self.committed_batch(state, &closed, 0, None)
    }

    /// Reports a commit: to the metrics, the bus (for retention) and progress waiters.
    fn committed_batch(
        &self,
        state: &State,
        closed: &[ClosedFile],
        processed: u64,
        newest_received: Option<i64>,
    ) -> Result<(), Failure> {
        let metrics = &self.shared.metrics;
        Metrics::add(&metrics.processed_total, processed);
        Metrics::add(&metrics.archive_files_total, closed.len() as u64);
        Metrics::add(&metrics.archive_bytes_total, closed.iter().map(|c| c.bytes as u64).sum());
        self.shared.bus.commit(self.lease.partition, CONSUMER, state.replay_from()).map_err(Error::from)?;
        {
            let mut progress = self.shared.progress();
            if let Some(p) = progress.partitions.get_mut(&self.lease.partition) {
                p.committed = state.next_offset;
            }
            progress.last_error = None;
        }
        self.shared.changed.notify_all();
        self.update_lag(state.next_offset, newest_received);
        Ok(())
    }

    fn update_lag(&self, next: u64, newest_received: Option<i64>) {
        let lag = self.shared.bus.end_offset(self.lease.partition).saturating_sub(next);
        if let Some(p) = self.shared.progress().partitions.get_mut(&self.lease.partition) {
            p.lag_events = lag;
            if lag == 0 {
                p.lag_seconds = 0;
            } else if let Some(received) = newest_received {
                p.lag_seconds = ((Utc::now().timestamp_millis() - received).max(0) / 1000) as u64;
            }
        }
        update_lag_metrics(&self.shared);
    }
}

/// Up to `max` records: waits up to `wait` for the first, then up to `linger` after it for
/// the batch to fill.
fn poll_lingering(
    reader: &mut dyn BusReader,
    max: usize,
    wait: Duration,
    linger: Duration,
) -> Result<Vec<Record>, crate::LogError> {
    let mut records = reader.poll(max, wait)?;
    let Some(deadline) = (!records.is_empty()).then(|| Instant::now() + linger) else { return Ok(records) };
    while records.len() < max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        records.extend(reader.poll(max - records.len(), left)?);
    }
    Ok(records)
}

/// Lowers the calling thread's scheduling priority (nice 10) on Linux, where a thread has its own.
///
/// Processing is background work: what it owes is bounded lag, not latency, while requests
/// (evaluation, assignment, ingest) are waited on by users. When the cores are busy the
/// scheduler now serves requests first and processing catches up in the gaps; when they are
/// not, nice makes no difference. Lag stays visible in `/metrics`, and ingest still answers
/// 429 past its lag limit, so processing cannot fall behind without bound.
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; failure only leaves the
    // priority as it was.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
    }
}
