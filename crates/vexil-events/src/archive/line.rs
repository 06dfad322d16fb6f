//! An event's archive line, the JSON line both formats take (the event, when it was received,
//! and the experiments it is attributed to), and the archive partition it goes to. Both are built
//! for every event the processor archives, so each keeps what the next event can reuse.

use super::partition_of;
use crate::environment;
use crate::event::{Event, StoredEvent};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::Serialize;
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

/// An event as the archive stores it: the event, when it was received, and its experiments.
#[derive(Serialize)]
struct Archived<'a> {
    #[serde(flatten)]
    event: &'a Event,
    received_at: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    experiments: BTreeMap<&'a str, &'a str>,
}

/// Builds events' archive lines. The line is written into a buffer kept for the next event, and
/// the receive time's text is kept for the next event of the same ingest request: building both
/// anew for each event cost the processor four allocations per event.
#[derive(Default)]
pub(crate) struct Lines {
    line: Vec<u8>,
    /// The last receive time (Unix ms) and its text.
    received_text: Option<(i64, String)>,
}

impl Lines {
    /// The JSON line (without newline) of `stored`, attributed to `attribution`'s experiments
    /// and variants.
    pub fn of(&mut self, stored: &StoredEvent, attribution: &[(String, String)]) -> io::Result<&[u8]> {
        let received = stored.received_at;
        if self.received_text.as_ref().is_none_or(|(millis, _)| *millis != received) {
            let at = Utc.timestamp_millis_opt(received).single().unwrap_or_default();
            self.received_text = Some((received, at.to_rfc3339_opts(SecondsFormat::Millis, true)));
        }
        let archived = Archived {
            event: &stored.event,
            received_at: self.received_text.as_ref().map_or("", |(_, text)| text),
            experiments: attribution.iter().map(|(e, v)| (e.as_str(), v.as_str())).collect(),
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &archived)?;
        Ok(&self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Events of one ingest request share their receive time's text; an event received at
    /// another time gets its own, and one received before the epoch too.
    #[test]
    fn each_line_has_its_own_events_receive_time() {
        let mut lines = Lines::default();
        let received = [1_764_990_000_123, 1_764_990_000_123, 1_764_990_000_124, -1, 1_764_990_000_123];
        let at = DateTime::parse_from_rfc3339("2025-12-06T03:00:00Z").unwrap().with_timezone(&Utc);
        let mut read = Vec::new();
        for (offset, received_at) in received.iter().enumerate() {
            let event = Event {
                event_id: format!("e{offset}"),
                event: "purchase".into(),
                kind: crate::event::EventType::Track,
                user_id: "u1".into(),
                timestamp: at,
                value: None,
                properties: Default::default(),
                experiment_key: None,
                variant: None,
            };
            let stored = StoredEvent { event, received_at: *received_at, id_given: true, env: None };
            let line = lines.of(&stored, &[("checkout".into(), "control".into())]).unwrap();
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
}
