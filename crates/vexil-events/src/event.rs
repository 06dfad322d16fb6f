//! The event model of SPEC 1.4 and its validation.
//!
//! Validation reads each field's JSON value and judges it on its own rather than going through
//! `serde`'s derive, so that every failure carries its own error code and names the field it is
//! about; a derived decoder would report only the first problem, in its own words.
//!
//! Ingest is the hot path (SPEC 5 asks for 300,000 events/s on two cores), so an event is read
//! in one pass over its text without building a `serde_json::Value` tree: strings stay borrowed
//! from the request body, `properties` is copied as compact JSON, and the accepted event is
//! written straight into its log record ([`ValidEvent::to_record`]) in the format the derived
//! [`LogRecord`] encoding has, which the processor decodes. The text is still parsed through
//! `serde_json`'s `deserialize_any`, so exactly the events a `Value` parse refuses are refused,
//! with the same messages.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
/// Event names follow the rule experiments' metrics are checked against, so that a metric can
/// name any event that is accepted.
pub use vexil_core::experiment::is_valid_event_name;

/// Largest accepted event, in bytes of its JSON text (SPEC 1.4).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest accepted `user_id`, in characters (after trimming).
pub const MAX_USER_ID_CHARS: usize = 256;
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
    const ALL: [EventType; 3] = [EventType::Track, EventType::Exposure, EventType::Evaluation];

    fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The name JSON gives it (its `serde` name).
    fn name(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Exposure => "exposure",
            EventType::Evaluation => "evaluation",
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

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
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

/// Validates one event given as JSON text, as received.
///
/// `now` is the receive time: the default timestamp and the reference for the 24 h future limit.
pub fn validate_text(raw: &str, now: DateTime<Utc>) -> Result<ValidEvent<'_>, EventError> {
    check_size(raw)?;
    let fields = Fields::read(raw)
        .map_err(|e| EventError::new("invalid_json", None, format!("the event is not valid JSON: {e}")))?;
    judge(fields, now)
}

/// Validates the JSON value that starts `text` (after any whitespace) as [`validate_text`]
/// validates that value's text alone, and says where that text lies in `text`. `None` when no
/// value parses there; the caller then has to find the value's end another way.
///
/// This lets a batch be read in one pass: each event is parsed once, where it stands.
pub(crate) fn validate_prefix(
    text: &str,
    now: DateTime<Utc>,
) -> Option<(Range<usize>, Result<ValidEvent<'_>, EventError>)> {
    let start = text.len() - skip_whitespace(text).len();
    let (fields, end) = Fields::read_prefix(text)?;
    Some((start..end, check_size(&text[start..end]).and_then(|()| judge(fields, now))))
}

/// `text` after the whitespace JSON allows between values.
pub(crate) fn skip_whitespace(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
}

fn check_size(raw: &str) -> Result<(), EventError> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(EventError::new(
            "event_too_large",
            None,
            format!("the event is {} bytes; at most {MAX_EVENT_BYTES} are allowed", raw.len()),
        ));
    }
    Ok(())
}

/// Validates an event's fields; `None` stands for JSON that is not an object.
fn judge(fields: Option<Fields<'_>>, now: DateTime<Utc>) -> Result<ValidEvent<'_>, EventError> {
    fields.ok_or_else(|| EventError::new("invalid_event", None, "an event must be a JSON object"))?.validate(now)
}

/// A validated event, borrowing from the text it was read from, ready to be written as a log
/// record ([`ValidEvent::to_record`]). Strings are as validation left them (`user_id` trimmed);
/// `properties` is the object as compact JSON, empty when absent or `{}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEvent<'a> {
    event_id: EventId<'a>,
    event: Cow<'a, str>,
    kind: EventType,
    user_id: Cow<'a, str>,
    /// `None`: the receive time.
    timestamp: Option<DateTime<Utc>>,
    value: Option<f64>,
    properties: Vec<u8>,
    experiment_key: Option<Cow<'a, str>>,
    variant: Option<Cow<'a, str>>,
}

#[derive(Clone, Debug, PartialEq)]
enum EventId<'a> {
    /// Given by the sender: the idempotency key, so the event may be delivered again.
    Given(Cow<'a, str>),
    /// A fresh UUID, which nothing else can carry.
    Generated(uuid::Uuid),
}

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

impl<'a> ValidEvent<'a> {
    /// The event of a server-built [`Event`], whose id the server generated (a UUID): like an
    /// event sent without an id, it is not looked up for duplicates, as nothing sends it
    /// twice (assignment emits a first assignment's exposure at most once).
    pub(crate) fn with_generated_id(mut self) -> ValidEvent<'a> {
        if let EventId::Given(id) = &self.event_id {
            if let Ok(uuid) = uuid::Uuid::parse_str(id) {
                self.event_id = EventId::Generated(uuid);
            }
        }
        self
    }

    /// The sender's `event_id`, if it gave one (only such an event can be delivered twice).
    pub fn given_id(&self) -> Option<&str> {
        match &self.event_id {
            EventId::Given(id) => Some(id),
            EventId::Generated(_) => None,
        }
    }

    /// The user the event is about (trimmed).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The event's log record: `LogRecord::Event(StoredEvent { .. })` exactly as its derived
    /// `Serialize` writes it, written straight from the validated fields so that no `Event`
    /// (and its strings and property map) is built only to be serialised once.
    pub fn to_record(&self, receipt: &Receipt) -> Vec<u8> {
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
        out.extend_from_slice(if self.given_id().is_some() { b"true}}" } else { b"false}}" });
        out
    }
}

