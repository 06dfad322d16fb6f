//! Ingest: validation codes, partial acceptance, body formats, Kinesis, DLQ and duplicates.
mod common;

use base64::Engine;
use common::{experiments, Env};
use serde_json::json;
use vexil_events::{BodyFormat, DlqFilter, DlqStage};

fn rejected_code(body: serde_json::Value) -> (String, Option<String>) {
    let now = chrono::Utc::now();
    let error = vexil_events::event::validate_text(&body.to_string(), now).unwrap_err();
    (error.code, error.field)
}

#[test]
fn every_validation_error_has_its_code_and_field() {
    let ok = json!({"event": "purchase", "user_id": "u1"});
    assert!(vexil_events::event::validate_text(&ok.to_string(), chrono::Utc::now()).is_ok());
    let future = (chrono::Utc::now() + chrono::Duration::hours(25)).to_rfc3339();
    let cases = [
        (json!({"event": "purchase", "user_id": "  "}), "invalid_user_id", Some("user_id")),
        (json!({"event": "purchase"}), "invalid_user_id", Some("user_id")),
        (json!({"event": "purchase", "user_id": 42}), "invalid_user_id", Some("user_id")),
        (json!({"event": "purchase", "user_id": "x".repeat(257)}), "invalid_user_id", Some("user_id")),
        (json!({"event": "bad name!", "user_id": "u"}), "invalid_event_name", Some("event")),
        (json!({"event": "e".repeat(129), "user_id": "u"}), "invalid_event_name", Some("event")),
        (json!({"user_id": "u"}), "invalid_event_name", Some("event")),
        (json!({"event": "e", "user_id": "u", "timestamp": "yesterday"}), "invalid_timestamp", Some("timestamp")),
        (json!({"event": "e", "user_id": "u", "timestamp": future}), "invalid_timestamp", Some("timestamp")),
        (json!({"event": "e", "user_id": "u", "value": "12"}), "invalid_value", Some("value")),
        (json!({"event": "e", "user_id": "u", "properties": [1]}), "invalid_properties", Some("properties")),
        (json!({"event": "e", "user_id": "u", "colour": "red"}), "unknown_field", Some("colour")),
        (json!({"event": "e", "user_id": "u", "type": "click"}), "invalid_type", Some("type")),
        (json!({"event": "e", "user_id": "u", "event_id": 7}), "invalid_event_id", Some("event_id")),
        (
            json!({"event": "e", "user_id": "u", "type": "exposure", "variant": "a"}),
            "invalid_experiment_key",
            Some("experiment_key"),
        ),
        (
            json!({"event": "e", "user_id": "u", "type": "exposure", "experiment_key": "x"}),
            "invalid_variant",
            Some("variant"),
        ),
        (
            json!({"event": "e", "user_id": "u", "experiment_key": "Bad-Key"}),
            "invalid_experiment_key",
            Some("experiment_key"),
        ),
        (json!({"event": "e", "user_id": "u", "properties": {"blob": "x".repeat(70_000)}}), "event_too_large", None),
        (json!([1]), "invalid_event", None),
    ];
    for (body, code, field) in cases {
        assert_eq!(rejected_code(body.clone()), (code.to_owned(), field.map(str::to_owned)), "{body}");
    }
    let error = vexil_events::event::validate_text("{not json", chrono::Utc::now()).unwrap_err();
    assert_eq!(error.code, "invalid_json");
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_batches_accept_every_valid_event_and_dead_letter_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let body = json!([
        {"event": "purchase", "user_id": "u1", "value": 10},
        {"event": "purchase", "user_id": ""},
        {"event": "page_load", "user_id": "u2", "properties": {"path": "/"}},
        {"event": "purchase", "user_id": "u3", "value": "ten"},
    ]);
    let response = env.ingestor.ingest(body.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!(response.accepted, 2);
    let codes: Vec<(usize, &str)> = response.rejected.iter().map(|r| (r.index, r.error.code.as_str())).collect();
    assert_eq!(codes, [(1, "invalid_user_id"), (3, "invalid_value")]);
    assert_eq!(env.log.end(), 2);
    let answer = serde_json::to_value(&response).unwrap();
    assert_eq!(answer["rejected"][0]["error"]["field"], "user_id");

    // The envelope and NDJSON forms, with a line that is not JSON at all.
    let envelope = json!({"events": [{"event": "a", "user_id": "u"}]});
    assert_eq!(env.ingestor.ingest(envelope.to_string().as_bytes(), BodyFormat::Auto).await.unwrap().accepted, 1);
    let ndjson = "{\"event\": \"a\", \"user_id\": \"u\"}\n\n{oops\n{\"event\": \"b\", \"user_id\": \"v\"}\n";
    let response = env.ingestor.ingest(ndjson.as_bytes(), BodyFormat::Ndjson).await.unwrap();
    assert_eq!((response.accepted, response.rejected[0].index), (2, 1));
    assert_eq!(response.rejected[0].error.code, "invalid_json");

    // Whole-request limits.
    let too_many: Vec<_> = (0..10_001).map(|_| json!({})).collect();
    let error = env.ingestor.ingest(json!(too_many).to_string().as_bytes(), BodyFormat::Auto).await.unwrap_err();
    assert_eq!((error.status, error.code), (413, "too_many_events"));
    let big = vec![b' '; 5 * 1024 * 1024 + 1];
    assert_eq!(env.ingestor.ingest(&big, BodyFormat::Auto).await.unwrap_err().status, 413);
    assert_eq!(env.ingestor.ingest(b"[{", BodyFormat::Auto).await.unwrap_err().code, "invalid_json");

    let dead = env.dlq.list(&DlqFilter::default()).unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0].payload, r#"{"event":"purchase","user_id":""}"#);
    assert_eq!(dead[0].stage, DlqStage::Ingest);
}

