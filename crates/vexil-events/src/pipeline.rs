//! The consumer loop: reads the durable log and runs the stages, checkpointing as it goes.
//!
//! ```text
//! log ──reader thread: read + decode──▶ bounded queue ──▶ processor thread:
//!     dedupe → enrich → aggregate + counters → archive → one SQLite commit (checkpoint)
//! ```
//!
//! The queue between the reader and the processor holds a few batches: when the processor
//! falls behind, the reader blocks (backpressure) instead of reading the log into memory, and
//! ingest refuses new batches with 429 once the lag passes its limit.
//!
//! Failures: a step that fails (the database, the archive's disk) is retried with exponential
//! backoff, by dropping the in-memory state and starting again from the last commit, which is
//! exactly what happens after a crash. A record that cannot be decoded is retried the same way
//! and, after `max_attempts`, goes to the DLQ with its cause (a poison record) and is skipped.

use crate::aggregate::{read_aggregates, AggregateRow};
use crate::archive::{partition_of, ArchiveOptions, ArchiveStore, Archiver, ClosedFile, OpenFile};
use crate::counters::{read_counters, CounterRow, Window};
use crate::dedupe;
use crate::dlq::Dlq;
use crate::error::Error;
use crate::event::{Event, EventError, LogRecord, StoredEvent};
use crate::log::{EventBus, Record};
use crate::metrics::Metrics;
use crate::state::{open_db, Experiments, State};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vexil_core::experiment::CompiledExperiment;

/// The consumer name under which the pipeline commits to the bus (for log retention).
pub const CONSUMER: &str = "pipeline";
const STATE_FILE: &str = "state.sqlite";

/// Tuning of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Records per read, and so per commit at most.
    pub batch_records: usize,
    /// Batches the reader may run ahead of the processor.
    pub queue_batches: usize,
    /// Attempts before an undecodable record goes to the DLQ.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long an `event_id` is remembered (SPEC default: 7 days).
    pub dedupe_window: Duration,
    pub archive: ArchiveOptions,
    /// How long the processor waits for records before doing idle work.
    pub idle_poll: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch_records: 2000,
            queue_batches: 4,
            max_attempts: 5,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(10),
            dedupe_window: Duration::from_secs(7 * 86_400),
            archive: ArchiveOptions::default(),
            idle_poll: Duration::from_millis(200),
        }
    }
}

#[derive(Default)]
struct Progress {
    /// Every record below this offset is processed and committed.
    committed: u64,
    flushes_requested: u64,
    flushes_done: u64,
    last_error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    progress: Mutex<Progress>,
    changed: Condvar,
    experiments: Mutex<Option<Vec<Arc<CompiledExperiment>>>>,
}

/// The running pipeline. Dropping it stops it (after closing open archive files).
pub struct Pipeline {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    state_path: PathBuf,
}

impl Pipeline {
    /// Starts processing `bus` with state kept in `data_dir`, aggregating `experiments` (the
    /// core's, compiled against the flag set whose segments their metric filters use). Fails
    /// fast on an unreadable state database.
    pub fn start(
        data_dir: &Path,
        bus: Arc<dyn EventBus>,
        dlq: Arc<Dlq>,
        archive: Box<dyn ArchiveStore>,
        experiments: Vec<Arc<CompiledExperiment>>,
        metrics: Arc<Metrics>,
        options: PipelineOptions,
    ) -> Result<Pipeline, Error> {
        std::fs::create_dir_all(data_dir)?;
        let state_path = data_dir.join(STATE_FILE);
        let conn = open_db(&state_path)?;
        let committed = State::load(&conn)?.next_offset;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            progress: Mutex::new(Progress { committed, ..Progress::default() }),
            changed: Condvar::new(),
            experiments: Mutex::new(None),
        });
        let archiver = Archiver::new(archive, options.archive.clone());
        let processor = Processor {
            sink: Sink { shared: shared.clone(), bus, metrics },
            dlq,
            options,
            conn,
            archiver,
            experiments: Experiments::new(&experiments),
            attempts: HashMap::new(),
            poisoned: HashSet::new(),
            last_expiry: None,
        };
        let thread = std::thread::Builder::new().name("vexil-pipeline".into()).spawn(move || processor.run())?;
        Ok(Pipeline { shared, thread: Mutex::new(Some(thread)), state_path })
    }

    /// Replaces the experiments being aggregated; applies from the next batch on.
    pub fn set_experiments(&self, experiments: Vec<Arc<CompiledExperiment>>) {
        *self.shared.experiments.lock().expect("experiments poisoned") = Some(experiments);
    }

    /// The offset below which everything is processed and committed.
    pub fn committed(&self) -> u64 {
        self.shared.progress.lock().expect("progress poisoned").committed
    }

    /// The last processing failure, if the pipeline is retrying.
    pub fn last_error(&self) -> Option<String> {
        self.shared.progress.lock().expect("progress poisoned").last_error.clone()
    }

    /// Waits until everything below `offset` is committed; false on timeout.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let guard = self.shared.progress.lock().expect("progress poisoned");
        let (guard, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, timeout, |p| p.committed < offset)
            .expect("progress poisoned");
        guard.committed >= offset
    }

    /// Closes every open archive file now (they would otherwise wait for 1,000 events, 5 MiB or
    /// 60 s) and waits for that commit; false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let mut guard = self.shared.progress.lock().expect("progress poisoned");
        guard.flushes_requested += 1;
        let wanted = guard.flushes_requested;
        let (guard, _) = self
            .shared
            .changed
            .wait_timeout_while(guard, timeout, |p| p.flushes_done < wanted)
            .expect("progress poisoned");
        guard.flushes_done >= wanted
    }

    /// A reader of the committed aggregates and counters.
    pub fn stats(&self) -> Result<Stats, Error> {
        Stats::open(&self.state_path)
    }

    /// Stops after closing open archive files and committing; later calls do nothing.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().expect("pipeline thread poisoned").take() {
            // The processor reports its failures through `last_error`; a panic has nothing to add.
            let _ = thread.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Read access to what the pipeline has committed (for the results and stats endpoints).
