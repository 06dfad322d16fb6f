//! The log record: what the durable log holds per accepted event (or per flush of evaluation
//! counts), and the writer that encodes a validated event as one.
//!
//! The writer ([`ValidEvent::to_record`]) writes the record straight from the validated fields,
//! in exactly the format the derived [`LogRecord`] encoding has (which the processor decodes),
//! so that no [`Event`] and its strings and property map are built on the ingest path only to
//! be serialised once.

use super::model::{rfc3339, Event};
use super::validate::{EventId, ValidEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;

/// When a batch was received: its events' receive time, and their default timestamp as the log
/// writes it (formatted once per batch rather than once per event).
#[derive(Clone, Debug)]
pub struct Receipt {
    millis: i64,
    default_timestamp: String,
}

impl Receipt {
    pub fn new(now: DateTime<Utc>) -> Receipt {
        Receipt { millis: now.timestamp_millis(), default_timestamp: rfc3339::format(&now) }
    }
}

impl ValidEvent<'_> {
    /// The event's log record: `LogRecord::Event(StoredEvent { .. })` as its derived `Serialize`
    /// writes it (except that `properties` keep the sender's key order, which decodes to the
    /// same map), written straight from the validated fields so that no `Event` (and its
    /// strings and property map) is built only to be serialised once.
    /// `env` is the event's environment as [`StoredEvent::env`] holds it.
    pub fn to_record(&self, receipt: &Receipt, env: Option<&str>) -> Vec<u8> {
        let strings = self.event.len() + self.user_id.len() + self.properties.len();
        let mut out = Vec::with_capacity(strings + 256);
        out.extend_from_slice(br#"{"event":{"event":{"event_id":"#);
        match &self.event_id {
            EventId::Given(id) => write_text(&mut out, id),
            EventId::Generated(id) => {
                write_plain(&mut out, id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
            }
        }
        out.extend_from_slice(br#","event":"#);
        write_text(&mut out, &self.event);
        out.extend_from_slice(br#","type":"#);
        write_plain(&mut out, self.kind.name());
        out.extend_from_slice(br#","user_id":"#);
        write_text(&mut out, &self.user_id);
        out.extend_from_slice(br#","timestamp":"#);
        match &self.timestamp {
            Some(t) => write_plain(&mut out, &rfc3339::format(t)),
            None => write_plain(&mut out, &receipt.default_timestamp),
        }
        if let Some(value) = self.value {
            out.extend_from_slice(br#","value":"#);
            write_json(&mut out, &value);
        }
        if !self.properties.is_empty() {
            out.extend_from_slice(br#","properties":"#);
            out.extend_from_slice(&self.properties);
        }
        if let Some(key) = &self.experiment_key {
            out.extend_from_slice(br#","experiment_key":"#);
            write_text(&mut out, key);
        }
        if let Some(variant) = &self.variant {
            out.extend_from_slice(br#","variant":"#);
            write_text(&mut out, variant);
        }
        out.extend_from_slice(br#"},"received_at":"#);
        write_json(&mut out, &receipt.millis);
        out.extend_from_slice(br#","id_given":"#);
        out.extend_from_slice(if self.given_id().is_some() { b"true" } else { b"false" });
        if let Some(env) = env {
            out.extend_from_slice(br#","env":"#);
            write_json(&mut out, env);
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// Writes a string read from an event's text as JSON, escaped exactly as `serde_json` escapes
/// it. A string the parser lent out (`Cow::Borrowed`) is a stretch of the text between quotes
/// with no escape in it; JSON allows no quote, backslash or control character there, so it
/// needs no escaping now either and is copied as it is.
#[expect(clippy::ptr_arg, reason = "whether the text is borrowed is what decides")]
fn write_text(out: &mut Vec<u8>, text: &Cow<'_, str>) {
    match text {
        Cow::Borrowed(text) => write_plain(out, text),
        Cow::Owned(text) => write_json(out, text),
    }
}

/// Writes a string known to hold nothing JSON escapes (see [`write_text`]).
pub(super) fn write_plain(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

pub(super) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("numbers and strings always serialise into a Vec");
}

/// An accepted event as the log stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: Event,
    /// Receive time, Unix milliseconds.
    pub received_at: i64,
    /// Whether the sender gave the `event_id` (only then can the event be delivered twice).
    pub id_given: bool,
    /// The environment the event belongs to; `None` is production (and every record written
    /// before environments). See [`crate::environment`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// Evaluation counts of one hour, flushed by [`crate::tracking`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationCounts {
    /// Start of the hour, Unix seconds.
    pub hour: i64,
    /// (flag, variant, evaluations).
    pub counts: Vec<(String, String, u64)>,
    /// Flush time, Unix milliseconds.
    pub flushed_at: i64,
    /// The environment of the evaluations; `None` is production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// One record of the durable log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRecord {
    Event(StoredEvent),
    EvaluationCounts(EvaluationCounts),
}

/// A log record as processing reads it: decoded, and with its event's JSON object in the
/// derived encoding of [`Event`]. An event's archive line is that object with the receive time
/// and experiments added ([`crate::archive`]); writing it again on the processor's thread was a
/// tenth of its time. The log mostly holds it already: ingest's writer writes every field as the
/// derived encoding does except `properties`, whose keys it keeps in the sender's order
/// (repeated ones too; they decode to the same map). So an event with properties is encoded
/// again here, on the reader's thread, and one without is taken as the log holds it.
#[derive(Debug)]
pub(crate) struct ReadRecord {
    text: String,
    record: LogRecord,
    /// Where the event's object is in `text`; empty for evaluation counts.
    event_json: Range<usize>,
}

/// The outer layers of a log record, exactly as the derived [`LogRecord`] decodes them, with the
/// event's object left as text.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Framed<'a> {
    Event(#[serde(borrow)] FramedEvent<'a>),
    EvaluationCounts(EvaluationCounts),
}

#[derive(Deserialize)]
struct FramedEvent<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    received_at: i64,
    id_given: bool,
    #[serde(default)]
    env: Option<String>,
}

impl ReadRecord {
    /// Decodes `payload`; what does not decode comes back with its cause, for the DLQ.
    pub fn decode(payload: Vec<u8>) -> Result<ReadRecord, (String, Vec<u8>)> {
        let mut text = String::from_utf8(payload).map_err(|e| (e.to_string(), e.into_bytes()))?;
        let (record, logged) = match Self::decode_text(&text) {
            Ok(decoded) => decoded,
            Err(e) => return Err((e.to_string(), text.into_bytes())),
        };
        let event_json = match (&record, logged) {
            (LogRecord::EvaluationCounts(_), _) => 0..0,
            // The derived decoder also takes an event as an array of its fields; no writer of the
            // log writes one, but its archive line is an object all the same.
            (LogRecord::Event(stored), Some(logged))
                if stored.event.properties.is_empty() && text[logged.clone()].starts_with('{') =>
            {
                logged
            }
            (LogRecord::Event(stored), _) => {
                let object = match serde_json::to_string(&stored.event) {
                    Ok(object) => object,
                    Err(e) => return Err((e.to_string(), text.into_bytes())),
                };
                let at = text.len();
                text.push_str(&object);
                at..text.len()
            }
        };
        Ok(ReadRecord { text, record, event_json })
    }

    /// The record, and where its event's object is in `text` if it was looked for. It is not
    /// looked for when the text names `"properties":`, which every writer of the log writes for
    /// an event with properties: that event is encoded again anyway, so its record is decoded in
    /// one pass, the derived way. Which way is only a matter of cost; both give the same record,
    /// and an event with properties found the other way is encoded again all the same.
    fn decode_text(text: &str) -> serde_json::Result<(LogRecord, Option<Range<usize>>)> {
        if text.contains(r#""properties":"#) {
            return Ok((serde_json::from_str(text)?, None));
        }
        Ok(match serde_json::from_str::<Framed<'_>>(text)? {
            Framed::Event(FramedEvent { event, received_at, id_given, env }) => {
                let json = event.get();
                let start = json.as_ptr() as usize - text.as_ptr() as usize;
                let event: Event = serde_json::from_str(json)?;
                let stored = StoredEvent { event, received_at, id_given, env };
                (LogRecord::Event(stored), Some(start..start + json.len()))
            }
            Framed::EvaluationCounts(counts) => (LogRecord::EvaluationCounts(counts), None),
        })
    }

    pub fn record(&self) -> &LogRecord {
        &self.record
    }

    /// The event's JSON object in the derived encoding (empty for evaluation counts).
    pub fn event_json(&self) -> &str {
        &self.text[self.event_json.clone()]
    }
}

impl LogRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("log records serialize")
    }

    /// When the record entered the log, Unix milliseconds.
    pub fn received_at(&self) -> i64 {
        match self {
            LogRecord::Event(e) => e.received_at,
            LogRecord::EvaluationCounts(c) => c.flushed_at,
        }
    }
}
