//! Validation of one event's fields (SPEC 1.4).
//!
//! Validation reads each field's JSON value and judges it on its own rather than going through
//! `serde`'s derive, so that every failure carries its own error code and names the field it is
//! about; a derived decoder would report only the first problem, in its own words. The fields
//! come from [`super::scan`], which reads them without building a `serde_json::Value` tree.

use super::model::{Event, EventType};
use super::scan::{skip_whitespace, Fields, Json};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
/// Event names follow the rule experiments' metrics are checked against, so that a metric can
/// name any event that is accepted.
pub use vexil_core::experiment::is_valid_event_name;

/// Largest accepted event, in bytes of its JSON text (SPEC 1.4).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Longest accepted `user_id`, in characters (after trimming): the bound of every route.
pub use vexil_core::MAX_USER_ID_CHARS;
/// How far into the future a timestamp may lie (clock skew allowance).
pub const MAX_FUTURE: Duration = Duration::hours(24);
/// The earliest accepted timestamp, 2000-01-01T00:00:00Z, in seconds since the epoch: older
/// ones are typos or zeroed clocks (an event of year 0000 was archived under `year=0000/`).
pub const EARLIEST_TIMESTAMP_SECS: i64 = 946_684_800;

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

/// Validates an event built inside the server (an exposure, a tracked evaluation) by the rules
/// [`validate_text`] applies to the same event sent as JSON, without writing and reading that
/// JSON: the fields are handed to the same checks as they stand.
pub fn validate_event(event: &Event, now: DateTime<Utc>) -> Result<ValidEvent<'_>, EventError> {
    fn text(s: &str) -> Json<'_> {
        Json::Str(Cow::Borrowed(s))
    }
    fn optional(s: &Option<String>) -> Json<'_> {
        s.as_deref().map_or(Json::Null, text)
    }
    let fields = Fields {
        event_id: text(&event.event_id),
        event: text(&event.event),
        kind: text(event.kind.name()),
        user_id: text(&event.user_id),
        timestamp: Json::Time(event.timestamp),
        value: event.value.map_or(Json::Null, Json::Number),
        properties: if event.properties.is_empty() { Json::Null } else { Json::Object },
        properties_json: if event.properties.is_empty() {
            Vec::new()
        } else {
            serde_json::to_vec(&event.properties).expect("a JSON map serializes")
        },
        experiment_key: optional(&event.experiment_key),
        variant: optional(&event.variant),
        unknown: None,
    };
    fields.validate(now)
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
    pub(super) event_id: EventId<'a>,
    pub(super) event: Cow<'a, str>,
    pub(super) kind: EventType,
    pub(super) user_id: Cow<'a, str>,
    /// `None`: the receive time.
    pub(super) timestamp: Option<DateTime<Utc>>,
    pub(super) value: Option<f64>,
    pub(super) properties: Vec<u8>,
    pub(super) experiment_key: Option<Cow<'a, str>>,
    pub(super) variant: Option<Cow<'a, str>>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum EventId<'a> {
    /// Given by the sender: the idempotency key, so the event may be delivered again.
    Given(Cow<'a, str>),
    /// A fresh UUID, which nothing else can carry.
    Generated(uuid::Uuid),
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
}

impl<'a> Fields<'a> {
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
            // Control characters are refused: they separate an environment from an id in the
            // dedupe state (crate::environment).
            Json::Str(id) if !id.trim().is_empty() && id.len() <= 256 && !id.chars().any(char::is_control) => {
                EventId::Given(id)
            }
            _ => {
                return Err(EventError::field(
                    "invalid_event_id",
                    "event_id",
                    "event_id must be a non-empty string of at most 256 bytes without control characters",
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
                Some(checked_timestamp(t, now)?)
            }
            Json::Time(t) => Some(checked_timestamp(t, now)?),
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

/// `t`, if it is a time an event may carry when received at `now`.
fn checked_timestamp(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<DateTime<Utc>, EventError> {
    if t > now + MAX_FUTURE {
        return Err(EventError::field(
            "invalid_timestamp",
            "timestamp",
            "timestamp must not be more than 24 hours in the future",
        ));
    }
    if t.timestamp() < EARLIEST_TIMESTAMP_SECS {
        return Err(EventError::field(
            "invalid_timestamp",
            "timestamp",
            "timestamp must not be before 2000-01-01T00:00:00Z",
        ));
    }
    Ok(t)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::{json, Map};

    fn pick<'a>(rng: &mut StdRng, choices: &[&'a str]) -> &'a str {
        choices[rng.gen_range(0..choices.len())]
    }

    /// An event as the server might build it, valid or not in each field.
    fn random_event(rng: &mut StdRng, now: DateTime<Utc>) -> Event {
        let long_user = "u".repeat(MAX_USER_ID_CHARS + 1);
        let mut properties = Map::new();
        for _ in 0..rng.gen_range(0..3) {
            properties.insert(pick(rng, &["plan", "amount", "tags"]).to_string(), json!(rng.gen_range(0..100)));
        }
        Event {
            event_id: pick(rng, &["0194f3a2-7c1e-7d3a-9a4b-5b6c7d8e9f00", "sender-id-1", " "]).to_string(),
            event: pick(rng, &["checkout", "$exposure", "page.view", "bad name", ""]).to_string(),
            kind: [EventType::Track, EventType::Exposure, EventType::Evaluation][rng.gen_range(0..3)],
            user_id: pick(rng, &["user-1", "  padded  ", "", long_user.as_str()]).to_string(),
            timestamp: now
                + Duration::minutes(rng.gen_range(-100_000..100_000))
                + Duration::nanoseconds(rng.gen_range(0..1_000_000_000)),
            value: [None, Some(1.5), Some(f64::NAN), Some(-3.0)][rng.gen_range(0..4)],
            properties,
            experiment_key: [None, Some("checkout_test"), Some("Bad-Key")][rng.gen_range(0..3)].map(str::to_string),
            variant: [None, Some("control"), Some("")][rng.gen_range(0..3)].map(str::to_string),
        }
    }

    #[test]
    fn a_built_event_is_judged_as_its_json_text_is() {
        let now = Utc::now();
        let mut rng = StdRng::seed_from_u64(7);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..5_000 {
            let event = random_event(&mut rng, now);
            let text = serde_json::to_string(&event).expect("events serialize");
            let direct = validate_event(&event, now);
            if event.value.is_some_and(f64::is_nan) {
                // JSON has no NaN (the text says `null`): only the direct path sees it, and refuses.
                assert!(direct.is_err());
                continue;
            }
            let from_text = validate_text(&text, now);
            assert_eq!(direct, from_text, "{text}");
            if direct.is_ok() {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(valid > 50 && invalid > 50, "both outcomes covered: {valid} valid, {invalid} invalid");
    }
}