#[tokio::test(flavor = "multi_thread")]
async fn kinesis_reports_each_failed_record_by_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = json!({"Records": [
        {"kinesis": {"data": b64(r#"{"event": "purchase", "user_id": "u1", "event_id": "k1"}"#), "sequenceNumber": "100"}},
        {"kinesis": {"data": "%%% not base64", "sequenceNumber": "101"}},
        {"kinesis": {"data": b64("{not json"), "sequenceNumber": "102"}},
        {"kinesis": {"data": b64(r#"{"event": "purchase"}"#), "sequenceNumber": "103"}},
    ]});
    let response = env.ingestor.ingest_kinesis(body.to_string().as_bytes()).await.unwrap();
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}, {"itemIdentifier": "103"}]})
    );
    // Redelivery of the whole batch: the good record is a success again, and is not appended twice.
    let again = env.ingestor.ingest_kinesis(body.to_string().as_bytes()).await.unwrap();
    assert_eq!(again.batch_item_failures.len(), 3);
    assert_eq!(env.log.end(), 1);
    let codes: Vec<String> = env.dlq.list(&DlqFilter::default()).unwrap().into_iter().map(|e| e.error.code).collect();
    assert_eq!(&codes[..3], ["invalid_base64", "invalid_json", "invalid_user_id"]);
    assert_eq!(env.ingestor.ingest_kinesis(b"{}").await.unwrap_err().code, "invalid_body");
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_entries_can_be_listed_replayed_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let body = json!([
        {"event": "purchase", "user_id": " "},
        {"event": "bad name", "user_id": "u"},
        {"event": "purchase", "user_id": "u", "value": "x"},
    ]);
    env.ingestor.ingest(body.to_string().as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!(vexil_events::Metrics::get(&env.metrics.dlq_size), 3);
    let only_names = DlqFilter { code: Some("invalid_event_name".into()), ..DlqFilter::default() };
    assert_eq!(env.dlq.list(&only_names).unwrap().len(), 1);
    assert_eq!(env.dlq.list(&DlqFilter { limit: Some(2), ..DlqFilter::default() }).unwrap().len(), 2);

    // Still invalid: replay keeps it, with one more attempt.
    let report = env.ingestor.replay_dlq(&only_names).await.unwrap();
    assert_eq!((report.replayed, report.failed), (0, 1));
    assert_eq!(env.dlq.list(&only_names).unwrap()[0].attempts, 1);

    // Purge by filter; then an entry whose payload is valid (dead-lettered for a cause that has
    // since gone away) replays and leaves the queue.
    let purged = env.dlq.purge(&DlqFilter { code: Some("invalid_value".into()), ..DlqFilter::default() }).unwrap();
    assert_eq!(purged, 1);
    env.dlq
        .push_rejected(
            None,
            &[(
                vexil_events::EventError::new("unavailable", None, "broker down"),
                r#"{"event": "purchase", "user_id": "u9", "event_id": "r1"}"#.to_owned(),
            )],
        )
        .unwrap();
    let report =
        env.ingestor.replay_dlq(&DlqFilter { code: Some("unavailable".into()), ..DlqFilter::default() }).await.unwrap();
    assert_eq!((report.replayed, report.failed), (1, 0));
    assert_eq!(env.log.end(), 1);
    assert_eq!(env.dlq.len().unwrap(), 2);
    assert_eq!(env.dlq.purge(&DlqFilter::default()).unwrap(), 2);
    assert!(env.dlq.is_empty().unwrap());
    assert_eq!(vexil_events::Metrics::get(&env.metrics.dlq_size), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivered_events_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let batch = json!([
        {"event": "exposure", "type": "exposure", "user_id": "u1", "experiment_key": "exp_a", "variant": "control",
         "event_id": "x1", "timestamp": "2026-01-01T00:00:00Z"},
        {"event": "purchase", "user_id": "u1", "value": 5, "event_id": "p1", "timestamp": "2026-01-01T01:00:00Z"},
        {"event": "purchase", "user_id": "u1", "value": 5, "event_id": "p1", "timestamp": "2026-01-01T01:00:00Z"},
    ])
    .to_string();
    let first = env.ingestor.ingest(batch.as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!((first.accepted, first.duplicates), (2, 1));
    let again = env.ingestor.ingest(batch.as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    // A redelivery the door does not recognise (another ingest node, or after a restart) is
    // appended, and the processor's dedupe stage drops it.
    let other = vexil_events::Ingestor::new(
        env.log.clone(),
        env.dlq.clone(),
        env.metrics.clone(),
        vexil_events::IngestOptions::default(),
    );
    assert_eq!(other.ingest(batch.as_bytes(), BodyFormat::Auto).await.unwrap().accepted, 2);
    env.settle();
    let sums = common::committed_sums(&env, &experiments());
    let orders = &sums[&("exp_a".into(), "control".into(), "orders".into())];
    assert_eq!((orders.n, orders.sum_x), (1, 1.0));
    assert_eq!(env.archive().len(), 2);
    assert_eq!(vexil_events::Metrics::get(&env.metrics.processed_duplicates_total), 2);
}

/// Ingest writes each event's log record straight from the validated text; the processor reads
/// it with the derived `LogRecord` decoder. The two must agree byte for byte, and the values must
/// be the validated ones (trimmed user id, UTC timestamp, escapes undone and redone).
#[test]
fn log_records_are_the_derived_encoding_of_the_validated_event() {
    use chrono::{TimeZone, Utc};
    use vexil_events::event::{validate_text, LogRecord, Receipt};

    let now = Utc::now();
    let receipt = Receipt::new(now);
    let record = |raw: &str| {
        let bytes = validate_text(raw, now).unwrap().to_record(&receipt, None);
        let decoded: LogRecord = serde_json::from_slice(&bytes).unwrap();
        let LogRecord::Event(stored) = decoded.clone() else { panic!("an event record: {decoded:?}") };
        (bytes, decoded, stored)
    };

    let (bytes, decoded, stored) = record(r#"{"event": "purchase", "user_id": "u1"}"#);
    assert_eq!(bytes, serde_json::to_vec(&decoded).unwrap());
    assert!(uuid::Uuid::parse_str(&stored.event.event_id).is_ok());
    assert!(!stored.id_given);
    assert_eq!((stored.event.timestamp, stored.received_at), (now, now.timestamp_millis()));
    assert_eq!((stored.event.value, stored.event.properties.len()), (None, 0));

    let full = r#"{"variant": "con\"trol", "experiment_key": "exp_a", "type": "exposure",
        "event_id": "e-1", "event": "checkout", "user_id": "  \u00fc \"q\"\t ",
        "timestamp": "2026-01-01T02:00:00.5+02:00", "value": 1e2, "properties": {"a": [1, -2, 2.5, true, null, "x\ny"],
        "b": {"c": "\u00e9", "d": {}}}}"#;
    let (bytes, decoded, stored) = record(full);
    assert_eq!(bytes, serde_json::to_vec(&decoded).unwrap());
    let event = &stored.event;
    assert!(stored.id_given);
    assert_eq!((event.event_id.as_str(), event.event.as_str(), event.user_id.as_str()), ("e-1", "checkout", "ü \"q\""));
    assert_eq!(event.kind, vexil_events::EventType::Exposure);
    assert_eq!(
        event.timestamp,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::milliseconds(500)
    );
    assert_eq!(event.value, Some(100.0));
    assert_eq!(
        serde_json::Value::Object(event.properties.clone()),
        json!({"a": [1, -2, 2.5, true, null, "x\ny"], "b": {"c": "é", "d": {}}})
    );
    assert_eq!((event.experiment_key.as_deref(), event.variant.as_deref()), (Some("exp_a"), Some("con\"trol")));

    // Properties keep their meaning whatever their order or repeated keys: the last value wins,
    // as in a parsed JSON object. An empty object is left out, as an empty map always was.
    let (_, _, stored) = record(r#"{"event": "e", "user_id": "u", "properties": {"b": 1, "a": 2, "a": 3}}"#);
    assert_eq!(serde_json::Value::Object(stored.event.properties), json!({"a": 3, "b": 1}));
    let (bytes, _, _) = record(r#"{"event": "e", "user_id": "u", "properties": { }}"#);
    assert!(!String::from_utf8(bytes).unwrap().contains("properties"));
}

/// JSON that a parser refuses inside one event (a number out of range, nesting past the limit, a
/// lone surrogate) rejects that event alone; its neighbours are appended.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_whose_json_cannot_be_parsed_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = format!(
        r#"[{{"event": "a", "user_id": "u1"}},
            {{"event": "a", "user_id": "u2", "properties": {{"x": 1e400}}}},
            {{"event": "a", "user_id": "u3", "properties": {{"x": {deep}}}}},
            {{"event": "a", "user_id": "\ud800"}},
            {{"event": "a", "user_id": "u5", "colour": [1e999]}},
            {{"event": "a", "user_id": "u6"}}]"#
    );
    let response = env.ingestor.ingest(body.as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!(response.accepted, 2);
    let rejected: Vec<(usize, &str)> = response.rejected.iter().map(|r| (r.index, r.error.code.as_str())).collect();
    assert_eq!(rejected, [(1, "invalid_json"), (2, "invalid_json"), (3, "invalid_json"), (4, "invalid_json")]);
    for (rejected, cause) in
        response.rejected.iter().zip(["number out of range", "recursion limit", "escape", "number"])
    {
        assert!(rejected.error.message.starts_with("the event is not valid JSON: "), "{:?}", rejected.error);
        assert!(rejected.error.message.contains(cause), "{:?}", rejected.error);
    }
    assert_eq!(env.log.end(), 2);
    assert_eq!(env.dlq.len().unwrap(), 4);
}

/// A batch is read in one pass where it can be; what the DLQ keeps of a refused event is still
/// exactly its text in the body, and a malformed array is still refused as a whole.
#[tokio::test(flavor = "multi_thread")]
async fn events_read_in_place_keep_their_exact_text() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::open(dir.path(), experiments());
    let body = "[ \n{\"event\": \"a\",\t\"user_id\": \" \"} ,\r\n{\"event\":\"a\",\"user_id\":\"u\"}\n ]\n";
    let response = env.ingestor.ingest(body.as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!((response.accepted, response.rejected.len()), (1, 1));
    let envelope = "{\"events\": [7, {\"event\":\"a\",\"user_id\":\"v\"}]}";
    let response = env.ingestor.ingest(envelope.as_bytes(), BodyFormat::Auto).await.unwrap();
    assert_eq!((response.accepted, response.rejected[0].error.code.as_str()), (1, "invalid_event"));
    let payloads: Vec<String> = env.dlq.list(&DlqFilter::default()).unwrap().into_iter().map(|e| e.payload).collect();
    assert_eq!(payloads, ["{\"event\": \"a\",\t\"user_id\": \" \"}", "7"]);

    let error = env.ingestor.ingest(b"[{\"event\":\"a\",\"user_id\":\"u\"},]", BodyFormat::Auto).await.unwrap_err();
    assert_eq!((error.status, error.code), (400, "invalid_json"));
    assert!(error.message.contains("trailing comma"), "{error:?}");
    assert_eq!(env.log.end(), 2);
}
