//! The stages of one log partition, batch by batch: what happens to each record between the
//! reader handing a batch over and the commit that makes it count.
//!
//! [`Stages::process_batch`] is where the order is written: per event dedupe → enrich →
//! aggregate → archive → counters, each stage in the module of its name, then one commit of
//! everything the batch changed. Threads, retries and progress are the processor's
//! ([`super::processor`]). Two waits are here: for the archive's files before a commit is
//! prepared (the archive stores them on a thread of its own), and for the previous batch's
//! commit, which is written on the committing thread ([`super::committer`]) while this batch
//! goes through the stages, before anything reads the store again.

use super::committer::Committer;
use super::reader::Decoded;
use super::working_copy::{PreparedCommit, WorkingCopy};
use super::{PipelineOptions, StateCache};
use crate::aggregate::{self, Experiments};
use crate::archive::{self, Archiver, ClosedFile, Lines, PartitionNames};
use crate::counters;
use crate::dedupe::{self, Deliveries};
use crate::dlq::Dlq;
use crate::enrich;
use crate::error::Error;
use crate::event::{EventError, LogRecord, StoredEvent};
use crate::metrics::Metrics;
use crate::store::{Lease, PartitionStore};
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
#[derive(Debug, Default)]
pub(super) struct CommitReport {
    /// Archive files closed since the last commit.
    pub closed: Vec<ClosedFile>,
    /// Events processed (not replayed, not duplicates).
    pub processed: u64,
    /// The receive time of the last record processed, for the lag in seconds.
    pub newest_received: Option<i64>,
}

impl CommitReport {
    /// This report followed by `later`'s, as one.
    fn absorb(&mut self, later: CommitReport) {
        self.processed += later.processed;
        self.closed.extend(later.closed);
        self.newest_received = later.newest_received.or(self.newest_received);
    }
}

/// The stages of one partition, and what they keep from one batch to the next.
pub(super) struct Stages {
    committer: Committer,
    /// The last batch's commit while it waits for the next batch's lookups: it is sent to the
    /// store right after them (see [`Stages::process_batch`]).
    unsent: Option<PreparedCommit>,
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
    state_cache: StateCache,
    partition_names: PartitionNames,
    lines: Lines,
}

impl Stages {
    pub fn new(
        lease: Lease,
        store: Box<dyn PartitionStore>,
        archiver: Archiver,
        dlq: Arc<Dlq>,
        metrics: Arc<Metrics>,
        options: &PipelineOptions,
    ) -> Result<Stages, Error> {
        Ok(Stages {
            committer: Committer::start(store, lease.partition)?,
            unsent: None,
            experiments: Experiments::new(&crate::pipeline::ExperimentsByEnv::new()),
            archiver,
            dlq,
            metrics,
            attempts: HashMap::new(),
            poisoned: HashSet::new(),
            max_attempts: options.max_attempts,
            dedupe_window: options.dedupe_window,
            last_expiry: None,
            state_cache: options.state_cache,
            partition_names: PartitionNames::default(),
            lines: Lines::default(),
        })
    }

    /// Aggregates `experiments` from the next event on.
    pub fn set_experiments(&mut self, experiments: Experiments) {
        self.experiments = experiments;
    }

    /// Starts again from the last commit: the working copy as committed, and the archive's
    /// buffers as they were open then (replay fills them again).
    pub fn resume(&mut self) -> Result<WorkingCopy, Error> {
        self.unsent = None;
        let copy = WorkingCopy::load(self.committer.store()?, self.state_cache)?;
        self.archiver.restore(&copy.open_files);
        Ok(copy)
    }

