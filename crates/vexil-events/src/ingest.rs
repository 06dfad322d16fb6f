//! Ingest: decoding request bodies into events, validating each one, and appending the valid
//! ones to the durable log before answering.
//!
//! Accepted bodies (SPEC 4): a JSON array of events, `{"events": [...]}`, NDJSON (one event per
//! line), and Kinesis-shaped `{"Records": [{"kinesis": {"data": base64, "sequenceNumber"}}]}`.
//! Every event is judged on its own (partial acceptance): a valid event is appended even when
//! its neighbours are not, and each invalid one goes to the DLQ with its error and raw text.

use crate::dlq::{Dlq, DlqFilter};
use crate::environment;
use crate::event::{
    skip_whitespace, validate_event, validate_prefix, validate_text, Event, EventError, Receipt, ValidEvent,
};
use crate::log::{BusRecord, EventBus};
use crate::metrics::Metrics;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Most events in one batch (SPEC 5).
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest batch body in bytes (SPEC 5).
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;

/// A request that is refused as a whole, with the HTTP status it maps to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct IngestError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl IngestError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        IngestError { status, code, message: message.into() }
    }

    fn invalid_body(message: impl Into<String>) -> Self {
        IngestError::new(400, "invalid_body", message)
    }

    /// The error body of SPEC 4.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// How to read a body of `POST /v1/events`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// Decide from the body: an array, an `{"events"}` envelope, or else NDJSON.
    #[default]
    Auto,
    /// NDJSON, whatever the body looks like (`Content-Type: application/x-ndjson`).
    Ndjson,
}

/// One rejected event of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub index: usize,
    pub error: EventError,
}

/// The answer to `POST /v1/events`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// The answer to `POST /v1/events/kinesis`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KinesisResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<KinesisFailure>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KinesisFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// The outcome of replaying DLQ entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Entries that validated and were appended (and left the queue).
    pub replayed: usize,
    /// Entries whose event had already been accepted (they left the queue too).
    pub duplicates: usize,
    /// Entries that still fail; they stay, with their new error and one more attempt.
    pub failed: usize,
}

/// Tuning of ingest.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Refuse batches (429) while processing is more than this many events behind: this node's
    /// partitions, or the whole bus's backlog where other nodes share it.
    pub max_lag_events: u64,
    /// How many sender-given event ids are remembered to answer `duplicates` at the door.
    pub recent_ids: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions { max_lag_events: 20_000_000, recent_ids: 1_000_000 }
    }
}

/// What happened to one item of a batch.
enum Outcome {
    Accepted,
    Duplicate,
    Rejected(EventError),
}

/// Validates batches and appends their valid events to the log.
pub struct Ingestor {
    bus: Arc<dyn EventBus>,
    dlq: Arc<Dlq>,
    metrics: Arc<Metrics>,
    options: IngestOptions,
    recent: Arc<Mutex<RecentIds>>,
}

impl Ingestor {
    pub fn new(bus: Arc<dyn EventBus>, dlq: Arc<Dlq>, metrics: Arc<Metrics>, options: IngestOptions) -> Self {
        let recent = Arc::new(Mutex::new(RecentIds::new(options.recent_ids)));
        Ingestor { bus, dlq, metrics, options, recent }
    }

    /// The metrics ingest updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// `POST /v1/events` in production: decodes the body and accepts each valid event.
    pub async fn ingest(&self, body: &[u8], format: BodyFormat) -> Result<IngestResponse, IngestError> {
        self.ingest_in(None, body, format).await
    }

    /// `POST /v1/events` in environment `env` (`None`: production, see [`crate::environment`]).
    pub async fn ingest_in(
        &self,
        env: Option<&str>,
        body: &[u8],
        format: BodyFormat,
    ) -> Result<IngestResponse, IngestError> {
        let now = Utc::now();
        let texts;
        let judged = match decode_body(body, format, now)? {
            Body::Judged(judged) => judged,
            Body::Texts(items) => {
                texts = items;
                judge(&texts, now)
            }
        };
        Ok(summarise(self.accept(env, judged, now).await?))
    }

    /// `POST /v1/events/kinesis` in production.
    pub async fn ingest_kinesis(&self, body: &[u8]) -> Result<KinesisResponse, IngestError> {
        self.ingest_kinesis_in(None, body).await
    }

