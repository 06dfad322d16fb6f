//! The event model of SPEC 1.4: what an accepted event is, once validated and normalised.
//!
//! This is the derived, `serde` form the rest of the pipeline reads (the processor decodes log
//! records into it, the archive writes it). Ingest never builds it on its hot path: see
//! [`super::validate`] and [`super::record`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

    pub(super) fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The name JSON gives it (its `serde` name).
    pub(super) fn name(self) -> &'static str {
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
pub(super) mod rfc3339 {
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
