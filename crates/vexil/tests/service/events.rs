//! The event endpoints over HTTP: partial acceptance, every kind of bad input, Kinesis, dedupe,
//! the counters of `/v1/stats/events` and the archive against a recomputation from the events
//! sent, and metrics.

use crate::harness::{eventually, Server, PATIENCE};
use base64::Engine;
use flate2::read::GzDecoder;
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// `POST /v1/events` with a body and content type, using `key`.
pub async fn post_events(
    server: &Server,
    key: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let request = server.with_key(Method::POST, "/v1/events", key).header("content-type", content_type).body(body);
    Server::send(request).await
}

/// Posts a JSON array of events with the admin key and expects 200.
pub async fn post_json(server: &Server, events: &[Value]) -> Value {
    let (status, body) =
        post_events(server, &server.key, "application/json", serde_json::to_vec(events).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Every archived event, from the archive files under `root`.
pub fn read_archive(root: &Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for file in vexil_events::archive::LocalArchive::open(root).unwrap().files().unwrap() {
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(&file).unwrap()).read_to_string(&mut text).unwrap();
        lines.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    lines
}

/// The value of a metric line in the Prometheus text `/metrics` answers.
pub async fn metric(server: &Server, name: &str) -> f64 {
    server
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

/// Waits until the pipeline has processed everything appended (lag 0, `processed` reached). A
/// large backlog may take long on a loaded machine, so only a pipeline that makes no progress
/// for [`PATIENCE`] fails the wait.
pub async fn settle(server: &Server, processed: f64) {
    let mut last = (f64::NAN, tokio::time::Instant::now());
    loop {
        let done = metric(server, "vexil_events_processed_total").await;
        if done >= processed && metric(server, "vexil_events_lag_events").await == 0.0 {
            return;
        }
        if done != last.0 {
            last = (done, tokio::time::Instant::now());
        }
        assert!(last.1.elapsed() < PATIENCE, "the pipeline stopped at {done} of {processed} processed events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn valid_neighbours_of_invalid_events_are_kept() {
    let server = Server::start().await;
    let client = server.create_key("client").await;
    let now = chrono::Utc::now().to_rfc3339();
    let body = json!({"events": [
        {"event": "signup", "user_id": "u1", "timestamp": now},
        {"event": "bad name!", "user_id": "u2"},
        {"event": "purchase", "user_id": "   ", "value": 3.0},
        {"event": "purchase", "user_id": "u3", "value": "ten"},
        {"event": "purchase", "user_id": "u4", "value": 5.5, "properties": {"currency": "EUR"}},
        {"event": "purchase", "user_id": "u5", "properties": [1]},
        {"event": "late", "user_id": "u6", "timestamp": "2999-01-01T00:00:00Z"},
        {"event": "huge", "user_id": "u7", "properties": {"blob": "x".repeat(70_000)}},
        "not an object"
    ]});
    let (status, answer) = post_events(&server, &client, "application/json", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected: Vec<(u64, &str, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"]["code"].as_str().unwrap(),
                r["error"]["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "invalid_event_name", "event"),
            (2, "invalid_user_id", "user_id"),
            (3, "invalid_value", "value"),
            (5, "invalid_properties", "properties"),
            (6, "invalid_timestamp", "timestamp"),
            (7, "event_too_large", ""),
            (8, "invalid_event", ""),
        ]
    );
    let (status, dlq) = server.call(Method::GET, "/v1/admin/dlq", None).await;
    assert_eq!(status, StatusCode::OK, "{dlq}");
    assert_eq!(dlq["total"], 7, "{dlq}");
    assert_eq!(dlq["entries"][0]["error"]["code"], "invalid_event_name");
    assert_eq!(dlq["entries"][0]["payload"], r#"{"event":"bad name!","user_id":"u2"}"#);
    settle(&server, 2.0).await;
    assert_eq!(metric(&server, "vexil_events_ingested_total").await, 2.0);
    assert_eq!(metric(&server, "vexil_events_rejected_total").await, 7.0);
    assert_eq!(metric(&server, "vexil_events_dlq_size").await, 7.0);

    // NDJSON, with a broken line among good ones.
    let ndjson = "{\"event\":\"a\",\"user_id\":\"u1\"}\n{not json\n\n{\"event\":\"b\",\"user_id\":\"u2\"}\n";
    let (status, answer) = post_events(&server, &client, "application/x-ndjson", ndjson).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"][0]["index"].as_u64()), (Some(2), Some(1)), "{answer}");
    assert_eq!(answer["rejected"][0]["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn bad_requests_get_the_error_shape_and_never_500() {
    let server = Server::start().await;
    let key = server.key.clone();
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("application/json", b"[{\"event\": ".to_vec(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("application/json", b"{\"events\": 3}".to_vec(), StatusCode::BAD_REQUEST, "invalid_body"),
        ("application/json", b"{\"events\": [], \"extra\": 1}".to_vec(), StatusCode::BAD_REQUEST, "invalid_body"),
        ("application/json", vec![0xff, 0xfe], StatusCode::BAD_REQUEST, "invalid_body"),
        ("text/plain", b"[]".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("application/xml", b"<a/>".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    ];
    for (content_type, body, want, code) in cases {
        let (status, answer) = post_events(&server, &key, content_type, body).await;
        assert_error(status, &answer, want, code);
    }
    let no_type = server.admin(Method::POST, "/v1/events").body("[]");
    let (status, answer) = Server::send(no_type).await;
    assert_error(status, &answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let many: Vec<Value> = (0..10_001).map(|i| json!({"event": "e", "user_id": format!("u{i}")})).collect();
    let (status, answer) = post_events(&server, &key, "application/json", serde_json::to_vec(&many).unwrap()).await;
    assert_error(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "too_many_events");
    let big = format!(
        "[{{\"event\": \"e\", \"user_id\": \"u\", \"properties\": {{\"x\": \"{}\"}}}}]",
        "y".repeat(5 * 1024 * 1024)
    );
    let (status, answer) = post_events(&server, &key, "application/json", big).await;
    assert_error(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let kinesis = |body: Value| server.admin(Method::POST, "/v1/events/kinesis").json(&body);
    let (status, answer) = Server::send(kinesis(json!({"records": []}))).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_body");
    let (status, answer) = Server::send(kinesis(json!({"Records": [{"kinesis": {"data": 5}}]}))).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_body");
    let wrong_type =
        server.admin(Method::POST, "/v1/events/kinesis").header("content-type", "application/x-ndjson").body("{}");
    let (status, answer) = Server::send(wrong_type).await;
    assert_error(status, &answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    for query in [
        "",
        "?event=bad%20name",
        "?event=e&window=week",
        "?event=e&from=yesterday",
        "?event=e&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "?event=e&bogus=1",
    ] {
        let (status, answer) = server.call(Method::GET, &format!("/v1/stats/events{query}"), None).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_query");
    }
    let (status, answer) = server.call(Method::GET, "/v1/admin/dlq?ids=1,x", None).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_query");
    let (status, answer) = server.call(Method::GET, "/v1/admin/dlq?stage=somewhere", None).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_query");

    let client = server.create_key("client").await;
    let (status, _) = Server::send(server.with_key(Method::GET, "/v1/admin/dlq", &client)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = Server::send(server.with_key(Method::GET, "/v1/stats/events?event=e", &client)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = Server::send(server.client.post(server.url("/v1/events")).json(&json!([]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn kinesis_answers_the_records_to_retry() {
    let server = Server::start().await;
    let encode = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let good = json!({"event": "click", "user_id": "u1", "event_id": "k-1"});
    let body = json!({"Records": [
        {"kinesis": {"data": encode(&good), "sequenceNumber": "1"}},
        {"kinesis": {"data": "%%% not base64", "sequenceNumber": "2"}},
        {"kinesis": {"data": encode(&json!({"event": "click"})), "sequenceNumber": "3"}},
        {"kinesis": {"data": base64::engine::general_purpose::STANDARD.encode("{oops"), "sequenceNumber": "4"}},
        {"kinesis": {"data": encode(&good), "sequenceNumber": "5"}}
    ]});
    let (status, answer) = Server::send(server.admin(Method::POST, "/v1/events/kinesis").json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}, {"itemIdentifier": "4"}]})
    );
    let (_, dlq) = server.call(Method::GET, "/v1/admin/dlq?code=invalid_base64", None).await;
    assert_eq!(dlq["entries"].as_array().unwrap().len(), 1, "{dlq}");
    settle(&server, 1.0).await;
    assert_eq!(metric(&server, "vexil_events_processed_total").await, 1.0);
}

#[tokio::test]
async fn a_redelivered_event_id_counts_once() {
    let server = Server::start().await;
    let at = "2026-03-04T10:15:00Z";
    let event = json!({"event_id": "order-1", "event": "purchase", "user_id": "u1", "value": 10.0, "timestamp": at});
    let first = post_json(&server, &[event.clone(), event.clone()]).await;
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(1), Some(1)), "{first}");
    let again = post_json(
        &server,
        &[event.clone(), json!({"event": "purchase", "user_id": "u2", "value": 1.5, "timestamp": at})],
    )
    .await;
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(1), Some(1)), "{again}");
    settle(&server, 2.0).await;
    let (status, stats) = server
        .call(
            Method::GET,
            "/v1/stats/events?event=purchase&window=day&from=2026-03-01T00:00:00Z&to=2026-03-10T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let bucket = &stats["buckets"][0];
    assert_eq!(stats["buckets"].as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(
        (bucket["start"].as_str(), bucket["count"].as_u64(), bucket["unique_users"].as_u64()),
        (Some("2026-03-04T00:00:00Z"), Some(2), Some(2))
    );
    assert_eq!(bucket["sum"], 11.5);
}

/// Per event name and hour: (count, sum of value, unique users).
type Windows = HashMap<(String, i64), (u64, f64, HashSet<String>)>;

fn windows_of(events: impl IntoIterator<Item = Value>) -> Windows {
    let mut out = Windows::new();
    for e in events {
        let at = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap().timestamp();
        let entry = out.entry((e["event"].as_str().unwrap().to_owned(), at.div_euclid(3600) * 3600)).or_default();
        entry.0 += 1;
        entry.1 += e["value"].as_f64().unwrap_or(0.0);
        entry.2.insert(e["user_id"].as_str().unwrap().to_owned());
    }
    out
}

/// The events a correct server counts among `sent`, by the test's own bookkeeping (SPEC 1.4): an
/// event with an `event_id` counts once however often it is delivered; one without counts every
/// time, since the server gives each delivery a fresh id.
fn counted_once(sent: &[Value]) -> Vec<Value> {
    let mut ids = HashSet::new();
    sent.iter().filter(|e| e["event_id"].as_str().is_none_or(|id| ids.insert(id.to_owned()))).cloned().collect()
}

#[tokio::test]
async fn counters_equal_a_recomputation_from_the_events_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start_in(&data_dir, Default::default()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let names = ["view", "click", "purchase"];
    let base = chrono::Utc::now() - chrono::Duration::hours(30);
    let mut sent: Vec<Value> = Vec::new();
    let mut bodies = Vec::new();
    for batch in 0..200 {
        let mut events = Vec::with_capacity(500);
        for i in 0..500 {
            let at = base + chrono::Duration::seconds(rng.gen_range(0..30 * 3600));
            let mut event = json!({"event": names[rng.gen_range(0..3)], "user_id": format!("user_{}", rng.gen_range(0..1_200)),
                                   "timestamp": at.to_rfc3339(), "value": rng.gen_range(0..10_000) as f64 / 100.0});
            if rng.gen_bool(0.2) {
                event["event_id"] = json!(format!("id-{batch}-{i}"));
            }
            if batch > 0 && i % 100 == 0 {
                // A redelivery of an earlier event, sometimes of one in a batch still in flight.
                event = sent[rng.gen_range(0..sent.len())].clone();
            } else if batch > 0 && i % 100 == 50 {
                // A redelivery within the same batch.
                if let Some(earlier) = events.iter().rev().find(|e: &&Value| e.get("event_id").is_some()) {
                    event = earlier.clone();
                }
            }
            sent.push(event.clone());
            events.push(event);
        }
        bodies.push(serde_json::to_vec(&events).unwrap());
    }
    let counted = counted_once(&sent);
    assert!(sent.len() >= 100_000);
    assert!(sent.len() - counted.len() >= 1_000, "the data must hold redeliveries for dedupe to be tested");
    let posts = bodies.into_iter().map(|body| {
        let server = &server;
        async move {
            let (status, answer) = post_events(server, &server.key, "application/json", body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer["accepted"].as_u64().unwrap()
        }
    });
    let accepted: u64 =
        futures_util::stream::iter(posts).buffer_unordered(8).collect::<Vec<_>>().await.into_iter().sum();
    // The door answers a redelivery it remembers as a duplicate; concurrent batches can both carry
    // an id it has not remembered yet, and the processor's dedupe stage drops the later one. The
    // metrics only say when processing is done; what was counted is checked against `counted`.
    for _ in 0..3_000 {
        let processed = metric(&server, "vexil_events_processed_total").await;
        let duplicates = metric(&server, "vexil_events_processed_duplicates_total").await;
        if processed + duplicates >= accepted as f64 && metric(&server, "vexil_events_lag_events").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let processed = metric(&server, "vexil_events_processed_total").await;
    assert_eq!(processed, counted.len() as f64, "events processed, against the events sent less redeliveries");
    // A graceful stop flushes the pipeline, which closes the open archive files.
    assert!(server.stop().await);
    let archived = read_archive(&data_dir.join("archive"));
    let ids: Vec<&str> = archived.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len(), "an event was archived twice");
    assert_eq!(archived.len(), counted.len(), "the archive holds every counted event once");
    let expected = windows_of(counted);
    let restarted = Server::start_in(&data_dir, Default::default()).await;
    let from = (base - chrono::Duration::hours(1)).to_rfc3339();
    let to = (base + chrono::Duration::hours(32)).to_rfc3339();
    let mut seen = 0;
    for name in names {
        let query = format!("/v1/stats/events?event={name}&window=hour&from={}&to={}", enc(&from), enc(&to));
        let (status, stats) = restarted.call(Method::GET, &query, None).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        for bucket in stats["buckets"].as_array().unwrap() {
            let start = chrono::DateTime::parse_from_rfc3339(bucket["start"].as_str().unwrap()).unwrap().timestamp();
            let (count, sum, users) = &expected[&(name.to_owned(), start)];
            assert_eq!(bucket["count"].as_u64().unwrap(), *count);
            assert_eq!(bucket["unique_users"].as_u64().unwrap(), users.len() as u64);
            assert!((bucket["sum"].as_f64().unwrap() - sum).abs() <= 1e-9 * sum.abs().max(1.0));
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len());
}

/// Percent-encodes the `+` and `:` of an RFC 3339 time for a query string.
pub fn enc(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

/// A flat-out ingest run whose clients hang up without reading the answers: every batch the log
/// made durable is processed, so it must be counted as ingested too, even when the request that
/// carried it was dropped while its append was in flight.
#[tokio::test]
async fn ingested_and_processed_agree_when_clients_hang_up() {
    use tokio::io::AsyncWriteExt;
    const CONNECTIONS: usize = 16;
    const BATCHES: usize = 10;
    const EVENTS: usize = 500;
    let server = Server::start().await;
    let address = server.base.trim_start_matches("http://").to_string();
    let clients = (0..CONNECTIONS).map(|connection| {
        let (address, key) = (address.clone(), server.key.clone());
        tokio::spawn(async move {
            for batch in 0..BATCHES {
                let events: Vec<Value> = (0..EVENTS)
                    .map(|i| json!({"event": "load", "user_id": format!("u{connection}-{batch}-{i}")}))
                    .collect();
                let body = serde_json::to_vec(&events).unwrap();
                let head = format!(
                    "POST /v1/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(&body).await.unwrap();
                // Hang up at once, while the server is still appending the batch.
                drop(stream);
            }
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
    // The server may drop every hung-up batch before its append starts (a loaded machine sees
    // each hang-up early); one batch that waits for its answer keeps the wait below meaningful.
    let answered: Vec<Value> =
        (0..EVENTS).map(|i| json!({"event": "load", "user_id": format!("answered-{i}")})).collect();
    assert_eq!(post_json(&server, &answered).await["accepted"], EVENTS);
    // The server may still be reading and appending hung-up batches after the clients are
    // done, so wait until nothing moves for a second with nothing left to process.
    let last = std::cell::Cell::new((f64::NAN, f64::NAN, tokio::time::Instant::now()));
    let (ingested, processed) = eventually("the counters settle with the pipeline caught up", || {
        let (server, last) = (&server, &last);
        async move {
            let ingested = metric(server, "vexil_events_ingested_total").await;
            let processed = metric(server, "vexil_events_processed_total").await;
            let caught_up = metric(server, "vexil_events_lag_events").await == 0.0;
            if (ingested, processed) != (last.get().0, last.get().1) {
                eprintln!("ingested {ingested}, processed {processed}, caught up: {caught_up}");
                last.set((ingested, processed, tokio::time::Instant::now()));
            }
            let settled = last.get().2.elapsed() >= Duration::from_secs(1);
            (caught_up && settled && processed > 0.0).then_some((ingested, processed))
        }
    })
    .await;
    assert_eq!(ingested, processed, "events processed but never counted as ingested");
}