pub struct Stats {
    conn: Connection,
}

impl Stats {
    /// Opens the state database of a data directory for reading.
    pub fn open(state_path: &Path) -> Result<Stats, Error> {
        let conn = Connection::open_with_flags(state_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Stats { conn })
    }

    /// The sufficient statistics of every variant × metric of `experiment`.
    pub fn aggregates(&self, experiment: &str) -> Result<Vec<AggregateRow>, Error> {
        read_aggregates(&self.conn, experiment)
    }

    /// `GET /v1/stats/events?event=&window=&from=&to=`: windows starting in `[from, to)`.
    pub fn event_counters(
        &self,
        event: &str,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error> {
        read_counters(&self.conn, event, None, window, from, to)
    }

    /// The same per variant of `experiment` (events attributed to it).
    pub fn variant_counters(
        &self,
        event: &str,
        experiment: &str,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<CounterRow>, Error> {
        read_counters(&self.conn, event, Some(experiment), window, from, to)
    }
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

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Step(e.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Step(e.into())
    }
}

/// What a commit reports to: progress waiters, the bus (for retention) and the metrics.
struct Sink {
    shared: Arc<Shared>,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
}

struct Processor {
    sink: Sink,
    dlq: Arc<Dlq>,
    options: PipelineOptions,
    conn: Connection,
    archiver: Archiver,
    experiments: Experiments,
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
    fn run(mut self) {
        let mut backoff = self.options.backoff_initial;
        while !self.sink.shared.stop.load(Ordering::SeqCst) {
            let before = self.sink.shared.progress.lock().expect("progress poisoned").committed;
            match self.session() {
                Ok(()) => return,
                Err(failure) => {
                    let message = match failure {
                        Failure::Step(e) => e.to_string(),
                        Failure::Record(offset, cause) => format!("record {offset}: {cause}"),
                    };
                    Metrics::add(&self.sink.metrics.retries_total, 1);
                    let mut progress = self.sink.shared.progress.lock().expect("progress poisoned");
                    if progress.committed > before {
                        backoff = self.options.backoff_initial;
                    }
                    progress.last_error = Some(message);
                    drop(progress);
                    let deadline = Instant::now() + backoff;
                    while Instant::now() < deadline && !self.sink.shared.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10).min(backoff));
                    }
                    backoff = (backoff * 2).min(self.options.backoff_max);
                }
            }
        }
    }

    /// Processes from the last commit until stopped or until something fails.
    fn session(&mut self) -> Result<(), Failure> {
        let mut state = State::load(&self.conn)?;
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
        let mut reader = self.sink.bus.reader(0, from).map_err(Error::from)?;
        let (max, wait) = (self.options.batch_records, self.options.idle_poll);
        // The reader runs until the processor is done with it (not until `stop`): a reader that
        // stopped first would end the processor's session before it closed the archive files.
        let handle = std::thread::Builder::new().name("vexil-pipeline-reader".into()).spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let batch = reader.poll(max, wait).map_err(Error::from).map(|records| {
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
            if self.sink.shared.stop.load(Ordering::SeqCst) {
                let closed = self.archiver.close_all()?;
                return self.commit(state, state.next_offset, closed, 0, None);
            }
            self.take_new_experiments();
            let flush = {
                let p = self.sink.shared.progress.lock().expect("progress poisoned");
                (p.flushes_requested > p.flushes_done).then_some(p.flushes_requested)
            };
            if let Some(flush) = flush {
                let closed = self.archiver.close_all()?;
                self.commit(state, state.next_offset, closed, 0, None)?;
                self.sink.shared.progress.lock().expect("progress poisoned").flushes_done = flush;
                self.sink.shared.changed.notify_all();
            }
            match batches.recv_timeout(self.options.idle_poll) {
                Ok(batch) => {
                    // Definitions set before these records were appended apply to them.
                    self.take_new_experiments();
                    self.process_batch(state, batch?)?
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.sink.update_lag(state.next_offset, None);
                    let closed = self.archiver.close_idle(Utc::now().timestamp_millis())?;
                    if !closed.is_empty() {
                        self.commit(state, state.next_offset, closed, 0, None)?;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn take_new_experiments(&mut self) {
        if let Some(experiments) = self.sink.shared.experiments.lock().expect("experiments poisoned").take() {
            self.experiments = Experiments::new(&experiments);
        }
    }

    fn process_batch(&mut self, state: &mut State, batch: Vec<Decoded>) -> Result<(), Failure> {
        let Some(last) = batch.last().map(|d| d.offset) else { return Ok(()) };
        let checkpoint = state.next_offset;
        let tx = self.conn.transaction()?;
        let mut closed = Vec::new();
        let mut processed = 0;
        let mut newest_received = None;
        for Decoded { offset, record } in batch {
            if self.poisoned.contains(&offset) {
                continue;
            }
            let record = match record {
                Ok(record) => record,
                Err((cause, payload)) => {
                    let attempts = self.attempts.entry(offset).or_default();
                    *attempts += 1;
                    if *attempts < self.options.max_attempts {
                        return Err(Failure::Record(offset, cause));
                    }
                    let error =
                        EventError::new("undecodable_record", None, format!("cannot decode log record: {cause}"));
                    self.dlq.push_poison(offset, &error, &String::from_utf8_lossy(&payload), *attempts)?;
                    Metrics::add(&self.sink.metrics.poison_total, 1);
                    self.poisoned.insert(offset);
                    continue;
                }
            };
            let replayed = offset < checkpoint;
            newest_received = Some(record.received_at());
            match record {
                LogRecord::Event(stored) => {
                    let duplicate = stored.id_given
                        && dedupe::is_duplicate(&tx, &stored.event.event_id, offset, stored.received_at)?;
                    if duplicate {
                        if !replayed {
                            Metrics::add(&self.sink.metrics.processed_duplicates_total, 1);
                        }
                        continue;
                    }
                    let partition = partition_of(stored.event.timestamp);
                    if replayed {
                        // Already counted; only an archive buffer that was open at the crash
                        // needs it again.
                        if self.archiver.wants_replayed(&partition, offset) {
                            let line = archive_line(&stored, &state.attribution(&stored));
                            closed.extend(self.archiver.add(partition, offset, stored.received_at, &line)?);
                        }
                        continue;
                    }
                    let attribution = state.apply_event(&self.experiments, &stored, &self.sink.metrics);
                    state.count_event(&tx, &stored, &attribution)?;
                    let line = archive_line(&stored, &attribution);
                    closed.extend(self.archiver.add(partition, offset, stored.received_at, &line)?);
                    processed += 1;
                }
                LogRecord::EvaluationCounts(counts) if !replayed => state.count_evaluations(&tx, &counts)?,
                LogRecord::EvaluationCounts(_) => {}
            }
        }
        let due = self.last_expiry.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
        if due {
            let window = chrono::Duration::from_std(self.options.dedupe_window).unwrap_or(chrono::Duration::days(7));
            dedupe::expire(&tx, (Utc::now() - window).timestamp_millis())?;
            self.last_expiry = Some(Instant::now());
        }
        let open = self.archiver.open_files();
        self.sink.commit(state, tx, (last + 1).max(checkpoint), open, closed, processed, newest_received)
    }

    fn commit(
        &mut self,
        state: &mut State,
        next: u64,
        closed: Vec<ClosedFile>,
        processed: u64,
        newest_received: Option<i64>,
    ) -> Result<(), Failure> {
        let tx = self.conn.transaction()?;
        let open = self.archiver.open_files();
        self.sink.commit(state, tx, next, open, closed, processed, newest_received)
    }
}

impl Sink {
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        state: &mut State,
        tx: rusqlite::Transaction<'_>,
        next: u64,
        open: Vec<OpenFile>,
        closed: Vec<ClosedFile>,
        processed: u64,
        newest_received: Option<i64>,
    ) -> Result<(), Failure> {
        state.commit(tx, next, open)?;
        Metrics::add(&self.metrics.processed_total, processed);
        Metrics::add(&self.metrics.archive_files_total, closed.len() as u64);
        Metrics::add(&self.metrics.archive_bytes_total, closed.iter().map(|c| c.bytes as u64).sum());
        self.bus.commit(0, CONSUMER, state.replay_from()).map_err(Error::from)?;
        {
            let mut progress = self.shared.progress.lock().expect("progress poisoned");
            progress.committed = next;
            progress.last_error = None;
        }
        self.shared.changed.notify_all();
        self.update_lag(next, newest_received);
        Ok(())
    }

    fn update_lag(&self, next: u64, newest_received: Option<i64>) {
        let lag = self.bus.end_offset(0).saturating_sub(next);
        Metrics::set(&self.metrics.lag_events, lag);
        if lag == 0 {
            Metrics::set(&self.metrics.lag_seconds, 0);
        } else if let Some(received) = newest_received {
            let age = (Utc::now().timestamp_millis() - received).max(0) / 1000;
            Metrics::set(&self.metrics.lag_seconds, age as u64);
        }
    }
}