    /// `POST /v1/events/kinesis` in environment `env`: a record fails when its data is not
    /// base64, not JSON, or not a valid event; redelivered records succeed (they were accepted
    /// before).
    pub async fn ingest_kinesis_in(&self, env: Option<&str>, body: &[u8]) -> Result<KinesisResponse, IngestError> {
        let now = Utc::now();
        let records = decode_kinesis(body)?;
        let (ids, items): (Vec<String>, Vec<Item>) = records.into_iter().unzip();
        let outcomes = self.accept(env, judge(&items, now), now).await?;
        let batch_item_failures = ids
            .into_iter()
            .zip(outcomes)
            .filter(|(_, outcome)| matches!(outcome, Outcome::Rejected(_)))
            .map(|(item_identifier, _)| KinesisFailure { item_identifier })
            .collect();
        Ok(KinesisResponse { batch_item_failures })
    }

    /// Appends events built inside the server (exposures from assignment, tracked evaluations)
    /// in environment `env`, whose ids the server generated.
    pub async fn ingest_events(&self, env: Option<&str>, events: &[Event]) -> Result<IngestResponse, IngestError> {
        let now = Utc::now();
        let judged = events.iter().map(|event| (event, validate_event(event, now).map(ValidEvent::with_generated_id)));
        Ok(summarise(self.accept(env, judged.collect(), now).await?))
    }

    /// Validates the selected DLQ entries (of the filter's environment) again; the ones that
    /// pass are appended to that environment and removed.
    pub async fn replay_dlq(&self, filter: &DlqFilter) -> Result<ReplayReport, IngestError> {
        let env = filter.env.as_deref();
        let entries = self.dlq.list(filter).map_err(unavailable)?;
        let now = Utc::now();
        let mut report = ReplayReport::default();
        let mut valid = Vec::new();
        let mut done = Vec::new();
        for entry in &entries {
            match validate_text(&entry.payload, now) {
                Ok(event) => valid.push((entry.id, event)),
                Err(error) => {
                    report.failed += 1;
                    self.dlq.record_failed_replay(entry.id, &error).map_err(unavailable)?;
                }
            }
        }
        let (ids, events): (Vec<i64>, Vec<ValidEvent>) = valid.into_iter().unzip();
        let outcomes = self.append_valid(env, &events, now).await?;
        for (id, duplicate) in ids.into_iter().zip(outcomes) {
            if duplicate {
                report.duplicates += 1;
            } else {
                report.replayed += 1;
            }
            done.push(id);
        }
        if !done.is_empty() {
            let done = DlqFilter { env: filter.env.clone(), ids: Some(done), ..DlqFilter::default() };
            self.dlq.purge(&done).map_err(unavailable)?;
        }
        Ok(report)
    }