/// The top-level fields of an event as its JSON text holds them, each judged later on its own.
/// An absent field reads as `null`, as it always meant the same.
#[derive(Default)]
struct Fields<'a> {
    event_id: Json<'a>,
    event: Json<'a>,
    kind: Json<'a>,
    user_id: Json<'a>,
    timestamp: Json<'a>,
    value: Json<'a>,
    properties: Json<'a>,
    /// `properties` as compact JSON when it is an object.
    properties_json: Vec<u8>,
    experiment_key: Json<'a>,
    variant: Json<'a>,
    /// The first unknown field in byte order, the order a `serde_json::Map` lists its keys in.
    unknown: Option<Cow<'a, str>>,
}

/// A field's JSON value, as much of it as validation looks at.
#[derive(Default)]
enum Json<'a> {
    #[default]
    Null,
    Bool,
    Number(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'a> Fields<'a> {
    /// Reads the fields in one pass over the text; `None` when it is JSON but not an object.
    /// Every value is parsed through `deserialize_any`, so the text is refused exactly when
    /// parsing it into a `serde_json::Value` would fail (nesting limit, number range, escapes,
    /// trailing characters), with the same messages.
    fn read(raw: &'a str) -> serde_json::Result<Option<Fields<'a>>> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let fields = if skip_whitespace(raw).starts_with('{') {
            Some(Fields::deserialize(&mut de)?)
        } else {
            NotAnObject::deserialize(&mut de)?;
            None
        };
        de.end()?;
        Ok(fields)
    }

    /// Reads the value that starts `text` as [`Fields::read`] reads a whole text, and where it
    /// ends; `None` when no value parses there.
    fn read_prefix(text: &'a str) -> Option<(Option<Fields<'a>>, usize)> {
        fn first<'a, T: Deserialize<'a>>(text: &'a str) -> Option<(T, usize)> {
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
            let value = stream.next()?.ok()?;
            Some((value, stream.byte_offset()))
        }
        if skip_whitespace(text).starts_with('{') {
            first::<Fields>(text).map(|(fields, end)| (Some(fields), end))
        } else {
            first::<NotAnObject>(text).map(|(NotAnObject, end)| (None, end))
        }
    }

    fn validate(self, now: DateTime<Utc>) -> Result<ValidEvent<'a>, EventError> {
        if let Some(unknown) = self.unknown {
            return Err(EventError::field("unknown_field", &unknown, format!("unknown field \"{unknown}\"")));
        }
        let kind = match self.kind {
            Json::Null => EventType::Track,
            Json::Str(name) => EventType::parse(&name).ok_or_else(|| {
                EventError::field("invalid_type", "type", "type must be one of track, exposure, evaluation")
            })?,
            _ => return Err(EventError::field("invalid_type", "type", "type must be a string")),
        };
        let event_id = match self.event_id {
            Json::Null => EventId::Generated(uuid::Uuid::new_v4()),
            Json::Str(id) if !id.trim().is_empty() && id.len() <= 256 => EventId::Given(id),
            _ => {
                return Err(EventError::field(
                    "invalid_event_id",
                    "event_id",
                    "event_id must be a non-empty string of at most 256 bytes",
                ))
            }
        };
        let user_id = match self.user_id {
            Json::Str(id) => {
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
                trim_cow(id)
            }
            Json::Null => return Err(EventError::field("invalid_user_id", "user_id", "user_id is required")),
            _ => return Err(EventError::field("invalid_user_id", "user_id", "user_id must be a string")),
        };
        let event = match self.event {
            Json::Str(name) if is_valid_event_name(&name) => name,
            Json::Str(_) => {
                return Err(EventError::field(
                    "invalid_event_name",
                    "event",
                    "event must match ^[A-Za-z0-9_.:-]{1,128}$",
                ))
            }
            Json::Null => return Err(EventError::field("invalid_event_name", "event", "event is required")),
            _ => return Err(EventError::field("invalid_event_name", "event", "event must be a string")),
        };
        let timestamp = match self.timestamp {
            Json::Null => None,
            Json::Str(text) => {
                let t = DateTime::parse_from_rfc3339(&text)
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
                Some(t)
            }
            _ => {
                return Err(EventError::field("invalid_timestamp", "timestamp", "timestamp must be an RFC 3339 string"))
            }
        };
        let value = match self.value {
            Json::Null => None,
            Json::Number(v) if v.is_finite() => Some(v),
            Json::Number(_) => {
                return Err(EventError::field("invalid_value", "value", "value must be a finite number"))
            }
            _ => return Err(EventError::field("invalid_value", "value", "value must be a number")),
        };
        let properties = match self.properties {
            // An empty object is left out of the record, as an empty map always was.
            Json::Object if self.properties_json != b"{}" => self.properties_json,
            Json::Null | Json::Object => Vec::new(),
            _ => return Err(EventError::field("invalid_properties", "properties", "properties must be a JSON object")),
        };
        let experiment_key = optional_string(self.experiment_key, "experiment_key", "invalid_experiment_key")?;
        let variant = optional_string(self.variant, "variant", "invalid_variant")?;
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
        Ok(ValidEvent { event_id, event, kind, user_id, timestamp, value, properties, experiment_key, variant })
    }
}

