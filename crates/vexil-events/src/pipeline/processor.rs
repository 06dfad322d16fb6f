//! The processor of one partition: a thread that runs sessions of [`Stages`] over the batches
//! its reader sends, and reports each commit.
//!
//! A session starts from the last commit and runs until the processor is stopped or something
//! fails. A failed step (the database, the archive's disk) is retried with exponential backoff
//! by starting a new session: the working copy is dropped and loaded again from the last
//! commit, which is exactly what happens after a crash. Between batches the processor answers
//! flush requests, closes archive files that aged while no records came, and picks up new
//! experiment definitions.

use super::reader::{self, Batch, Batching};
use super::stages::{CommitReport, Failure, Stages};
use super::working_copy::WorkingCopy;
use super::{PipelineOptions, Shared, StateCache};
use crate::aggregate::Experiments;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::Lease;
use chrono::Utc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct Processor {
    pub lease: Lease,
    pub shared: Arc<Shared>,
    pub stop: Arc<AtomicBool>,
    pub options: PipelineOptions,
    pub stages: Stages,
    /// The generation of the experiments the stages aggregate (see [`Shared::experiments`]).
    pub experiments_generation: u64,
}

impl Processor {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn run(mut self) {
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

    /// This partition's share of the node's caches, split among the partitions it processes now.
    fn cache_share(&self) -> StateCache {
        self.options.state_cache.share(self.shared.progress().partitions.len())
    }

    /// Processes from the last commit until stopped or until something fails.
    fn session(&mut self) -> Result<(), Failure> {
        let mut copy = self.stages.resume(self.cache_share())?;
        if let Some(p) = self.shared.progress().partitions.get_mut(&self.lease.partition) {
            p.committed = copy.next_offset;
        }
        self.shared.changed.notify_all();
        let done = Arc::new(AtomicBool::new(false));
        let log = self.shared.bus.reader(self.lease.partition, copy.replay_from()).map_err(Error::from)?;
        let batching = Batching {
            max: self.options.batch_records,
            wait: self.options.idle_poll,
            linger: self.options.linger,
            queue: self.options.queue_batches,
        };
        let name = format!("vexil-pipeline-reader-{}", self.lease.partition);
        let (reader, batches) = reader::spawn(name, log, batching, done.clone(), self.options.release_freed_memory)?;
        let result = self.process(&mut copy, &batches);
        done.store(true, Ordering::SeqCst);
        drop(batches);
        // The reader stops at its next poll, or at once if it is waiting to send.
        let _ = reader.join();
        result
    }

    fn process(&mut self, copy: &mut WorkingCopy, batches: &Receiver<Batch>) -> Result<(), Failure> {
        let mut busy = false;
        loop {
            if self.stopping() {
                let report = self.stages.close_all(copy)?;
                return self.report(copy, report);
            }
            self.take_new_experiments();
            let flush = {
                let p = self.shared.progress();
                let flushed = p.partitions.get(&self.lease.partition).map_or(0, |pp| pp.flushed);
                (p.flushes_requested > flushed).then_some(p.flushes_requested)
            };
            if let Some(flush) = flush {
                let report = self.stages.close_all(copy)?;
                self.report(copy, report)?;
                if let Some(p) = self.shared.progress().partitions.get_mut(&self.lease.partition) {
                    p.flushed = flush;
                }
                self.shared.changed.notify_all();
            }
            match batches.recv_timeout(self.options.idle_poll) {
                Ok(batch) => {
                    // Definitions set before these records were appended apply to them.
                    self.take_new_experiments();
                    copy.resize(self.cache_share());
                    if let Some(report) = self.stages.process_batch(copy, batch?)? {
                        self.report(copy, report)?;
                    }
                    busy = true;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if std::mem::take(&mut busy) {
                        (self.options.release_freed_memory)();
                    }
                    self.update_lag(copy.next_offset, None);
                    if let Some(report) = self.stages.close_idle(copy, Utc::now().timestamp_millis())? {
                        self.report(copy, report)?;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn take_new_experiments(&mut self) {
        let current = self.shared.experiments.lock().expect("experiments poisoned");
        if current.0 != self.experiments_generation {
            self.experiments_generation = current.0;
            self.stages.set_experiments(Experiments::new(&current.1));
        }
    }

    /// Reports a commit: to the metrics, the bus (for retention) and progress waiters.
    fn report(&self, copy: &WorkingCopy, report: CommitReport) -> Result<(), Failure> {
        let metrics = &self.shared.metrics;
        Metrics::add(&metrics.processed_total, report.processed);
        Metrics::add(&metrics.archive_files_total, report.closed.len() as u64);
        Metrics::add(&metrics.archive_bytes_total, report.closed.iter().map(|c| c.bytes as u64).sum());
        if let Some(retain_from) = copy.retain_from() {
            self.shared.bus.commit(self.lease.partition, retain_from).map_err(Error::from)?;
        }
        {
            let mut progress = self.shared.progress();
            if let Some(p) = progress.partitions.get_mut(&self.lease.partition) {
                p.committed = copy.next_offset;
                let (users, members) = copy.cached();
                (p.cached_users, p.cached_members) = (users as u64, members as u64);
            }
            progress.last_error = None;
        }
        self.shared.changed.notify_all();
        self.update_lag(copy.next_offset, report.newest_received);
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
        self.shared.update_gauges();
    }
}
