//! The stages of one log partition, batch by batch: what happens to each record between the
//! reader handing a batch over and the commit that makes it count.
//!
//! [`Stages::process_batch`] is where the order is written: per event dedupe → enrich →
//! aggregate → archive → counters, each stage in the module of its name, then one commit of
//! everything the batch changed. Threads, retries and progress are the processor's
//! ([`super::processor`]); the one wait here is for the archive's files before the commit (the
//! archive stores them on a thread of its own).

use super::reader::Decoded;
use super::working_copy::WorkingCopy;
use super::{PipelineOptions, StateCache};
use crate::aggregate::{self, Experiments};
use crate::archive::{self, Archiver, ClosedFile, Lines, PartitionNames};
use crate::counters;
use crate::dedupe::{self, Deliveries};
use crate::dlq::Dlq;
use crate::enrich;
use crate::error::Error;
use crate::event::{EventError, LogRecord, ReadRecord, StoredEvent};
use crate::metrics::Metrics;
use crate::store::PartitionStore;
use chrono::Utc;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why processing stopped short.
pub(super) enum Failure {
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

/// What a commit carried, for the processor to report.
#[derive(Default)]
pub(super) struct CommitReport {
    /// Archive files closed since the last commit.
    pub closed: Vec<ClosedFile>,
    /// Events processed (not replayed, not duplicates).
    pub processed: u64,
    /// The receive time of the last record processed, for the lag in seconds.
    pub newest_received: Option<i64>,
}

/// The stages of one partition, and what they keep from one batch to the next.
pub(super) struct Stages {
    store: Box<dyn PartitionStore>,
    experiments: Experiments,
    archiver: Archiver,
    dlq: Arc<Dlq>,
    metrics: Arc<Metrics>,
    /// Failed decode attempts per offset, and the offsets given up on (sent to the DLQ).
    attempts: HashMap<u64, u32>,
    poisoned: HashSet<u64>,
    max_attempts: u32,
    dedupe_window: Duration,
    last_expiry: Option<Instant>,
    partition_names: PartitionNames,
    lines: Lines,
}

impl Stages {
    pub fn new(
        store: Box<dyn PartitionStore>,
        archiver: Archiver,
        dlq: Arc<Dlq>,
        metrics: Arc<Metrics>,
        options: &PipelineOptions,
    ) -> Stages {
        Stages {
            store,
            experiments: Experiments::new(&crate::pipeline::ExperimentsByEnv::new()),
            archiver,
            dlq,
            metrics,
            attempts: HashMap::new(),
            poisoned: HashSet::new(),
            max_attempts: options.max_attempts,
            dedupe_window: options.dedupe_window,
            last_expiry: None,
            partition_names: PartitionNames::default(),
            lines: Lines::default(),
        }
    }

    /// Aggregates `experiments` from the next event on.
    pub fn set_experiments(&mut self, experiments: Experiments) {
        self.experiments = experiments;
    }

    /// Starts again from the last commit: the working copy as committed, with caches of
    /// `cache`'s sizes, and the archive's buffers as they were open then (replay fills them
    /// again).
    pub fn resume(&mut self, cache: StateCache) -> Result<WorkingCopy, Error> {
        let copy = WorkingCopy::load(&mut *self.store, cache)?;
        self.archiver.restore(&copy.open_files);
        Ok(copy)
    }

    /// Runs a batch through the stages and commits it; `None` for an empty batch.
    ///
    /// The batch's dedupe ids and users are read from the store first, together. Each event
    /// then goes through dedupe → enrich → aggregate → archive → counters in log order;
    /// the counters of the whole batch are then added together, the archive files it closed
    /// (stored on the archive's own thread meanwhile) are waited for, and everything it changed
    /// is committed in one transaction with the checkpoint. Records before the checkpoint are
    /// being replayed after a restart.
    pub fn process_batch(
        &mut self,
        copy: &mut WorkingCopy,
        batch: Vec<Decoded>,
    ) -> Result<Option<CommitReport>, Failure> {
        let Some(last) = batch.last().map(|d| d.offset) else { return Ok(None) };
        let checkpoint = copy.next_offset;
        let ids = given_ids(&batch);
        let ids: Vec<&str> = ids.iter().map(|id| id.as_ref()).collect();
        let mut deliveries = Deliveries::lookup(&mut *self.store, &ids)?;
        copy.users.load(&mut *self.store, &users_of(&batch))?;
        let mut to_count = counters::Pending::default();
        let mut report = CommitReport::default();
        for Decoded { offset, record } in &batch {
            let offset = *offset;
            let Some(read) = self.decoded(offset, record)? else { continue };
            let record = read.record();
            let replayed = offset < checkpoint;
            report.newest_received = Some(record.received_at());
            let stored = match record {
                LogRecord::Event(stored) => stored,
                LogRecord::EvaluationCounts(counts) if !replayed => {
                    copy.counters.add_evaluations(&mut *self.store, counts)?;
                    continue;
                }
                LogRecord::EvaluationCounts(_) => continue,
            };
            if dedupe::is_redelivery(&mut deliveries, stored, offset) {
                if !replayed {
                    Metrics::add(&self.metrics.processed_duplicates_total, 1);
                }
                continue;
            }
            let env = stored.env.as_deref();
            let partition = self.partition_names.of(env, stored.event.timestamp);
            if replayed {
                let event_json = read.event_json();
                archive_replayed(&mut self.archiver, &mut self.lines, copy, partition, offset, stored, event_json)?;
                continue;
            }
            let mut user = enrich::enrich(&mut copy.users, &stored.event, env, &self.metrics);
            aggregate::aggregate(&mut copy.aggregates, &self.experiments, &mut user, &stored.event);
            let attribution = user.into_attribution();
            let event_json = read.event_json();
            archive::archive(&mut self.archiver, &mut self.lines, partition, offset, stored, event_json, &attribution)?;
            counters::count(&mut to_count, stored, attribution);
            report.processed += 1;
        }
        copy.counters.add_events(&mut *self.store, &to_count, copy.users.new_to_store())?;
        report.closed = self.archiver.written()?;
        let expire = self.dedupe_expiry();
        let open = self.archiver.open_files();
        copy.commit(&mut *self.store, (last + 1).max(checkpoint), open, deliveries.new_ids(), expire)?;
        Ok(Some(report))
    }

