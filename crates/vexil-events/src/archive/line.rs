//! An event's archive line, the JSON line both formats take (the event, when it was received,
//! and the experiments it is attributed to), and the archive partition it goes to. Both are built
//! for every event the processor archives, so each keeps what the next event can reuse.

use super::partition_of;
use crate::environment;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use std::collections::BTreeMap;
use std::io;

/// The archive partition of each event (its environment's prefix, then [`partition_of`] its
/// time). Consecutive events mostly share an environment and an hour, so the name is built again
/// only when either changes: formatting it was about 4 % of the processor's instructions.
#[derive(Default)]
pub(crate) struct PartitionNames {
    /// The environment, the hour (since the epoch) and the name of the last event.
    last: Option<(Option<String>, i64, String)>,
}

impl PartitionNames {
    /// The partition of an event of `env` at `at`.
    pub fn of(&mut self, env: Option<&str>, at: DateTime<Utc>) -> &str {
        // UTC hours start at whole multiples of 3,600 s since the epoch.
        let hour = at.timestamp().div_euclid(3600);
        if self.last.as_ref().is_some_and(|(last_env, last_hour, _)| *last_hour != hour || last_env.as_deref() != env) {
            self.last = None;
        }
        let (_, _, name) = self.last.get_or_insert_with(|| {
            (env.map(str::to_owned), hour, format!("{}{}", environment::archive_prefix(env), partition_of(at)))
        });
        name
    }
}

/// Builds events' archive lines: the event's JSON object in the derived encoding (taken from the
/// log's text where it can be, see [`crate::event::ReadRecord`]), with its receive time and, if
/// it has any, the experiments it is attributed to (`experiments`, by experiment)
/// added as its last fields. The line is written into a buffer kept for the next event, and the
/// receive time's text is kept for the next event of the same ingest request: building both
/// anew for each event cost the processor four allocations per event.
#[derive(Default)]
pub(crate) struct Lines {
    line: Vec<u8>,
    /// The last receive time (Unix ms) and its text.
    received_text: Option<(i64, String)>,
}