    /// Dead-letters the rejected events of a batch and appends the valid ones.
    async fn accept<R: RawText>(
        &self,
        env: Option<&str>,
        judged: Vec<(R, Result<ValidEvent<'_>, EventError>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, IngestError> {
        let behind = Metrics::get(&self.metrics.lag_events).max(Metrics::get(&self.metrics.backlog_events));
        if behind > self.options.max_lag_events {
            return Err(IngestError::new(429, "backpressure", "the event pipeline is behind; retry later"));
        }
        let mut outcomes = Vec::with_capacity(judged.len());
        let mut valid = Vec::with_capacity(judged.len());
        let mut dead = Vec::new();
        for (raw, checked) in judged {
            match checked {
                Ok(event) => {
                    outcomes.push(None);
                    valid.push(event);
                }
                Err(error) => {
                    outcomes.push(Some(Outcome::Rejected(error.clone())));
                    dead.push((error, raw.raw_text()));
                }
            }
        }
        self.dlq.push_rejected(env, &dead).map_err(unavailable)?;
        Metrics::add(&self.metrics.rejected_total, dead.len() as u64);
        let mut duplicates = self.append_valid(env, &valid, now).await?.into_iter();
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(
                    || {
                        if duplicates.next() == Some(true) {
                            Outcome::Duplicate
                        } else {
                            Outcome::Accepted
                        }
                    },
                )
            })
            .collect())
    }

    /// Appends valid events durably; returns, per event, whether it was a known redelivery
    /// (and therefore not appended).
    async fn append_valid(
        &self,
        env: Option<&str>,
        events: &[ValidEvent<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, IngestError> {
        // Ids are remembered as the dedupe stage keeps them: the same id in two environments
        // is two events.
        // Only the lookups happen under the lock, so concurrent batches encode their records
        // in parallel.
        let duplicate: Vec<bool> = {
            let recent = self.recent.lock().expect("recent ids poisoned");
            let mut in_batch = HashSet::new();
            // A generated id is a fresh UUID: only a sender-given id can come back.
            events
                .iter()
                .map(|e| given_id(env, e).is_some_and(|id| recent.contains(&id) || !in_batch.insert(id)))
                .collect()
        };
        let fresh = || events.iter().zip(&duplicate).filter(|(_, seen)| !**seen).map(|(event, _)| event);
        let receipt = Receipt::new(now);
        // Keyed by user: a user's events stay in order on one partition.
        let mut records = Vec::with_capacity(events.len());
        records.extend(fresh().map(|event| BusRecord::keyed(event.user_id(), event.to_record(&receipt, env))));
        let given_ids = fresh().filter_map(|event| given_id(env, event).map(Cow::into_owned)).collect();
        let appended = records.len() as u64;
        let duplicates = duplicate.iter().filter(|d| **d).count() as u64;
        let (bus, recent, metrics) = (self.bus.clone(), self.recent.clone(), self.metrics.clone());
        // The append and its bookkeeping run in a task of their own: a client that hangs up
        // drops this future, but not the write it started, and what the write made durable is
        // processed, so it must be counted as ingested (and its ids remembered) all the same.
        let append = tokio::spawn(async move {
            if !records.is_empty() {
                bus.append(records).await.map_err(|e| IngestError::new(503, "unavailable", e.to_string()))?;
            }
            recent.lock().expect("recent ids poisoned").remember(given_ids);
            Metrics::add(&metrics.ingested_total, appended);
            Metrics::add(&metrics.ingest_duplicates_total, duplicates);
            Ok(())
        });
        append.await.map_err(|e| IngestError::new(503, "unavailable", format!("the append failed: {e}")))??;
        Ok(duplicate)
    }
}

/// A sender-given id as the dedupe stage of its environment keeps it (see
/// [`crate::environment`]): the same id in two environments is two events.
fn given_id<'e>(env: Option<&str>, event: &'e ValidEvent<'_>) -> Option<Cow<'e, str>> {
    event.given_id().map(|id| environment::qualify_id(env, id))
}

fn summarise(outcomes: Vec<Outcome>) -> IngestResponse {
    let mut response = IngestResponse::default();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Accepted => response.accepted += 1,
            Outcome::Duplicate => response.duplicates += 1,
            Outcome::Rejected(error) => response.rejected.push(Rejected { index, error }),
        }
    }
    response
}

fn unavailable(e: crate::Error) -> IngestError {
    IngestError::new(503, "unavailable", e.to_string())
}

/// The most recently accepted sender-given event ids, to recognise redeliveries at the door.
/// The processor's dedupe stage is the authority; this only lets ingest answer `duplicates`.
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        RecentIds { set: HashSet::new(), order: VecDeque::new(), capacity }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn remember(&mut self, ids: Vec<String>) {
        for id in ids {
            if self.set.insert(id.clone()) {
                self.order.push_back(id);
            }
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// One item of a batch: its raw JSON text (borrowed from the body where it can be), or why it
/// could not even be read.
type Item<'a> = Result<Cow<'a, str>, (EventError, String)>;

/// One event of a batch, judged: its raw JSON text (what the DLQ keeps if it is refused), and
/// the valid event or why it is refused.
type Judged<'a> = (&'a str, Result<ValidEvent<'a>, EventError>);

/// What an event was before it was judged, as the DLQ keeps a rejected one: the text a client
/// sent, or an event the server built (written as JSON only if it is rejected).
trait RawText {
    fn raw_text(&self) -> String;
}

impl RawText for &str {
    fn raw_text(&self) -> String {
        (*self).to_owned()
    }
}

impl RawText for &Event {
    fn raw_text(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }
}

/// Judges each item on its own.
fn judge<'a>(items: &'a [Item<'_>], now: DateTime<Utc>) -> Vec<Judged<'a>> {
    items
        .iter()
        .map(|item| match item {
            Ok(raw) => (raw.as_ref(), validate_text(raw, now)),
            Err((error, raw)) => (raw.as_str(), Err(error.clone())),
        })
        .collect()
}

/// The events of a body: already judged where the body could be read in one pass, or else the
/// text of each, to be judged one by one.
enum Body<'a> {
    Judged(Vec<Judged<'a>>),
    Texts(Vec<Item<'a>>),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Body::Judged(judged) => judged.len(),
            Body::Texts(items) => items.len(),
        }
    }
}

/// Splits a `POST /v1/events` body into its events.
fn decode_body(body: &[u8], format: BodyFormat, now: DateTime<Utc>) -> Result<Body<'_>, IngestError> {
    check_size(body)?;
    let text = std::str::from_utf8(body).map_err(|_| IngestError::invalid_body("the body is not UTF-8"))?;
    let start = text.trim_start();
    let events = if format == BodyFormat::Ndjson {
        Body::Texts(ndjson(text))
    } else if start.starts_with('[') {
        array(text, now)
            .map_err(|e| IngestError::new(400, "invalid_json", format!("the body is not a JSON array: {e}")))?
    } else {
        match serde_json::from_str::<HashMap<String, &RawValue>>(text) {
            Ok(object) if object.contains_key("events") => {
                if let Some(other) = object.keys().find(|k| *k != "events") {
                    return Err(IngestError::invalid_body(format!("unknown field \"{other}\" beside \"events\"")));
                }
                let events: &RawValue = object["events"];
                array(events.get(), now)
                    .map_err(|_| IngestError::invalid_body("\"events\" must be an array of events"))?
            }
            // A single object or anything else: one event per line.
            _ => Body::Texts(ndjson(text)),
        }
    };
    check_count(events.len())?;
    Ok(events)
}

/// The events of a JSON array. Each is judged where it stands, in one pass over the array,
/// when the whole array reads that way. Otherwise (malformed JSON, or JSON that an event's own
/// parse refuses, such as a number out of range) the array is only split, and each event's text
/// is judged by itself later: such an event is then rejected alone, and a malformed array gets
/// the parser's error for the array as a whole.
fn array(text: &str, now: DateTime<Utc>) -> serde_json::Result<Body<'_>> {
    if let Some(judged) = judge_in_place(text, now) {
        return Ok(Body::Judged(judged));
    }
    let raw: Vec<&RawValue> = serde_json::from_str(text)?;
    Ok(Body::Texts(raw.into_iter().map(|r| Ok(r.get().into())).collect()))
}

