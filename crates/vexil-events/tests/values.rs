//! Event values are exact: whatever f64 a client writes comes back, after the log, the DLQ or
//! the archive, as the same number. serde_json's default float parser is off by one unit in
//! the last place for about a tenth of 17-digit numbers; the workspace enables its
//! `float_roundtrip` parser, and these tests fail without it.

mod common;

use common::{experiments, Env};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use vexil_events::{BodyFormat, DlqFilter, Event};

/// Values that are hard to carry exactly: 17 significant digits, subnormals, extremes, and
/// random bit patterns, each with the shortest text that reads back as it.
fn hard_values(count: usize) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut values = vec![-519684.51526932395, 0.30000000000000004, 123456789.12345679, 2.2250738585072014e-308];
    values.extend([5e-324, f64::MAX, f64::MIN, -0.0, 1e21, 1e-7]);
    while values.len() < count {
        let value = f64::from_bits(rng.gen());
        if value.is_finite() {
            values.push(value);
        }
    }
    values
}

/// `value` of every event in `events`, by event id (NaN where it is not a number, which no
/// sent value is).
fn values_by_id(events: impl IntoIterator<Item = Value>) -> HashMap<String, f64> {
    events
        .into_iter()
        .map(|e| (e["event_id"].as_str().unwrap().to_owned(), e["value"].as_f64().unwrap_or(f64::NAN)))
        .collect()
}

fn assert_same_bits(sent: &[f64], back: &HashMap<String, f64>, prefix: &str, after: &str) {
    assert_eq!(back.len(), sent.len(), "{after}: one value per event");
    for (i, value) in sent.iter().enumerate() {
        let got = back[&format!("{prefix}{i}")];
        assert_eq!(got.to_bits(), value.to_bits(), "{after}: sent {value:e}, got {got:e}");
    }
}

#[test]
fn values_come_back_exact_from_the_archive_and_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let values = hard_values(2_000);
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Valid events go through the log and the pipeline into the archive.
    let valid: Vec<Value> = (values.iter().enumerate())
        .map(|(i, v)| json!({"event_id": format!("ok-{i}"), "event": "purchase", "user_id": "u", "value": v, "timestamp": at}))
        .collect();
    let answer = runtime.block_on(env.ingestor.ingest(&serde_json::to_vec(&valid).unwrap(), BodyFormat::Auto)).unwrap();
    assert_eq!(answer.accepted, values.len());
    env.settle();
    assert_same_bits(&values, &values_by_id(env.archive()), "ok-", "the log and the archive");

    // Events with a bad name go to the DLQ with their payload as received.
    let invalid: Vec<Value> = (values.iter().enumerate())
        .map(|(i, v)| json!({"event_id": format!("bad-{i}"), "event": "no good", "user_id": "u", "value": v, "timestamp": at}))
        .collect();
    let answer =
        runtime.block_on(env.ingestor.ingest(&serde_json::to_vec(&invalid).unwrap(), BodyFormat::Auto)).unwrap();
    assert_eq!(answer.rejected.len(), values.len());
    let entries = env.dlq.list(&DlqFilter::default()).unwrap();
    let payloads = entries.iter().map(|entry| serde_json::from_str::<Value>(&entry.payload).unwrap());
    assert_same_bits(&values, &values_by_id(payloads), "bad-", "the DLQ");
}

#[test]
fn every_f64_survives_json_unchanged() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut checked = 0;
    while checked < 200_000 {
        let value = f64::from_bits(rng.gen());
        if !value.is_finite() {
            continue;
        }
        let text = serde_json::to_string(&value).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bits(), value.to_bits(), "{text} read back as {back}");
        checked += 1;
    }
}

#[test]
fn an_event_value_keeps_every_digit() {
    for text in ["-519684.51526932395", "0.30000000000000004", "123456789.12345679", "2.2250738585072014e-308"] {
        let json = format!(
            r#"{{"event_id": "e1", "event": "purchase", "type": "track", "user_id": "u1",
                "timestamp": "2026-11-21T10:00:00Z", "value": {text}}}"#
        );
        let event: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(event.value, Some(text.parse::<f64>().unwrap()), "value {text}");
    }
}
