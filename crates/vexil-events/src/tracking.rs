//! Evaluation tracking (SPEC 5): it must never slow an evaluation down.
//!
//! - Counts per flag × variant live in atomics. The hot path takes the map's read lock (shared
//!   by every evaluation) and increments one counter; only the first evaluation of a new flag ×
//!   variant takes the write lock, to insert its counter in place. (A copy-on-write map made the
//!   first evaluation of 10,000 flags copy the map 10,000 times: a quadratic first pass after
//!   every start.) A flusher swaps the counts out periodically and at every hour boundary, and
//!   appends them to the durable log, from which the pipeline adds them to the
//!   `$evaluation:<flag>` counters exactly once.
//! - Raw events built inside the server (`evaluation` events of flags with `track_events`,
//!   `exposure` events of assignments) go through a bounded queue. When it is full the event is
//!   dropped and counted in `dropped_total`, instead of blocking.

use crate::event::{EvaluationCounts, Event, EventType, LogRecord};
use crate::ingest::Ingestor;
use crate::log::{BusRecord, EventBus, LogError};
use crate::metrics::Metrics;
use chrono::Utc;
use foldhash::fast::RandomState;
use serde_json::{json, Map};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Counters by flag, then variant: keys from the configuration, not from clients, so the fast
/// seeded hasher (looked up twice on every evaluation) is safe here.
type Slots = HashMap<String, HashMap<String, Arc<AtomicU64>, RandomState>, RandomState>;

/// An environment as records store it (`None`: production, see [`crate::environment`]).
pub type Env = Option<Arc<str>>;

/// A raw event waiting in the queue, with its environment.
pub type Queued = (Env, Event);

/// Counts evaluations and queues raw evaluation events.
pub struct Tracker {
    /// Per environment: a handful, so a short list scanned before the flag's map.
    slots: RwLock<Vec<(Env, Arc<RwLock<Slots>>)>>,
    raw: mpsc::Sender<Queued>,
    metrics: Arc<Metrics>,
    /// Start (Unix seconds) of the hour the counts being gathered belong to.
    hour: Mutex<i64>,
}

/// The receiving end of the raw evaluation events queue; drain it with [`TrackedEvents::run`].
pub struct TrackedEvents(mpsc::Receiver<Queued>);

fn hour_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(3600) * 3600
}

impl Tracker {
    /// A tracker whose raw-event queue holds `capacity` events.
    pub fn new(metrics: Arc<Metrics>, capacity: usize) -> (Arc<Tracker>, TrackedEvents) {
        let (raw, receiver) = mpsc::channel(capacity);
        let tracker =
            Tracker { slots: RwLock::new(Vec::new()), raw, metrics, hour: Mutex::new(hour_of(Utc::now().timestamp())) };
        (Arc::new(tracker), TrackedEvents(receiver))
    }

    /// Counts one evaluation of `flag` that served `variant` in environment `env`.
    pub fn record(&self, env: Option<&str>, flag: &str, variant: &str) {
        self.record_many(env, flag, variant, 1);
    }

    /// Counts `n` evaluations of `flag` that served `variant` in environment `env` (an SDK's
    /// counts arrive summed).
    pub fn record_many(&self, env: Option<&str>, flag: &str, variant: &str, n: u64) {
        {
            let environments = self.slots.read().expect("tracker lock poisoned");
            if let Some((_, slots)) = environments.iter().find(|(e, _)| e.as_deref() == env) {
                let slots = slots.read().expect("tracker lock poisoned");
                if let Some(slot) = slots.get(flag).and_then(|v| v.get(variant)) {
                    slot.fetch_add(n, Ordering::Relaxed);
                    return;
                }
            }
        }
        // Another evaluation may have inserted it meanwhile: the entry API keeps its count.
        let slots = {
            let mut environments = self.slots.write().expect("tracker lock poisoned");
            match environments.iter().find(|(e, _)| e.as_deref() == env) {
                Some((_, slots)) => slots.clone(),
                None => {
                    let slots = Arc::new(RwLock::new(Slots::default()));
                    environments.push((env.map(Arc::from), slots.clone()));
                    slots
                }
            }
        };
        let mut slots = slots.write().expect("tracker lock poisoned");
        let slot = slots.entry(flag.to_owned()).or_default().entry(variant.to_owned()).or_default();
        slot.fetch_add(n, Ordering::Relaxed);
    }

    /// Queues a raw event (an evaluation or an exposure) of environment `env`; false (and
    /// counted as dropped) when the queue is full or closed.
    pub fn track(&self, env: Env, event: Event) -> bool {
        let queued = self.raw.try_send((env, event)).is_ok();
        if !queued {
            Metrics::add(&self.metrics.dropped_total, 1);
        }
        queued
    }

