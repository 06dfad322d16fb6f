//! Counters and gauges of the pipeline, as plain atomics the server reads for `/metrics`.
//!
//! Nothing here allocates or locks, so any stage may update them on its hot path.

use std::sync::atomic::{AtomicU64, Ordering};

/// Every figure the pipeline reports. Totals only grow; gauges (`lag_*`, `backlog_events`,
/// `dlq_size`, `partitions`, `cached_*`) are set.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events appended to the log (acknowledged durably).
    pub ingested_total: AtomicU64,
    /// Events refused at ingest for failing validation (they went to the DLQ).
    pub rejected_total: AtomicU64,
    /// Redeliveries recognised at ingest and not appended again.
    pub ingest_duplicates_total: AtomicU64,
    /// Redeliveries recognised by the processor's dedupe stage.
    pub processed_duplicates_total: AtomicU64,
    /// Events that went through aggregation.
    pub processed_total: AtomicU64,
    /// Records that could not be processed after every attempt and went to the DLQ.
    pub poison_total: AtomicU64,
    /// Retries of a failed processing step.
    pub retries_total: AtomicU64,
    /// Entries currently in the DLQ.
    pub dlq_size: AtomicU64,
    /// Records in the log not yet processed.
    pub lag_events: AtomicU64,
    /// Age in seconds of the oldest unprocessed record, 0 when caught up.
    pub lag_seconds: AtomicU64,
    /// Records in every partition of the bus that no node has processed yet (see
    /// [`crate::backlog`]); measured only where other nodes share the bus.
    pub backlog_events: AtomicU64,
    /// Log partitions this node processes now (all of them in the embedded mode; its share of
    /// the topic's in the distributed mode).
    pub partitions: AtomicU64,
    /// Users and unique-user memberships this node's processors keep in memory (at most
    /// [`crate::pipeline::StateCache`]'s sizes between batches).
    pub cached_users: AtomicU64,
    pub cached_members: AtomicU64,
    /// Archive files written, and their compressed bytes.
    pub archive_files_total: AtomicU64,
    pub archive_bytes_total: AtomicU64,
    /// Evaluation events dropped because the tracking queue was full.
    pub dropped_total: AtomicU64,
    /// Exposures naming a different variant than the user's recorded one (the first one stays).
    pub variant_conflicts_total: AtomicU64,
    /// Invalid events not dead-lettered because the DLQ's ingest entries were at their limit
    /// (their senders were still told each was rejected).
    pub dlq_refused_total: AtomicU64,
    /// Dead-lettered payloads cut to the DLQ's payload limit.
    pub dlq_truncated_total: AtomicU64,
    /// Partition processors that panicked (the supervisor starts them again).
    pub processor_panics_total: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Ordering::Relaxed);
    }

    /// Reads any counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