    /// Runs a batch through the stages and prepares its commit; reports the previous batch's
    /// commit if it landed meanwhile (`None` for an empty batch, or when nothing landed).
    ///
    /// The batch's dedupe ids and users are read first, together: from the previous batch's
    /// commit where it changed them, else from the store, which has every commit before it.
    /// That commit is then sent to the store, to be written while each event goes through
    /// dedupe → enrich → aggregate → archive → counters in log order. The counters of the whole
    /// batch are added together once it has landed (they may read the store). The archive files
    /// the batch closed (stored on the archive's own thread meanwhile) are waited for, and
    /// everything the batch changed is prepared as one commit with the checkpoint, sent with the
    /// next batch or by [`Stages::land`]. Records before the checkpoint are being replayed after
    /// a restart.
    pub fn process_batch(
        &mut self,
        copy: &mut WorkingCopy,
        batch: Vec<Decoded>,
    ) -> Result<Option<CommitReport>, Failure> {
        let Some(last) = batch.last().map(|d| d.offset) else { return Ok(None) };
        let checkpoint = self.unsent.as_ref().map_or(copy.next_offset, |commit| commit.next_offset());
        let ids = given_ids(&batch);
        let ids: Vec<&str> = ids.iter().map(|id| id.as_ref()).collect();
        let store = self.committer.store()?;
        let mut deliveries = Deliveries::lookup(store, self.unsent.as_ref(), &ids)?;
        copy.users.load(store, self.unsent.as_ref(), &users_of(&batch))?;
        if let Some(commit) = self.unsent.take() {
            self.committer.send(commit)?;
        }
        let mut to_count = counters::Pending::default();
        let mut report = CommitReport::default();
        for Decoded { offset, record } in &batch {
            let offset = *offset;
            let Some(record) = self.decoded(offset, record)? else { continue };
            let replayed = offset < checkpoint;
            report.newest_received = Some(record.received_at());
            let stored = match record {
                LogRecord::Event(stored) => stored,
                LogRecord::EvaluationCounts(counts) if !replayed => {
                    copy.counters.add_evaluations(self.committer.store()?, counts)?;
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
                archive_replayed(&mut self.archiver, &mut self.lines, copy, partition, offset, stored)?;
                continue;
            }
            let mut user = enrich::enrich(&mut copy.users, &stored.event, env, &self.metrics);
            aggregate::aggregate(&mut copy.aggregates, &self.experiments, &mut user, &stored.event);
            let attribution = user.into_attribution();
            archive::archive(&mut self.archiver, &mut self.lines, partition, offset, stored, &attribution)?;
            counters::count(&mut to_count, stored, attribution);
            report.processed += 1;
        }
        copy.counters.add_events(self.committer.store()?, &to_count, copy.users.new_to_store())?;
        report.closed = self.archiver.written()?;
        let expire = self.dedupe_expiry();
        let open = self.archiver.open_files();
        let next_offset = (last + 1).max(checkpoint);
        self.unsent = Some(copy.prepare_commit(next_offset, open, deliveries.into_new_ids(), expire, report));
        Ok(self.landed(copy))
    }

    /// Whether a batch's commit waits for the next batch's lookups.
    pub fn has_unsent(&self) -> bool {
        self.unsent.is_some()
    }

    /// Sends the commit waiting for the next batch, if any, and waits until every commit sent
    /// has landed; reports the last of them.
    pub fn land(&mut self, copy: &mut WorkingCopy) -> Result<Option<CommitReport>, Failure> {
        if let Some(commit) = self.unsent.take() {
            self.committer.send(commit)?;
        }
        self.committer.wait()?;
        Ok(self.landed(copy))
    }

    /// After a failure: the commit in flight still counts if it lands (reported here); the one
    /// not sent yet is dropped with the working copy, and its records are read again.
    pub fn settle(&mut self, copy: &mut WorkingCopy) -> Option<CommitReport> {
        self.unsent = None;
        self.committer.wait().ok()?;
        self.landed(copy)
    }

    /// The commits that landed since last asked, moved into the working copy and reported once.
    fn landed(&mut self, copy: &mut WorkingCopy) -> Option<CommitReport> {
        let mut report: Option<CommitReport> = None;
        for landed in self.committer.take_landed() {
            copy.landed(&landed.commit, landed.durability);
            match &mut report {
                Some(report) => report.absorb(landed.commit.report),
                None => report = Some(landed.commit.report),
            }
        }
        report
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

    /// Commits the archive's open buffers after `closed` were closed, without new records, once
    /// every earlier commit has landed, and waits for it; reports them all.
    fn commit_closed(&mut self, copy: &mut WorkingCopy, closed: Vec<ClosedFile>) -> Result<CommitReport, Failure> {
        let mut report = self.land(copy)?.unwrap_or_default();
        let open = self.archiver.open_files();
        let closing = CommitReport { closed, ..CommitReport::default() };
        let commit = copy.prepare_commit(copy.next_offset, open, Vec::new(), None, closing);
        self.committer.send(commit)?;
        self.committer.wait()?;
        if let Some(closing) = self.landed(copy) {
            report.absorb(closing);
        }
        Ok(report)
    }

    /// The record at `offset` if it was decoded. One that was not fails the session (which
    /// starts again from the checkpoint) until its `max_attempts`-th time; then it goes to the
    /// DLQ as poison and is skipped (`None`) from then on.
    fn decoded<'r>(
        &mut self,
        offset: u64,
        record: &'r Result<LogRecord, (String, Vec<u8>)>,
    ) -> Result<Option<&'r LogRecord>, Failure> {
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
) -> std::io::Result<()> {
    if !archiver.wants_replayed(partition, offset) {
        return Ok(());
    }
    let attribution = copy.users.attribution(&stored.event, stored.env.as_deref());
    archive::archive(archiver, lines, partition, offset, stored, &attribution)
}

/// The sender-given ids of a batch, as their environments keep them, looked up together before
/// any of them is judged.
fn given_ids(batch: &[Decoded]) -> Vec<Cow<'_, str>> {
    batch
        .iter()
        .filter_map(|d| match &d.record {
            Ok(LogRecord::Event(stored)) if stored.id_given => Some(dedupe::id_of(stored)),
            _ => None,
        })
        .collect()
}

/// The users of a batch's events, read together before any event is enriched.
fn users_of(batch: &[Decoded]) -> Vec<&str> {
    batch
        .iter()
        .filter_map(|d| match &d.record {
            Ok(LogRecord::Event(stored)) => Some(stored.event.user_id.as_str()),
            _ => None,
        })
        .collect()
}