impl Lines {
    /// The JSON line (without newline) of the event `event_json` (its object in the derived
    /// encoding, see [`crate::event::ReadRecord`]), received at `received` (Unix ms), attributed to
    /// `attribution`'s experiments and variants.
    pub fn of(&mut self, event_json: &str, received: i64, attribution: &[(String, String)]) -> io::Result<&[u8]> {
        if self.received_text.as_ref().is_none_or(|(millis, _)| *millis != received) {
            let at = Utc.timestamp_millis_opt(received).single().unwrap_or_default();
            self.received_text = Some((received, at.to_rfc3339_opts(SecondsFormat::Millis, true)));
        }
        // An event has required fields, so its object is never empty: the fields added here
        // follow one.
        let fields = event_json.strip_suffix('}').filter(|fields| fields.len() > 1).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("an event's JSON is not an object: {event_json:.64}"))
        })?;
        self.line.clear();
        self.line.extend_from_slice(fields.as_bytes());
        self.line.extend_from_slice(br#","received_at":""#);
        self.line.extend_from_slice(self.received_text.as_ref().map_or("", |(_, text)| text).as_bytes());
        self.line.push(b'"');
        if !attribution.is_empty() {
            self.line.extend_from_slice(br#","experiments":"#);
            let experiments: BTreeMap<&str, &str> = attribution.iter().map(|(e, v)| (e.as_str(), v.as_str())).collect();
            serde_json::to_writer(&mut self.line, &experiments)?;
        }
        self.line.push(b'}');
        Ok(&self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventType, LogRecord, ReadRecord, StoredEvent};

    /// A name kept from the last event is the name built afresh, across hours, days, years,
    /// environments and times before the epoch.
    #[test]
    fn partition_names_are_built_again_when_the_hour_or_the_environment_changes() {
        let mut names = PartitionNames::default();
        let times = [
            "2026-12-06T03:00:00Z",
            "2026-12-06T03:59:59.999Z",
            "2026-12-06T04:00:00Z",
            "2026-12-31T23:59:59Z",
            "2027-01-01T00:00:00Z",
            "1969-12-31T23:30:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T22:59:59Z",
        ];
        for env in [None, Some("staging"), Some("production"), None] {
            for time in times.iter().chain(times.iter().rev()) {
                let at = DateTime::parse_from_rfc3339(time).unwrap().with_timezone(&Utc);
                let expected = format!("{}{}", environment::archive_prefix(env), partition_of(at));
                assert_eq!(names.of(env, at), expected, "{env:?} at {time}");
            }
        }
    }

    /// An event line as the archive wrote it before lines were built from the log's text: the
    /// derived encoding of the event with the two fields flattened in.
    #[derive(serde::Serialize)]
    struct Archived<'a> {
        #[serde(flatten)]
        event: &'a Event,
        received_at: &'a str,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        experiments: BTreeMap<&'a str, &'a str>,
    }

    fn event(offset: usize, at: DateTime<Utc>) -> Event {
        Event {
            event_id: format!("e{offset}"),
            event: "purchase".into(),
            kind: EventType::Track,
            user_id: "u1".into(),
            timestamp: at,
            value: None,
            properties: Default::default(),
            experiment_key: None,
            variant: None,
        }
    }

    /// Events of one ingest request share their receive time's text; an event received at
    /// another time gets its own, and one received before the epoch too.
    #[test]
    fn each_line_has_its_own_events_receive_time() {
        let mut lines = Lines::default();
        let received = [1_764_990_000_123, 1_764_990_000_123, 1_764_990_000_124, -1, 1_764_990_000_123];
        let at = DateTime::parse_from_rfc3339("2025-12-06T03:00:00Z").unwrap().with_timezone(&Utc);
        let mut read = Vec::new();
        for (offset, received_at) in received.iter().enumerate() {
            let json = serde_json::to_string(&event(offset, at)).unwrap();
            let line = lines.of(&json, *received_at, &[("checkout".into(), "control".into())]).unwrap();
            read.push(serde_json::from_slice::<serde_json::Value>(line).unwrap());
        }
        let times: Vec<&str> = read.iter().map(|line| line["received_at"].as_str().unwrap()).collect();
        assert_eq!(
            times,
            [
                "2025-12-06T03:00:00.123Z",
                "2025-12-06T03:00:00.123Z",
                "2025-12-06T03:00:00.124Z",
                "1969-12-31T23:59:59.999Z",
                "2025-12-06T03:00:00.123Z"
            ]
        );
        assert!(read.iter().all(|line| line["experiments"] == serde_json::json!({"checkout": "control"})));
    }

    /// A line built from an event's text in the log is, byte for byte, the line the archive
    /// wrote when it encoded the decoded event again: with and without experiments, with every
    /// optional field, escapes and properties. An event the log holds as an array of its fields
    /// is archived as its object.
    #[test]
    fn lines_are_the_derived_encoding_of_the_event_with_its_receive_time_and_experiments() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T02:00:00.5Z").unwrap().with_timezone(&Utc);
        let mut full = event(7, at);
        full.kind = EventType::Exposure;
        full.user_id = "\u{fc} \"q\"\t\n".into();
        full.value = Some(1e21);
        full.experiment_key = Some("checkout".into());
        full.variant = Some("con\"trol".into());
        full.properties = serde_json::json!({"b": {"c": "\u{e9}", "d": {}}, "a": [1, -2, 2.5, true, null, "x\ny"]})
            .as_object()
            .unwrap()
            .clone();
        let attributions: [&[(String, String)]; 3] = [
            &[],
            &[("checkout".into(), "con\"trol".into())],
            &[("zeta".into(), "b".into()), ("alpha".into(), "a".into())],
        ];
        let mut lines = Lines::default();
        for event in [event(1, at), full] {
            for attribution in attributions {
                let record = LogRecord::Event(StoredEvent {
                    event: event.clone(),
                    received_at: 1_767_232_800_042,
                    id_given: true,
                    env: Some("staging".into()),
                });
                let read = ReadRecord::decode(record.to_bytes()).unwrap();
                let line = lines.of(read.event_json(), 1_767_232_800_042, attribution).unwrap().to_vec();
                let before = Archived {
                    event: &event,
                    received_at: "2026-01-01T02:00:00.042Z",
                    experiments: attribution.iter().map(|(e, v)| (e.as_str(), v.as_str())).collect(),
                };
                assert_eq!(String::from_utf8(line).unwrap(), serde_json::to_string(&before).unwrap());
            }
            let as_array = serde_json::json!({"event": {"event": [event.event_id, event.event, event.kind,
                event.user_id, event.timestamp, event.value, event.properties, event.experiment_key, event.variant],
                "received_at": 5, "id_given": false}});
            let read = ReadRecord::decode(as_array.to_string().into_bytes()).unwrap();
            assert_eq!(read.event_json(), serde_json::to_string(&event).unwrap());
        }
    }

    /// Ingest's writer keeps the sender's key order in `properties`, and repeated keys; the
    /// event's JSON the archive line is built from is still the derived encoding (keys sorted,
    /// the last of a repeated key), at every depth. Without properties it is the log's own text.
    #[test]
    fn events_with_properties_in_the_senders_order_are_archived_in_the_derived_encoding() {
        let now = Utc::now();
        let receipt = crate::event::Receipt::new(now);
        for raw in [
            r#"{"event": "purchase", "user_id": "u1", "properties": {"z": 1, "a": {"y": [2, {"c": 1, "b": 0}], "x": null}}}"#,
            r#"{"event": "purchase", "user_id": "u1", "properties": {"a": 1, "b": 2, "a": 3}}"#,
            r#"{"event": "purchase", "user_id": "u1", "value": 1e2, "properties": {}}"#,
            r#"{"event": "purchase", "user_id": "u1"}"#,
        ] {
            let logged = crate::event::validate_text(raw, now).unwrap().to_record(&receipt, None);
            let read = ReadRecord::decode(logged.clone()).unwrap();
            let LogRecord::Event(stored) = read.record() else { panic!("an event") };
            assert_eq!(read.event_json(), serde_json::to_string(&stored.event).unwrap(), "{raw}");
            if stored.event.properties.is_empty() {
                let logged = String::from_utf8(logged).unwrap();
                assert!(logged.contains(read.event_json()), "the log's own text: {raw}");
            }
        }
        // Written another way (space before the colon, an escaped key), properties are still
        // found and encoded again, and the record is the derived decoder's.
        for logged in [
            r#"{"event":{"event":{"event_id":"e1","event":"purchase","type":"track","user_id":"u1","timestamp":"2026-01-01T00:00:00Z","properties" : {"b":1,"a":2}},"received_at":1,"id_given":true}}"#,
            r#"{"event":{"event":{"event_id":"e1","event":"purchase","type":"track","user_id":"u1","timestamp":"2026-01-01T00:00:00Z","propertie\u0073":{"b":1,"a":2}},"received_at":1,"id_given":true}}"#,
        ] {
            let read = ReadRecord::decode(logged.as_bytes().to_vec()).unwrap();
            assert_eq!(read.record(), &serde_json::from_str::<LogRecord>(logged).unwrap());
            let LogRecord::Event(stored) = read.record() else { panic!("an event") };
            assert_eq!(read.event_json(), serde_json::to_string(&stored.event).unwrap());
            assert!(read.event_json().contains(r#""properties":{"a":2,"b":1}"#), "{}", read.event_json());
        }
    }
}