/// `[value, ...]` with each value judged by [`validate_prefix`]; `None` at anything unexpected.
fn judge_in_place(text: &str, now: DateTime<Utc>) -> Option<Vec<Judged<'_>>> {
    let mut rest = skip_whitespace(skip_whitespace(text).strip_prefix('[')?);
    // Room for events of 64 bytes or more, so that the list is not copied as it grows.
    let mut judged = Vec::with_capacity((text.len() / 64).min(MAX_BATCH_EVENTS + 1));
    if let Some(after) = rest.strip_prefix(']') {
        return skip_whitespace(after).is_empty().then_some(judged);
    }
    loop {
        let (span, event) = validate_prefix(rest, now)?;
        judged.push((&rest[span.clone()], event));
        rest = skip_whitespace(&rest[span.end..]);
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => return skip_whitespace(rest.strip_prefix(']')?).is_empty().then_some(judged),
        }
    }
}

fn ndjson(text: &str) -> Vec<Item<'_>> {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).map(|line| Ok(line.into())).collect()
}

fn check_size(body: &[u8]) -> Result<(), IngestError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(IngestError::new(
            413,
            "payload_too_large",
            format!("the body is {} bytes; at most {MAX_BATCH_BYTES} are allowed", body.len()),
        ));
    }
    Ok(())
}

fn check_count(n: usize) -> Result<(), IngestError> {
    if n > MAX_BATCH_EVENTS {
        return Err(IngestError::new(
            413,
            "too_many_events",
            format!("the batch has {n} events; at most {MAX_BATCH_EVENTS} are allowed"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct KinesisBody {
    #[serde(rename = "Records")]
    records: Vec<KinesisRecord>,
}

#[derive(Deserialize)]
struct KinesisRecord {
    kinesis: KinesisData,
}

#[derive(Deserialize)]
struct KinesisData {
    data: String,
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
}

/// Splits a Kinesis-shaped body into (sequence number, the record's event text).
pub fn decode_kinesis(body: &[u8]) -> Result<Vec<(String, Item<'static>)>, IngestError> {
    check_size(body)?;
    let parsed: KinesisBody = serde_json::from_slice(body).map_err(|e| {
        IngestError::invalid_body(format!(
            "expected {{\"Records\": [{{\"kinesis\": {{\"data\", \"sequenceNumber\"}}}}]}}: {e}"
        ))
    })?;
    check_count(parsed.records.len())?;
    Ok(parsed
        .records
        .into_iter()
        .map(|record| {
            let KinesisData { data, sequence_number } = record.kinesis;
            let item = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|e| EventError::new("invalid_base64", Some("data"), format!("data is not base64: {e}")))
                .and_then(|bytes| {
                    String::from_utf8(bytes)
                        .map(Cow::Owned)
                        .map_err(|_| EventError::new("invalid_json", Some("data"), "data is not UTF-8 text"))
                })
                .map_err(|error| (error, data));
            (sequence_number, item)
        })
        .collect())
}