    /// Closes every open archive file and commits that (at a flush and when stopping).
    pub fn close_all(&mut self, copy: &mut WorkingCopy) -> Result<CommitReport, Failure> {
        let closed = self.archiver.close_all()?;
        self.commit_closed(copy, closed)
    }

    /// Closes the archive files older than their age limit at wall-clock `now_millis` and
    /// commits that, if there were any (when no records come).
    pub fn close_idle(&mut self, copy: &mut WorkingCopy, now_millis: i64) -> Result<Option<CommitReport>, Failure> {
        let closed = self.archiver.close_idle(now_millis)?;
        if closed.is_empty() {
            return Ok(None);
        }
        self.commit_closed(copy, closed).map(Some)
    }

    /// Commits the archive's open buffers after `closed` were closed, without new records.
    fn commit_closed(&mut self, copy: &mut WorkingCopy, closed: Vec<ClosedFile>) -> Result<CommitReport, Failure> {
        let open = self.archiver.open_files();
        copy.commit(&mut *self.store, copy.next_offset, open, &[], None)?;
        Ok(CommitReport { closed, ..CommitReport::default() })
    }

    /// The record at `offset` if it was decoded. One that was not fails the session (which
    /// starts again from the checkpoint) until its `max_attempts`-th time; then it goes to the
    /// DLQ as poison and is skipped (`None`) from then on.
    fn decoded<'r>(
        &mut self,
        offset: u64,
        record: &'r Result<ReadRecord, (String, Vec<u8>)>,
    ) -> Result<Option<&'r ReadRecord>, Failure> {
        if self.poisoned.contains(&offset) {
            return Ok(None);
        }
        let (cause, payload) = match record {
            Ok(record) => return Ok(Some(record)),
            Err(undecodable) => undecodable,
        };
        let attempts = self.attempts.entry(offset).or_default();
        *attempts += 1;
        if *attempts < self.max_attempts {
            return Err(Failure::Record(offset, cause.clone()));
        }
        let error = EventError::new("undecodable_record", None, format!("cannot decode log record: {cause}"));
        self.dlq.push_poison(offset, &error, &String::from_utf8_lossy(payload), *attempts)?;
        Metrics::add(&self.metrics.poison_total, 1);
        self.poisoned.insert(offset);
        Ok(None)
    }

    /// The start of the dedupe window (Unix ms) when ids before it are due to be forgotten: at
    /// most once a minute. Ids are kept for days, so forgetting one a minute late changes
    /// nothing and spares most commits a delete.
    fn dedupe_expiry(&mut self) -> Option<i64> {
        let due = self.last_expiry.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
        due.then(|| {
            self.last_expiry = Some(Instant::now());
            let window = chrono::Duration::from_std(self.dedupe_window).unwrap_or(chrono::Duration::days(7));
            (Utc::now() - window).timestamp_millis()
        })
    }
}

/// The archive stage alone, for a record replayed from before the checkpoint: everything else was
/// done before it, and only an archive buffer open at the checkpoint needs it again.
fn archive_replayed(
    archiver: &mut Archiver,
    lines: &mut Lines,
    copy: &WorkingCopy,
    partition: &str,
    offset: u64,
    stored: &StoredEvent,
    event_json: &str,
) -> std::io::Result<()> {
    if !archiver.wants_replayed(partition, offset) {
        return Ok(());
    }
    let attribution = copy.users.attribution(&stored.event, stored.env.as_deref());
    archive::archive(archiver, lines, partition, offset, stored, event_json, &attribution)
}

/// The sender-given ids of a batch, as their environments keep them, looked up together before
/// any of them is judged.
fn given_ids(batch: &[Decoded]) -> Vec<Cow<'_, str>> {
    batch
        .iter()
        .filter_map(|d| match d.record.as_ref().map(ReadRecord::record) {
            Ok(LogRecord::Event(stored)) if stored.id_given => Some(dedupe::id_of(stored)),
            _ => None,
        })
        .collect()
}

/// The users of a batch's events, read together before any event is enriched.
fn users_of(batch: &[Decoded]) -> Vec<&str> {
    batch
        .iter()
        .filter_map(|d| match d.record.as_ref().map(ReadRecord::record) {
            Ok(LogRecord::Event(stored)) => Some(stored.event.user_id.as_str()),
            _ => None,
        })
        .collect()
}
