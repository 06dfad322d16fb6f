//! The event pipeline (`vexil-events`) as the service runs it: the durable log, the DLQ and the
//! processing state under `<data_dir>/events/`, the archive under `archive_dir`.
//!
//! Events built inside the server (exposures from assignment, raw evaluation events of tracked
//! flags) never wait for the log: they go into the tracker's bounded queue, which a task drains
//! into the ingestor in batches. A full queue drops the event and counts it
//! (`vexil_events_dropped_total`), so emitting never adds latency to a request or fails it.
//!
//! Evaluation counts an SDK reports may carry a `report_id`: the node remembers the newest
//! [`REPORT_IDS`] of them, so a report sent again after its reply was lost is not counted twice.
//!
//! Shutdown (after the HTTP server has drained its requests) flushes the evaluation counts,
//! appends what the queue still holds, closes open archive files, commits and closes the log.

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::service::experiments::Experiments;
use crate::service::supervise::Supervisor;
use chrono::{DateTime, Utc};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vexil_core::experiment::CompiledExperiment;
use vexil_core::Evaluation;
use vexil_events::archive::{ArchiveOptions, ArchiveStore, LocalArchive};
use vexil_events::backlog::Backlog;
use vexil_events::counters::{EventTotal, Window, EVALUATION_PREFIX};
use vexil_events::environment;
use vexil_events::pipeline::{ExperimentsByEnv, Pipeline, PipelineOptions};
use vexil_events::sqlite::SqliteBackend;
use vexil_events::store::ProcessingBackend;
use vexil_events::tracking::Tracker;
use vexil_events::{Dlq, Event, EventBus, FileLog, IngestOptions, Ingestor, LogOptions};

pub use vexil_events::Metrics as EventMetrics;

/// Events queued for the log by the server itself before new ones are dropped.
const QUEUE_CAPACITY: usize = 65_536;
/// Queued events appended per log write.
const QUEUE_BATCH: usize = 1_000;
/// How often evaluation counts are flushed to the log.
const COUNTS_FLUSH: Duration = Duration::from_secs(10);
/// Evaluation-count report ids a node remembers (the newest), to recognise a report sent again.
pub const REPORT_IDS: usize = 100_000;
/// How long shutdown waits for the pipeline to process what is in the log.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the backlog of a bus shared with other nodes is measured.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// The running pipeline and its entry points.
pub struct Events {
    pub ingestor: Arc<Ingestor>,
    pub dlq: Arc<Dlq>,
    pub pipeline: Arc<Pipeline>,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<EventMetrics>,
    /// The embedded log, closed at shutdown; `None` on a broker.
    log: Option<Arc<FileLog>>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    report_ids: Mutex<ReportIds>,
}

/// What became of an SDK's evaluation-count report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// Added to the node's counts.
    Counted,
    /// A report with this id and these counts was counted already: not counted again.
    Duplicate,
    /// A report with this id but other counts was counted already: a sender's mistake, not counted.
    IdReused,
}

