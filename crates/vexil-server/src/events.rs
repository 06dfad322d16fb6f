//! The event pipeline (`vexil-events`) as the service runs it: the durable log, the DLQ and the
//! processing state under `<data_dir>/events/`, the archive under `archive_dir`.
//!
//! Events built inside the server (exposures from assignment, raw evaluation events of tracked
//! flags) never wait for the log: they go into the tracker's bounded queue, which a task drains
//! into the ingestor in batches. A full queue drops the event and counts it
//! (`vexil_events_dropped_total`), so emitting never adds latency to a request or fails it.
//!
//! Shutdown (after the HTTP server has drained its requests) flushes the evaluation counts,
//! appends what the queue still holds, closes open archive files, commits and closes the log.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vexil_events::archive::LocalArchive;
use vexil_events::pipeline::{Pipeline, PipelineOptions};
use vexil_events::tracking::Tracker;
use vexil_events::{Dlq, Event, EventBus, FileLog, IngestOptions, Ingestor, LogOptions};

pub use vexil_events::Metrics as EventMetrics;

/// Events queued for the log by the server itself before new ones are dropped.
const QUEUE_CAPACITY: usize = 65_536;
/// Queued events appended per log write.
const QUEUE_BATCH: usize = 1_000;
/// How often evaluation counts are flushed to the log.
const COUNTS_FLUSH: Duration = Duration::from_secs(10);
/// How long shutdown waits for the pipeline to process what is in the log.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The running pipeline and its entry points.
pub struct Events {
    pub ingestor: Arc<Ingestor>,
    pub dlq: Arc<Dlq>,
    pub pipeline: Pipeline,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<EventMetrics>,
    log: Arc<FileLog>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Events {
    /// Opens the log, the DLQ, the archive and the processing state, and starts processing and
    /// the tasks that drain the server's own events. Must run inside the tokio runtime.
    pub fn start(data_dir: &Path, archive_dir: &Path) -> Result<Events, String> {
        let dir = data_dir.join("events");
        let metrics = Arc::new(EventMetrics::default());
        let log = Arc::new(
            FileLog::open(dir.join("log"), LogOptions::default())
                .map_err(|e| format!("cannot open the event log in {}: {e}", dir.display()))?,
        );
        let dlq = Arc::new(
            Dlq::open(&dir.join("dlq.sqlite"), metrics.clone())
                .map_err(|e| format!("cannot open the dead-letter queue in {}: {e}", dir.display()))?,
        );
        let archive = LocalArchive::open(archive_dir)
            .map_err(|e| format!("cannot open the event archive in {}: {e}", archive_dir.display()))?;
        let bus: Arc<dyn EventBus> = log.clone();
        let ingestor = Arc::new(Ingestor::new(bus.clone(), dlq.clone(), metrics.clone(), IngestOptions::default()));
        let pipeline = Pipeline::start(
            &dir,
            bus.clone(),
            dlq.clone(),
            Box::new(archive),
            Vec::new(),
            metrics.clone(),
            PipelineOptions::default(),
        )
        .map_err(|e| format!("cannot start the event pipeline in {}: {e}", dir.display()))?;
        let (tracker, queued) = Tracker::new(metrics.clone(), QUEUE_CAPACITY);
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(queued.run(ingestor.clone(), QUEUE_BATCH, stop.clone().cancelled_owned())),
            tokio::spawn(tracker.clone().run_flusher(bus, COUNTS_FLUSH, stop.clone().cancelled_owned())),
        ];
        Ok(Events { ingestor, dlq, pipeline, tracker, metrics, log, stop, tasks: Mutex::new(tasks) })
    }

    /// Queues an exposure event for the log; never waits, never fails (a full queue drops it
    /// and counts the drop).
    pub fn emit_exposure(&self, event: Event) {
        self.tracker.track(event);
    }

    /// Flushes and stops everything, in order: the server's queued events and evaluation
    /// counts into the log, the log through processing, open archive files, then the log.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("event tasks poisoned"));
        for task in tasks {
            // A task that panicked has nothing left to flush.
            let _ = task.await;
        }
        tokio::task::block_in_place(|| {
            let end = self.log.end_offset();
            if !self.pipeline.wait_for(end, DRAIN_TIMEOUT) {
                tracing::warn!(
                    lag = end.saturating_sub(self.pipeline.committed()),
                    "stopping before the event pipeline caught up; the rest is processed at the next start"
                );
            }
            self.pipeline.stop();
            self.log.close();
        });
    }
}