fn optional_string<'a>(value: Json<'a>, field: &str, code: &str) -> Result<Option<Cow<'a, str>>, EventError> {
    match value {
        Json::Null => Ok(None),
        Json::Str(s) if !s.is_empty() && s.len() <= 256 => Ok(Some(s)),
        _ => Err(EventError::field(code, field, format!("{field} must be a non-empty string of at most 256 bytes"))),
    }
}

/// `text` without surrounding whitespace, still borrowed when it was.
fn trim_cow(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Any JSON value, parsed in full (see [`FieldSeed`]) and dropped: an event that is not an
/// object is read as this.
struct NotAnObject;

impl<'de> Deserialize<'de> for NotAnObject {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FieldSeed(&mut Vec::new()).deserialize(deserializer).map(|_| NotAnObject)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        // Values that are not kept (unknown fields, arrays and objects where a scalar belongs)
        // are still parsed in full, so they are refused exactly as a `Value` would refuse them.
        let mut scratch = Vec::new();
        // A repeated key keeps its last value, as in a `serde_json::Map`.
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let slot = match key.as_ref() {
                "event_id" => &mut fields.event_id,
                "event" => &mut fields.event,
                "type" => &mut fields.kind,
                "user_id" => &mut fields.user_id,
                "timestamp" => &mut fields.timestamp,
                "value" => &mut fields.value,
                "properties" => {
                    // Room for typical properties at once, rather than growing from a few bytes.
                    fields.properties_json.clear();
                    fields.properties_json.reserve(128);
                    fields.properties = map.next_value_seed(FieldSeed(&mut fields.properties_json))?;
                    continue;
                }
                "experiment_key" => &mut fields.experiment_key,
                "variant" => &mut fields.variant,
                _ => {
                    if fields.unknown.as_ref().is_none_or(|first| key < *first) {
                        fields.unknown = Some(key);
                    }
                    scratch.clear();
                    map.next_value_seed(FieldSeed(&mut scratch))?;
                    continue;
                }
            };
            scratch.clear();
            *slot = map.next_value_seed(FieldSeed(&mut scratch))?;
        }
        Ok(fields)
    }
}

/// An object key, borrowed from the text unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Reads a field's value: a scalar as [`Json`]; an array or object is copied into the buffer
/// (see [`CopyJson`]) and only its kind is returned.
struct FieldSeed<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Json<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool)
    }

    // As `serde_json::Number::as_f64` reads each kind of number.
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Number(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CopyJson(self.0).visit_seq(seq).map(|()| Json::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        CopyJson(self.0).visit_map(map).map(|()| Json::Object)
    }
}

/// Copies a JSON value into the buffer as compact JSON, written as `serde_json` writes the
/// `Value` it would parse to (numbers and string escapes through `serde_json` itself; keys stay
/// in text order, which decodes to the same map).
///
/// Hand-written rather than `serde_transcode` so that a parse error surfaces as the parser's own
/// error, with its position in the event's text.
struct CopyJson<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for CopyJson<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CopyJson<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        write_json(self.0, &v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        write_json(self.0, &v);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        write_json(self.0, &v);
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        write_plain(self.0, v);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_json(self.0, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        copy_items(self.0, b'[', b']', |out| Ok(seq.next_element_seed(CopyJson(out))?.is_some()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        copy_items(self.0, b'{', b'}', |out| {
            if map.next_key_seed(CopyJson(out))?.is_none() {
                return Ok(false);
            }
            out.push(b':');
            map.next_value_seed(CopyJson(out))?;
            Ok(true)
        })
    }
}

/// Writes `open`, the items `copy_next` copies (until it says there are no more) separated by
/// commas, and `close`.
fn copy_items<E>(
    out: &mut Vec<u8>,
    open: u8,
    close: u8,
    mut copy_next: impl FnMut(&mut Vec<u8>) -> Result<bool, E>,
) -> Result<(), E> {
    out.push(open);
    let mut first = true;
    loop {
        let mark = out.len();
        if !first {
            out.push(b',');
        }
        if !copy_next(out)? {
            out.truncate(mark);
            break;
        }
        first = false;
    }
    out.push(close);
    Ok(())
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
fn write_plain(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
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