    /// Appends the counts gathered so far to the log, one record per environment; returns how
    /// many flag × variant pairs had counts. On failure the counts are put back, to go with the
    /// next flush.
    pub async fn flush(&self, bus: &dyn EventBus) -> Result<usize, LogError> {
        let now = Utc::now();
        let hour = std::mem::replace(&mut *self.hour.lock().expect("tracker lock poisoned"), hour_of(now.timestamp()));
        let environments = self.slots.read().expect("tracker lock poisoned").clone();
        let mut taken = Vec::new();
        let mut records = Vec::new();
        for (env, slots) in environments {
            let first = taken.len();
            for (flag, variants) in slots.read().expect("tracker lock poisoned").iter() {
                for (variant, slot) in variants {
                    let n = slot.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        taken.push((flag.clone(), variant.clone(), n, slot.clone()));
                    }
                }
            }
            if taken.len() == first {
                continue;
            }
            let counts = taken[first..].iter().map(|(f, v, n, _)| (f.clone(), v.clone(), *n)).collect();
            let env = env.as_deref().map(str::to_owned);
            let counts = EvaluationCounts { hour, counts, flushed_at: now.timestamp_millis(), env };
            records.push(BusRecord::unkeyed(LogRecord::EvaluationCounts(counts).to_bytes()));
        }
        if taken.is_empty() {
            return Ok(0);
        }
        match bus.append(records).await {
            Ok(_) => Ok(taken.len()),
            Err(e) => {
                for (_, _, n, slot) in taken {
                    slot.fetch_add(n, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Flushes every `interval` and at each hour boundary, so counts land in the right hour,
    /// and once more when `stop` completes.
    pub async fn run_flusher(
        self: Arc<Self>,
        bus: Arc<dyn EventBus>,
        interval: Duration,
        stop: impl Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let now = Utc::now();
            let to_hour = Duration::from_millis((3_600_000 - now.timestamp_millis().rem_euclid(3_600_000)) as u64);
            let stopping = tokio::select! {
                () = tokio::time::sleep(interval.min(to_hour)) => false,
                () = &mut stop => true,
            };
            // A failed flush keeps its counts for the next one; the log reports its own errors.
            let _ = self.flush(bus.as_ref()).await;
            if stopping {
                return;
            }
        }
    }

    /// The raw event of one evaluation: `event` is the flag key, `type` is `evaluation`.
    pub fn evaluation_event(record: &vexil_core::EvaluationRecord<'_>) -> Event {
        let mut properties = Map::new();
        properties.insert("reason".into(), json!(record.reason.name()));
        properties.insert("value".into(), record.value.clone());
        if let Some(version) = record.flag_version {
            properties.insert("flag_version".into(), json!(version));
        }
        Event {
            event_id: uuid::Uuid::new_v4().to_string(),
            event: record.flag_key.to_owned(),
            kind: EventType::Evaluation,
            user_id: record.user_id.to_owned(),
            timestamp: Utc::now(),
            value: None,
            properties,
            experiment_key: None,
            variant: Some(record.variant.to_owned()),
        }
    }
}

impl TrackedEvents {
    /// Appends queued events in batches of up to `batch` until the tracker is gone or `stop`
    /// completes; then the queue is closed and what it still holds is appended. It borrows the
    /// queue, so a supervisor can run it again on the same queue after a panic.
    pub async fn run(&mut self, ingestor: Arc<Ingestor>, batch: usize, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut events = Vec::with_capacity(batch);
        let mut stopping = false;
        loop {
            let received = if stopping {
                self.0.recv_many(&mut events, batch).await
            } else {
                tokio::select! {
                    n = self.0.recv_many(&mut events, batch) => n,
                    () = &mut stop => {
                        self.0.close();
                        stopping = true;
                        continue;
                    }
                }
            };
            if received == 0 {
                return;
            }
            // Events that cannot be appended now are dropped and counted, like a full queue.
            // The queue mixes environments; each environment's events go in one append.
            events.sort_by(|(a, _), (b, _)| a.cmp(b));
            for chunk in events.chunk_by(|(a, _), (b, _)| a == b) {
                let env = chunk[0].0.as_deref();
                let batch: Vec<Event> = chunk.iter().map(|(_, event)| event.clone()).collect();
                if ingestor.ingest_events(env, &batch).await.is_err() {
                    Metrics::add(&ingestor.metrics().dropped_total, batch.len() as u64);
                }
            }
            events.clear();
        }
    }
}
