//! The event model of SPEC 1.4 and its validation.
//!
//! Validation works on a parsed JSON object rather than through `serde`'s derive so that every
//! failure carries its own error code and names the field it is about; a derived decoder would
//! report only the first problem, in its own words.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Largest accepted event, in bytes of its JSON text (SPEC 1.4).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest accepted `user_id`, in characters (after trimming).
pub const MAX_USER_ID_CHARS: usize = 256;
/// Longest accepted `event` name.
pub const MAX_EVENT_NAME_CHARS: usize = 128;
/// How far into the future a timestamp may lie (clock skew allowance).
pub const MAX_FUTURE: Duration = Duration::hours(24);

/// What kind of event this is (SPEC 1.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    #[default]
    Track,
    Exposure,
    Evaluation,
}

impl EventType {
    fn parse(name: &str) -> Option<EventType> {
        match name {
            "track" => Some(EventType::Track),
            "exposure" => Some(EventType::Exposure),
            "evaluation" => Some(EventType::Evaluation),
            _ => None,
        }
    }
}

/// A validated event, normalised: the id is always present and the timestamp is UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub event: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub user_id: String,
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Serializes timestamps as RFC 3339 UTC with the precision they were given.
mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// Why an event was rejected: a stable code, a sentence, and the field it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl EventError {
    pub fn new(code: &str, field: Option<&str>, message: impl Into<String>) -> Self {
        EventError { code: code.to_owned(), message: message.into(), field: field.map(str::to_owned) }
    }

    fn field(code: &str, field: &str, message: impl Into<String>) -> Self {
        EventError::new(code, Some(field), message)
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for EventError {}

const KNOWN_FIELDS: [&str; 9] =
    ["event_id", "event", "type", "user_id", "timestamp", "value", "properties", "experiment_key", "variant"];

/// Validates one event given as JSON text, as received.
///
/// `now` is the receive time: the default timestamp and the reference for the 24 h future limit.
pub fn validate_text(raw: &str, now: DateTime<Utc>) -> Result<ValidEvent, EventError> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(EventError::new(
            "event_too_large",
            None,
            format!("the event is {} bytes; at most {MAX_EVENT_BYTES} are allowed", raw.len()),
        ));
    }
    let value: Value = serde_json::from_str(raw)
        .map_err(|e| EventError::new("invalid_json", None, format!("the event is not valid JSON: {e}")))?;
    validate_value(&value, now)
}

/// A validated event, and whether its sender gave its id.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEvent {
    pub event: Event,
    /// Only a sender-given id can be delivered twice; a generated one is a fresh UUID.
    pub id_given: bool,
}

fn validate_value(value: &Value, now: DateTime<Utc>) -> Result<ValidEvent, EventError> {
    let Value::Object(object) = value else {
        return Err(EventError::new("invalid_event", None, "an event must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(EventError::field("unknown_field", unknown, format!("unknown field \"{unknown}\"")));
    }
    let kind = match object.get("type") {
        None | Some(Value::Null) => EventType::Track,
        Some(Value::String(name)) => EventType::parse(name).ok_or_else(|| {
            EventError::field("invalid_type", "type", "type must be one of track, exposure, evaluation")
        })?,
        Some(_) => return Err(EventError::field("invalid_type", "type", "type must be a string")),
    };
    let (event_id, id_given) = match object.get("event_id") {
        None | Some(Value::Null) => (uuid::Uuid::new_v4().to_string(), false),
        Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= 256 => (id.clone(), true),
        Some(_) => {
            return Err(EventError::field(
                "invalid_event_id",
                "event_id",
                "event_id must be a non-empty string of at most 256 bytes",
            ))
        }
    };
    let user_id = match object.get("user_id") {
        Some(Value::String(id)) => {
            let trimmed = id.trim();
            if trimmed.is_empty() {
                return Err(EventError::field("invalid_user_id", "user_id", "user_id must not be empty"));
            }
            if trimmed.chars().count() > MAX_USER_ID_CHARS {
                return Err(EventError::field(
                    "invalid_user_id",
                    "user_id",
                    format!("user_id must be at most {MAX_USER_ID_CHARS} characters"),
                ));
            }
            trimmed.to_owned()
        }
        None | Some(Value::Null) => return Err(EventError::field("invalid_user_id", "user_id", "user_id is required")),
        Some(_) => return Err(EventError::field("invalid_user_id", "user_id", "user_id must be a string")),
    };
    let event = match object.get("event") {
        Some(Value::String(name)) if is_valid_event_name(name) => name.clone(),
        Some(Value::String(_)) => {
            return Err(EventError::field("invalid_event_name", "event", "event must match ^[A-Za-z0-9_.:-]{1,128}$"))
        }
        None | Some(Value::Null) => return Err(EventError::field("invalid_event_name", "event", "event is required")),
        Some(_) => return Err(EventError::field("invalid_event_name", "event", "event must be a string")),
    };
    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => now,
        Some(Value::String(text)) => {
            let t = DateTime::parse_from_rfc3339(text)
                .map_err(|_| {
                    EventError::field("invalid_timestamp", "timestamp", "timestamp must be an RFC 3339 date-time")
                })?
                .with_timezone(&Utc);
            if t > now + MAX_FUTURE {
                return Err(EventError::field(
                    "invalid_timestamp",
                    "timestamp",
                    "timestamp must not be more than 24 hours in the future",
                ));
            }
            t
        }
        Some(_) => {
            return Err(EventError::field("invalid_timestamp", "timestamp", "timestamp must be an RFC 3339 string"))
        }
    };
    let value = match object.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Some(v),
            _ => return Err(EventError::field("invalid_value", "value", "value must be a finite number")),
        },
        Some(_) => return Err(EventError::field("invalid_value", "value", "value must be a number")),
    };
    let properties = match object.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(EventError::field("invalid_properties", "properties", "properties must be a JSON object"))
        }
    };
    let experiment_key = optional_string(object, "experiment_key", "invalid_experiment_key")?;
    let variant = optional_string(object, "variant", "invalid_variant")?;
    if let Some(key) = &experiment_key {
        if !vexil_core::decode::is_valid_key(key) {
            return Err(EventError::field(
                "invalid_experiment_key",
                "experiment_key",
                "experiment_key must match ^[a-z][a-z0-9_]*$ (at most 128 characters)",
            ));
        }
    }
    if kind == EventType::Exposure {
        if experiment_key.is_none() {
            return Err(EventError::field(
                "invalid_experiment_key",
                "experiment_key",
                "experiment_key is required for exposure events",
            ));
        }
        if variant.is_none() {
            return Err(EventError::field("invalid_variant", "variant", "variant is required for exposure events"));
        }
    }
    let event = Event { event_id, event, kind, user_id, timestamp, value, properties, experiment_key, variant };
    Ok(ValidEvent { event, id_given })
}

fn optional_string(object: &Map<String, Value>, field: &str, code: &str) -> Result<Option<String>, EventError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => {
            Err(EventError::field(code, field, format!("{field} must be a non-empty string of at most 256 bytes")))
        }
    }
}

/// `^[A-Za-z0-9_.:-]{1,128}$`, checked without a regex engine.
pub fn is_valid_event_name(name: &str) -> bool {
    (1..=MAX_EVENT_NAME_CHARS).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// An accepted event as the log stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: Event,
    /// Receive time, Unix milliseconds.
    pub received_at: i64,
    /// Whether the sender gave the `event_id` (only then can the event be delivered twice).
    pub id_given: bool,
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
}

/// One record of the durable log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRecord {
    Event(StoredEvent),
    EvaluationCounts(EvaluationCounts),
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
