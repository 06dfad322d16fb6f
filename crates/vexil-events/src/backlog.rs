//! The backlog of the whole bus: records of every partition that no node has processed yet.
//!
//! A node's own lag (`lag_events`) covers the partitions it processes. In the distributed mode
//! that is its share of the topic — none at all on an ingest-only node — while every node
//! appends to every partition. The backlog is each partition's end offset on the bus less its
//! committed checkpoint (the shared state's, whoever processes it), summed; ingest refuses
//! batches (429) while either figure is past its bound, so every node holds back when the
//! group as a whole falls behind.
//!
//! The end offsets are the nodes' own: each node knows the offsets the bus acknowledged for its
//! appends and the high watermarks its readers fetched, shares them through the processing
//! state, and takes the furthest any node shared. A broker could be asked instead (Kafka's
//! ListOffsets), but tansu's in-memory engine answers that by listing every stored batch of the
//! partition, and asking once a second slowed an ingest-only node (BENCHMARKS.md,
//! "The topic's backlog").

use crate::error::Error;
use crate::log::EventBus;
use crate::metrics::Metrics;
use crate::store::ProcessingBackend;
use std::sync::Arc;

/// Measures the backlog of `bus`, whose checkpoints `processing` keeps, into `metrics`.
pub struct Backlog {
    bus: Arc<dyn EventBus>,
    processing: Arc<dyn ProcessingBackend>,
    metrics: Arc<Metrics>,
}

impl Backlog {
    pub fn new(bus: Arc<dyn EventBus>, processing: Arc<dyn ProcessingBackend>, metrics: Arc<Metrics>) -> Backlog {
        Backlog { bus, processing, metrics }
    }

    /// Shares this node's end offsets, measures the backlog and sets `backlog_events` to it.
    /// Must run inside the tokio runtime (the processing state is read on a blocking thread).
    pub async fn measure(&self) -> Result<(), Error> {
        let own: Vec<u64> = (0..self.bus.partitions()).map(|p| self.bus.end_offset(p)).collect();
        let processing = self.processing.clone();
        let (ends, checkpoints) = tokio::task::spawn_blocking(move || {
            let ends = processing.share_ends(&own)?;
            Ok::<_, Error>((ends, processing.stats()?.checkpoints()?))
        })
        .await
        .map_err(|e| Error::Store(format!("reading the processing state: {e}")))??;
        Metrics::set(&self.metrics.backlog_events, unprocessed(&ends, &checkpoints));
        Ok(())
    }

    /// Forgets the last measure, when a new one failed: a backlog that cannot be measured does
    /// not hold ingest back (each node's own lag still does).
    pub fn forget(&self) {
        Metrics::set(&self.metrics.backlog_events, 0);
    }
}

/// The records below each partition's end offset (`ends[partition]`) and at or above its
/// checkpoint, summed; a partition without a checkpoint has processed nothing.
fn unprocessed(ends: &[u64], checkpoints: &[(u32, u64)]) -> u64 {
    let mut processed = vec![0; ends.len()];
    for &(partition, checkpoint) in checkpoints {
        if let Some(slot) = processed.get_mut(partition as usize) {
            *slot = checkpoint;
        }
    }
    ends.iter().zip(processed).map(|(end, checkpoint)| end.saturating_sub(checkpoint)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_sums_each_partitions_records_past_its_checkpoint() {
        assert_eq!(unprocessed(&[10, 20, 30], &[(0, 10), (1, 5), (2, 0)]), 15 + 30);
        // Order does not matter; a partition never committed counts from 0.
        assert_eq!(unprocessed(&[10, 20, 30], &[(2, 30), (0, 4)]), 6 + 20);
        // A checkpoint ahead of an end offset this node has not caught up with yet counts nothing.
        assert_eq!(unprocessed(&[10], &[(0, 12)]), 0);
        assert_eq!(unprocessed(&[], &[]), 0);
    }
}
