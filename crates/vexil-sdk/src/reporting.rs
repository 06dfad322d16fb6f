//! Evaluation counts and events, sent to the server in the background (SPEC 5).
//!
//! A getter adds one to an atomic counter of the configuration it evaluated on and, for a flag
//! with `track_events`, queues a raw `evaluation` event (the one the server would emit);
//! [`Client::track`](crate::Client::track) queues the application's own events. Every
//! `report_interval` a task sends the counts to `POST /v1/events/evaluation-counts` and the
//! queued events, in batches, to `POST /v1/events`. Nothing here waits on the evaluation path.
//!
//! Bounded: the event queue holds `event_capacity` events; while the server cannot be reached
//! events stay queued and are sent again, and an event that finds the queue full is dropped and
//! counted ([`Delivery::events_dropped`]). Counts are summed per flag and variant while they wait,
//! so they take no more room however long the server is away. Each event carries an `event_id`,
//! so one sent twice (a reply lost after the server took it) is counted once by the server.

use crate::configuration::Configuration;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use vexil_core::Evaluation;

/// Events sent per request at most (the server takes up to 10,000).
const BATCH: usize = 1_000;

/// What the background reporting has done so far, for the application's own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Events the server acknowledged (accepted, duplicates or rejected as invalid).
    pub events_sent: u64,
    /// Events dropped because the queue was full (the server unreachable for long).
    pub events_dropped: u64,
    /// Evaluations whose counts the server acknowledged.
    pub evaluations_reported: u64,
}

/// The counts and events waiting to be sent.
pub(crate) struct Reporter {
    events: Mutex<VecDeque<Value>>,
    capacity: usize,
    /// Counts taken from configurations that are no longer served, or not sent yet.
    pending_counts: Mutex<HashMap<(String, String), u64>>,
    events_sent: AtomicU64,
    events_dropped: AtomicU64,
    evaluations_reported: AtomicU64,
}

impl Reporter {
    pub fn new(capacity: usize) -> Reporter {
        Reporter {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            pending_counts: Mutex::default(),
            events_sent: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            evaluations_reported: AtomicU64::new(0),
        }
    }

    pub fn delivery(&self) -> Delivery {
        Delivery {
            events_sent: self.events_sent.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            evaluations_reported: self.evaluations_reported.load(Ordering::Relaxed),
        }
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub fn queue(&self, event: Value) {
        let mut events = self.events.lock().expect("event queue poisoned");
        if events.len() >= self.capacity {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            events.push_back(event);
        }
    }

    /// Queues the raw `evaluation` event of a flag with `track_events`, shaped as the server's.
    pub fn queue_evaluation(&self, evaluation: &Evaluation<'_>, user_id: &str) {
        let mut properties = Map::new();
        properties.insert("reason".into(), json!(evaluation.reason.name()));
        properties.insert("value".into(), evaluation.value.clone());
        if let Some(version) = evaluation.flag.meta.version {
            properties.insert("flag_version".into(), json!(version));
        }
        self.queue(json!({
            "event_id": uuid::Uuid::new_v4().to_string(), "event": evaluation.flag.key, "type": "evaluation",
            "user_id": user_id, "timestamp": now_rfc3339(), "properties": properties,
            "variant": evaluation.variant,
        }));
    }

    /// Keeps the counts of a configuration that is being replaced, for the next report.
    pub fn retire(&self, configuration: &Configuration) {
        self.add_counts(configuration.take_counts());
    }

    fn add_counts(&self, counts: Vec<(String, String, u64)>) {
        let mut pending = self.pending_counts.lock().expect("pending counts poisoned");
        for (flag, variant, n) in counts {
            *pending.entry((flag, variant)).or_default() += n;
        }
    }

    /// Sends what has gathered; what the server did not take waits for the next report.
    pub async fn report(&self, http: &reqwest::Client, base_url: &str, key: &str, current: Option<&Configuration>) {
        if let Some(configuration) = current {
            self.add_counts(configuration.take_counts());
        }
        let counts: Vec<_> =
            std::mem::take(&mut *self.pending_counts.lock().expect("pending counts poisoned")).into_iter().collect();
        if !counts.is_empty() {
            let body: Vec<Value> = counts
                .iter()
                .map(|((flag, variant), n)| json!({"flag": flag, "variant": variant, "count": n}))
                .collect();
            let url = format!("{base_url}/v1/events/evaluation-counts");
            match send(http, &url, key, &json!({ "counts": body })).await {
                Ok(()) => {
                    let total: u64 = counts.iter().map(|(_, n)| n).sum();
                    self.evaluations_reported.fetch_add(total, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send evaluation counts; keeping them for the next report");
                    self.add_counts(counts.into_iter().map(|((f, v), n)| (f, v, n)).collect());
                }
            }
        }
        loop {
            let batch: Vec<Value> = {
                let mut events = self.events.lock().expect("event queue poisoned");
                let n = events.len().min(BATCH);
                events.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let sent = batch.len() as u64;
            if let Err(e) = send(http, &format!("{base_url}/v1/events"), key, &json!({ "events": batch })).await {
                tracing::warn!(error = %e, "cannot send events; keeping them for the next report");
                self.put_back(batch);
                return;
            }
            self.events_sent.fetch_add(sent, Ordering::Relaxed);
        }
    }

    /// Puts unsent events back in front of the queue; those that no longer fit are dropped.
    fn put_back(&self, batch: Vec<Value>) {
        let mut events = self.events.lock().expect("event queue poisoned");
        let room = self.capacity.saturating_sub(events.len());
        let dropped = batch.len().saturating_sub(room);
        self.events_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        for event in batch.into_iter().take(room).rev() {
            events.push_front(event);
        }
    }
}

async fn send(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Result<(), String> {
    let response = http.post(url).bearer_auth(key).json(body).send().await.map_err(|e| e.to_string())?;
    // A refused batch (400, 413) would be refused again: it counts as delivered, and is logged.
    match response.status() {
        status if status.is_success() => Ok(()),
        status if status.is_client_error() && status.as_u16() != 401 && status.as_u16() != 429 => {
            tracing::warn!(%status, url, "the server refused a report; not sending it again");
            Ok(())
        }
        status => Err(format!("the server answered {status}")),
    }
}

/// The time of an event, taken when it is queued (it may be sent much later).
pub(crate) fn now_rfc3339() -> Value {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).map_or(Value::Null, Value::String)
}
