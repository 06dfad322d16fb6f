//! The reader of one partition: a thread that reads the log ahead of the processor and hands it
//! decoded batches through a bounded queue.
//!
//! A batch holds up to `batch_records` records; one that is not full waits up to `linger` for
//! more, since every batch ends in one commit. When the processor falls behind the queue fills
//! and the reader blocks (backpressure) instead of reading the log into memory.

use crate::background;
use crate::error::Error;
use crate::event::ReadRecord;
use crate::log::{BusReader, LogError, Record};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A log record as the reader decoded it; one that does not decode keeps its cause and bytes,
/// for the DLQ.
pub(super) struct Decoded {
    pub offset: u64,
    pub record: Result<ReadRecord, (String, Vec<u8>)>,
}

pub(super) type Batch = Result<Vec<Decoded>, Error>;

/// How the reader batches records.
#[derive(Clone, Copy)]
pub(super) struct Batching {
    /// Records per batch at most.
    pub max: usize,
    /// How long to wait for a first record before checking whether to stop.
    pub wait: Duration,
    /// How long a batch that is not full waits for more.
    pub linger: Duration,
    /// Batches the reader may run ahead.
    pub queue: usize,
}

/// Starts reading with `reader` on a thread named `name`, until `done` is set or the receiver
/// is dropped. The reader runs until the processor is done with it (not until the pipeline
/// stops): a reader that stopped first would end the processor's session before it closed the
/// archive files. A read that fails is sent as the last batch. When a read after records finds
/// none, the thread calls `release_freed_memory` (see [`super::PipelineOptions`]).
pub(super) fn spawn(
    name: String,
    mut reader: Box<dyn BusReader>,
    batching: Batching,
    done: Arc<AtomicBool>,
    release_freed_memory: fn(),
) -> std::io::Result<(JoinHandle<()>, Receiver<Batch>)> {
    let (sender, receiver) = sync_channel::<Batch>(batching.queue);
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        background::lower_priority();
        let mut busy = false;
        while !done.load(Ordering::SeqCst) {
            let batch = poll_lingering(&mut *reader, batching).map_err(Error::from).map(|records| {
                records
                    .into_iter()
                    .map(|Record { offset, payload }| Decoded { offset, record: ReadRecord::decode(payload) })
                    .collect::<Vec<_>>()
            });
            let failed = batch.is_err();
            if matches!(&batch, Ok(records) if records.is_empty()) {
                if std::mem::take(&mut busy) {
                    release_freed_memory();
                }
                continue;
            }
            busy = true;
            if sender.send(batch).is_err() || failed {
                return;
            }
        }
    })?;
    Ok((handle, receiver))
}

/// Up to `max` records: waits up to `wait` for the first, then up to `linger` after it for
/// the batch to fill.
fn poll_lingering(reader: &mut dyn BusReader, batching: Batching) -> Result<Vec<Record>, LogError> {
    let Batching { max, wait, linger, .. } = batching;
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
