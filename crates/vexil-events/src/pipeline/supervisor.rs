//! The supervisor: keeps one processor running per partition the state backend leases to this
//! node, starting and stopping them as leases come and go.

use super::processor::Processor;
use super::stages::Stages;
use super::{PartitionProgress, PipelineOptions, Shared};
use crate::archive::{ArchiveStore, Archiver};
use crate::background;
use crate::dlq::Dlq;
use crate::error::Error;
use crate::store::{Lease, ProcessingBackend};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A processor at work on one partition.
struct Running {
    lease: Lease,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

pub(super) struct Supervisor {
    shared: Arc<Shared>,
    backend: Arc<dyn ProcessingBackend>,
    dlq: Arc<Dlq>,
    archive: Arc<dyn ArchiveStore>,
    options: PipelineOptions,
    running: BTreeMap<u32, Running>,
}

impl Supervisor {
    pub fn new(
        shared: Arc<Shared>,
        backend: Arc<dyn ProcessingBackend>,
        dlq: Arc<Dlq>,
        archive: Arc<dyn ArchiveStore>,
        options: PipelineOptions,
    ) -> Supervisor {
        Supervisor { shared, backend, dlq, archive, options, running: BTreeMap::new() }
    }

    pub fn run(mut self) {
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
    pub fn reconcile(&mut self) -> Result<(), Error> {
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
        let archiver = Archiver::new(
            Arc::new(LeasedArchive { inner: self.archive.clone(), backend: self.backend.clone(), lease }),
            lease.partition,
            self.options.archive.clone(),
        );
        let processor = Processor {
            lease,
            shared: self.shared.clone(),
            stop: stop.clone(),
            options: self.options.clone(),
            stages: Stages::new(store, archiver, self.dlq.clone(), self.shared.metrics.clone(), &self.options),
            experiments_generation: u64::MAX,
        };
        // Flushes asked for before this processor existed are not its to answer.
        let flushed = self.shared.progress().flushes_requested;
        self.shared.progress().partitions.insert(lease.partition, PartitionProgress { flushed, ..Default::default() });
        let name = format!("vexil-pipeline-{}", lease.partition);
        match std::thread::Builder::new().name(name).spawn(move || {
            background::lower_priority();
            processor.run()
        }) {
            Ok(thread) => {
                self.running.insert(lease.partition, Running { lease, stop, thread });
                self.shared.update_gauges();
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
        // A processor that panicked has nothing left to commit; the next reconcile starts a
        // new one for the partition if it is still leased here.
        if let Err(payload) = running.thread.join() {
            let cause = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            tracing::error!(partition, cause, "an event processor panicked; restarting it");
            crate::metrics::Metrics::add(&self.shared.metrics.processor_panics_total, 1);
        }
        self.shared.progress().partitions.remove(&partition);
        self.shared.changed.notify_all();
        self.backend.released(running.lease);
        self.shared.update_gauges();
    }
}

/// A processor's archive: writes only while its lease holds (see [`ProcessingBackend::holds`]).
struct LeasedArchive {
    inner: Arc<dyn ArchiveStore>,
    backend: Arc<dyn ProcessingBackend>,
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