/// The newest report ids with a fingerprint of their counts, oldest first in `order`.
#[derive(Default)]
struct ReportIds {
    seen: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl ReportIds {
    fn remember(&mut self, id: &str, fingerprint: u64) {
        self.seen.insert(id.to_owned(), fingerprint);
        self.order.push_back(id.to_owned());
        while self.order.len() > REPORT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

/// The same counts in the same order (an SDK sends a report again unchanged) hash alike.
fn fingerprint(counts: &[(&str, &str, u64)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    counts.hash(&mut hasher);
    hasher.finish()
}

/// Reads one of the pipeline's atomics.
type Reading = fn(&EventMetrics) -> &AtomicU64;

/// The pipeline's atomics as Prometheus metrics, brought up to date whenever the registry is
/// gathered, so `/metrics` shows them without a task copying them over.
struct Exported {
    metrics: Arc<EventMetrics>,
    counters: Vec<(IntCounter, Reading)>,
    gauges: Vec<(IntGauge, Reading)>,
}

impl Exported {
    fn new(metrics: Arc<EventMetrics>) -> Exported {
        let counters: [(&str, &str, Reading); 14] = [
            ("vexil_events_ingested_total", "Events appended durably to the log (rate: ingest rate).", |m| {
                &m.ingested_total
            }),
            (
                "vexil_events_rejected_total",
                "Events refused at ingest for failing validation (sent to the DLQ).",
                |m| &m.rejected_total,
            ),
            ("vexil_events_ingest_duplicates_total", "Redeliveries recognised at ingest and not appended.", |m| {
                &m.ingest_duplicates_total
            }),
            (
                "vexil_events_processed_duplicates_total",
                "Redeliveries recognised by the processor's dedupe stage.",
                |m| &m.processed_duplicates_total,
            ),
            ("vexil_events_processed_total", "Events aggregated, counted and archived.", |m| &m.processed_total),
            ("vexil_events_poison_total", "Log records sent to the DLQ after failing every processing attempt.", |m| {
                &m.poison_total
            }),
            (
                "vexil_events_dlq_refused_total",
                "Invalid events not dead-lettered because the DLQ was at its limit (their senders were told).",
                |m| &m.dlq_refused_total,
            ),
            ("vexil_events_dlq_truncated_total", "Dead-lettered payloads cut to the payload limit.", |m| {
                &m.dlq_truncated_total
            }),
            (
                "vexil_events_processor_panics_total",
                "Partition processors that panicked and were started again.",
                |m| &m.processor_panics_total,
            ),
            ("vexil_events_retries_total", "Retries of a failed processing step.", |m| &m.retries_total),
            ("vexil_events_archive_files_total", "Archive files written.", |m| &m.archive_files_total),
            ("vexil_events_archive_bytes_total", "Compressed bytes of archive files written.", |m| {
                &m.archive_bytes_total
            }),
            (
                "vexil_events_dropped_total",
                "Server-emitted events (exposures, tracked evaluations) dropped because the pipeline was saturated.",
                |m| &m.dropped_total,
            ),
            (
                "vexil_events_variant_conflicts_total",
                "Exposures naming another variant than the user's first one (ignored).",
                |m| &m.variant_conflicts_total,
            ),
        ];
        let gauges: [(&str, &str, Reading); 7] = [
            ("vexil_events_dlq_size", "Entries in the dead-letter queue.", |m| &m.dlq_size),
            ("vexil_events_lag_events", "Records in this node's log partitions not yet processed.", |m| &m.lag_events),
            (
                "vexil_events_backlog_events",
                "Records in every partition of the topic that no node has processed yet (distributed mode; measured every second).",
                |m| &m.backlog_events,
            ),
            (
                "vexil_events_partitions",
                "Log partitions this node processes (its share of the topic's in the distributed mode).",
                |m| &m.partitions,
            ),
            (
                "vexil_events_cached_users",
                "Users whose experiment state this node's event processors keep in memory (bounded by event_user_cache_entries).",
                |m| &m.cached_users,
            ),
            (
                "vexil_events_cached_members",
                "Unique-user counter memberships this node's event processors keep in memory (bounded by event_member_cache_entries).",
                |m| &m.cached_members,
            ),
            (
                "vexil_events_lag_seconds",
                "Age in seconds of the newest record being processed while behind; 0 when caught up.",
                |m| &m.lag_seconds,
            ),
        ];
        Exported {
            metrics,
            counters: counters
                .into_iter()
                .map(|(name, help, read)| (IntCounter::new(name, help).expect("valid metric"), read))
                .collect(),
            gauges: gauges
                .into_iter()
                .map(|(name, help, read)| (IntGauge::new(name, help).expect("valid metric"), read))
                .collect(),
        }
    }
}

impl Collector for Exported {
    fn desc(&self) -> Vec<&Desc> {
        let counters = self.counters.iter().flat_map(|(counter, _)| counter.desc());
        counters.chain(self.gauges.iter().flat_map(|(gauge, _)| gauge.desc())).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = &self.metrics;
        for (counter, read) in &self.counters {
            // The atomics only grow, so the difference is never negative.
            counter.inc_by(EventMetrics::get(read(metrics)).saturating_sub(counter.get()));
        }
        for (gauge, read) in &self.gauges {
            gauge.set(i64::try_from(EventMetrics::get(read(metrics))).unwrap_or(i64::MAX));
        }
        let counters = self.counters.iter().flat_map(|(counter, _)| counter.collect());
        counters.chain(self.gauges.iter().flat_map(|(gauge, _)| gauge.collect())).collect()
    }
}

/// The distributed mode's engines, where configured; each one left `None` is the embedded one
/// under the data directory.
#[derive(Default)]
pub struct Engines {
    /// A Kafka-protocol broker instead of the file log.
    pub bus: Option<Arc<dyn EventBus>>,
    /// An object store instead of the archive directory.
    pub archive: Option<Arc<dyn ArchiveStore>>,
    /// Processing state shared by the nodes (PostgreSQL) instead of the data directory's.
    pub processing: Option<Arc<dyn ProcessingBackend>>,
}

/// Measures `backlog` every [`BACKLOG_EVERY`] until `stop`. A measure that fails (the database
/// unreachable) leaves ingest to this node's own lag, with one warning until a measure succeeds
/// again.
async fn measure_backlog(backlog: Arc<Backlog>, stop: CancellationToken) {
    let mut failing = false;
    loop {
        match backlog.measure().await {
            Ok(()) => failing = false,
            Err(e) => {
                backlog.forget();
                if !failing {
                    tracing::warn!(error = %e, "cannot measure the event backlog; ingest goes by this node's lag until it can");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
}

impl Events {
    /// Opens the log, the DLQ, the archive (in the configured file format) and the processing
    /// state, starts processing (with every environment's experiments `feed` has, from the first
    /// record on; its threads call `release_freed_memory` when they go idle) and the tasks that
    /// drain the server's own events (under `supervisor`), and registers the pipeline's metrics
    /// in `registry`. Must run inside the tokio runtime.
    pub fn start(
        registry: &Metrics,
        config: &ServerConfig,
        engines: Engines,
        feed: &ExperimentFeed,
        supervisor: &Supervisor,
        release_freed_memory: fn(),
    ) -> Result<Events, String> {
        let (data_dir, archive_dir) = (config.data_dir.as_path(), config.archive_dir.as_path());
        let (archive_format, dlq_limits, state_cache) =
            (config.archive_format, config.dlq_limits, config.event_state_cache);
        let dir = data_dir.join("events");
        let metrics = Arc::new(EventMetrics::default());
        let (log, bus): (Option<Arc<FileLog>>, Arc<dyn EventBus>) = match engines.bus {
            Some(bus) => (None, bus),
            None => {
                let log = Arc::new(
                    FileLog::open(dir.join("log"), LogOptions::default())
                        .map_err(|e| format!("cannot open the event log in {}: {e}", dir.display()))?,
                );
                (Some(log.clone()), log)
            }
        };
        // The log creates it too, but on a broker there is no log.
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dlq = Arc::new(
            Dlq::open_with(&dir.join("dlq.sqlite"), metrics.clone(), dlq_limits)
                .map_err(|e| format!("cannot open the dead-letter queue in {}: {e}", dir.display()))?,
        );
        let archive: Arc<dyn ArchiveStore> = match engines.archive {
            Some(archive) => archive,
            None => Arc::new(
                LocalArchive::open(archive_dir)
                    .map_err(|e| format!("cannot open the event archive in {}: {e}", archive_dir.display()))?,
            ),
        };
        let processing: Arc<dyn ProcessingBackend> = match engines.processing {
            Some(processing) => processing,
            None => Arc::new(
                SqliteBackend::open(dir.join(vexil_events::sqlite::STATE_FILE))
                    .map_err(|e| format!("cannot open the processing state in {}: {e}", dir.display()))?
                    .journaling(state_cache.users),
            ),
        };
        let ingest_options = IngestOptions { max_lag_events: config.event_max_lag_events, ..IngestOptions::default() };
        let ingestor = Arc::new(Ingestor::new(bus.clone(), dlq.clone(), metrics.clone(), ingest_options));
        // On a bus other nodes share, this node's lag covers only its own partitions (none on an
        // ingest-only node).
        let backlog = log.is_none().then(|| Arc::new(Backlog::new(bus.clone(), processing.clone(), metrics.clone())));
        // Every environment's experiments, as fed so far.
        let pipeline = feed.start(|experiments| {
            let options = PipelineOptions {
                archive: ArchiveOptions { format: archive_format, ..ArchiveOptions::default() },
                state_cache,
                release_freed_memory,
                ..PipelineOptions::default()
            };
            Pipeline::start(bus.clone(), processing, dlq.clone(), archive, experiments, metrics.clone(), options)
                .map_err(|e| format!("cannot start the event pipeline in {}: {e}", dir.display()))
        })?;
        let (tracker, queued) = Tracker::new(metrics.clone(), QUEUE_CAPACITY);
        let stop = CancellationToken::new();
        // The queue outlives a panicking drain: the restarted task locks it again.
        let queued = Arc::new(tokio::sync::Mutex::new(queued));
        let mut tasks = vec![
            supervisor.spawn("tracked_events", stop.clone(), {
                let (ingestor, stop) = (ingestor.clone(), stop.clone());
                move || {
                    let (queued, ingestor, stop) = (queued.clone(), ingestor.clone(), stop.clone());
                    async move { queued.lock().await.run(ingestor, QUEUE_BATCH, stop.cancelled_owned()).await }
                }
            }),
            supervisor.spawn("evaluation_counts_flusher", stop.clone(), {
                let (tracker, bus, stop) = (tracker.clone(), bus.clone(), stop.clone());
                move || tracker.clone().run_flusher(bus.clone(), COUNTS_FLUSH, stop.clone().cancelled_owned())
            }),
        ];
        if let Some(backlog) = backlog {
            tasks.push(supervisor.spawn("event_backlog", stop.clone(), {
                let stop = stop.clone();
                move || measure_backlog(backlog.clone(), stop.clone())
            }));
        }
        registry.register([Box::new(Exported::new(metrics.clone())) as Box<dyn Collector>]);
        Ok(Events {
            ingestor,
            dlq,
            pipeline,
            tracker,
            metrics,
            log,
            stop,
            tasks: Mutex::new(tasks),
            report_ids: Mutex::default(),
        })
    }

    /// The events of environment `env`: what evaluation and assignment there record.
    pub fn of<'a>(&'a self, env: &'a Arc<str>) -> EventsIn<'a> {
        EventsIn { events: self, env: (&**env != environment::PRODUCTION).then_some(env) }
    }

    /// Adds a report of evaluation counts made in environment `env` unless its `report_id` was
    /// counted already there.
    pub fn add_reported_counts(
        &self,
        env: &Arc<str>,
        report_id: Option<&str>,
        counts: &[(&str, &str, u64)],
    ) -> Reported {
        if let Some(id) = report_id {
            // Report ids are remembered per environment, like event ids.
            let id = environment::qualify_id(environment::stored(env), id);
            let fingerprint = fingerprint(counts);
            let mut ids = self.report_ids.lock().expect("report ids poisoned");
            match ids.seen.get(id.as_ref()) {
                Some(&seen) if seen == fingerprint => return Reported::Duplicate,
                Some(_) => return Reported::IdReused,
                None => ids.remember(&id, fingerprint),
            }
        }
        let env = environment::stored(env);
        for &(flag, variant, n) in counts {
            self.tracker.record_many(env, flag, variant, n);
        }
        Reported::Counted
    }

    /// Flushes and stops everything, in order: the server's queued events and evaluation
    /// counts into the log, the log through processing, open archive files, then the log.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("event tasks poisoned"));
        for task in tasks {
            // A supervised task ends when it has flushed; the handle fails only if the
            // runtime is going away, and then there is nothing left to wait for.
            let _ = task.await;
        }
        tokio::task::block_in_place(|| {
            if !self.pipeline.wait_caught_up(DRAIN_TIMEOUT) {
                tracing::warn!(
                    lag = self.pipeline.lag(),
                    "stopping before the event pipeline caught up; the rest is processed at the next start"
                );
            }
            self.pipeline.stop();
            if let Some(log) = &self.log {
                log.close();
            }
        });
    }
}

/// The events of one environment, as evaluation and assignment there record them.
#[derive(Clone, Copy)]
pub struct EventsIn<'a> {
    events: &'a Events,
    /// `None`: production (see `vexil_events::environment`).
    env: Option<&'a Arc<str>>,
}

impl EventsIn<'_> {
    /// Queues an exposure event for the log; never waits, never fails (a full queue drops it
    /// and counts the drop).
    pub fn emit_exposure(&self, event: Event) {
        self.events.tracker.track(self.env.cloned(), event);
    }

    /// Counts one evaluation (one atomic increment) and, for a flag with `track_events`, queues
    /// its raw `evaluation` event; never waits, a full queue drops and counts.
    pub fn track<'e>(&self, evaluation: &Evaluation<'e>, user_id: &'e str) {
        let tracker = &self.events.tracker;
        tracker.record(self.env.map(|e| &**e), &evaluation.flag.key, evaluation.variant);
        if evaluation.flag.track_events {
            tracker.track(self.env.cloned(), Tracker::evaluation_event(&evaluation.record(user_id)));
        }
    }

    /// The names of the events this environment was sent in the UTC days starting in
    /// `[from, to)`, with their count and sum of `value` over those days, ordered by name.
    /// Evaluation counts are the flags' and are left out; the shared counters hold every
    /// environment's names, each other environment's qualified, and only this one's are kept.
    pub async fn event_names(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<EventTotal>, String> {
        let pipeline = self.events.pipeline.clone();
        let totals = tokio::task::spawn_blocking(move || pipeline.stats()?.event_totals(Window::Day, from, to))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the counters: {e}"))?;
        let env = self.env.map(|e| &**e);
        Ok(totals
            .into_iter()
            .filter_map(|total| {
                let (owner, name) = environment::split(&total.event);
                if owner != env || name.starts_with(EVALUATION_PREFIX) {
                    return None;
                }
                Some(EventTotal { event: name.to_owned(), count: total.count, sum: total.sum })
            })
            .collect())
    }
}

/// The experiments of a snapshot as the pipeline aggregates them: the snapshot's compiled
/// experiments themselves, so metric filters see the snapshot's segments.
pub fn experiment_definitions(experiments: &Experiments) -> Vec<Arc<CompiledExperiment>> {
    experiments.iter().map(|live| live.compiled.clone()).collect()
}

/// Hands every environment's experiments to the pipeline: each new snapshot's, so a new
/// experiment counts from its first exposure and a changed metric (or a changed segment its
/// filter uses) from the change on. Environments are loaded before the pipeline starts, so
/// until then their experiments wait here and the pipeline starts with all of them (no record
/// of any environment is processed without its experiments).
#[derive(Default)]
pub struct ExperimentFeed {
    /// The pipeline once started; before, what it will start with.
    state: Mutex<(Option<Arc<Pipeline>>, ExperimentsByEnv)>,
}

impl ExperimentFeed {
    /// The hook [`crate::service::environments::Environments`] calls.
    pub fn hook(self: &Arc<Self>) -> crate::service::environments::EnvironmentHook {
        let feed = self.clone();
        Arc::new(move |env, snapshot| {
            let experiments = snapshot.map(|s| experiment_definitions(&s.experiments)).unwrap_or_default();
            let env = environment::stored(env);
            let mut state = feed.state.lock().expect("experiment feed poisoned");
            match &state.0 {
                Some(pipeline) => pipeline.set_experiments_of(env, experiments),
                None if experiments.is_empty() => {
                    state.1.remove(&env.map(str::to_owned));
                }
                None => {
                    state.1.insert(env.map(str::to_owned), experiments);
                }
            }
        })
    }

    /// Starts the pipeline with the experiments fed so far; later ones go straight to it.
    pub fn start<E>(&self, start: impl FnOnce(ExperimentsByEnv) -> Result<Pipeline, E>) -> Result<Arc<Pipeline>, E> {
        let mut state = self.state.lock().expect("experiment feed poisoned");
        let pipeline = Arc::new(start(std::mem::take(&mut state.1))?);
        state.0 = Some(pipeline.clone());
        Ok(pipeline)
    }
}
