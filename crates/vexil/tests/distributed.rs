//! The distributed mode end to end: several `vexil serve` processes on loopback sharing one
//! PostgreSQL database, one Kafka-protocol broker and one S3 bucket (the engines that
//! `scripts/test.sh` starts: `VEXIL_TEST_DATABASE_URL`, `VEXIL_TEST_BROKER`, `AWS_ENDPOINT_URL`
//! and `VEXIL_TEST_S3_URL`). Each test gets a database, a topic and a prefix of its own.
//!
//! Without the variable the tests are skipped with a note, except under `CI=true`, where they
//! fail: CI must never pass without having run them.

// The service tests' harness; this binary uses only part of it.
#[allow(dead_code)]
#[path = "service/harness.rs"]
mod harness;

use harness::{Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use vexil_distributed::s3::{S3Archive, S3Target};
use vexil_store::testkit::postgres::{engine_variable, fresh_database};

/// A node of the distributed mode on `database_url`, with its own (local) data directory.
async fn node(database_url: &str) -> Server {
    Server::start_with(Options { args: vec!["--database-url".into(), database_url.into()], ..Options::default() }).await
}

/// The boolean a node serves for `flag` to `user`, or `None` while it does not know the flag.
async fn served(node: &Server, flag: &str, user: &str) -> Option<bool> {
    let request = node.admin(Method::POST, &format!("/v1/flags/{flag}/evaluate")).json(&json!({"user_id": user}));
    let (status, result) = Server::send(request).await;
    (status == StatusCode::OK).then(|| result["value"].as_bool().expect("a boolean value"))
}

/// Polls until `node` serves `expected`, returning how long it took after `since`.
async fn until_served(node: &Server, flag: &str, expected: bool, since: Instant) -> Duration {
    loop {
        if served(node, flag, "user_1").await == Some(expected) {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(10), "{} never served {flag} = {expected}", node.base);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_is_served_by_the_others_within_a_second() {
    let Some(database_url) = fresh_database().await else { return };
    let a = node(&database_url).await;
    let (b, c) = tokio::join!(node(&database_url), node(&database_url));

    let flag = json!({"key": "shared_flag", "enabled": true, "default": {"variant": "on"}});
    a.create("flags", flag).await;
    let created = Instant::now();
    for other in [&b, &c] {
        let took = until_served(other, "shared_flag", true, created).await;
        assert!(took < Duration::from_secs(1), "{} took {took:?} to serve the new flag", other.base);
    }

    let (status, off) = a
        .call(
            Method::PUT,
            "/v1/admin/flags/shared_flag",
            Some(json!({"key": "shared_flag", "enabled": false, "default": {"variant": "on"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    let changed = Instant::now();
    for other in [&b, &c] {
        let took = until_served(other, "shared_flag", false, changed).await;
        assert!(took < Duration::from_secs(1), "{} took {took:?} to serve the change", other.base);
    }

    // The nodes share keys and audit too: a key created on B authenticates on C.
    let key = b.create_key("client").await;
    let request = c.with_key(Method::POST, "/v1/flags/shared_flag/evaluate", &key).json(&json!({"user_id": "u"}));
    assert_eq!(Server::send(request).await.0, StatusCode::OK);
}

/// Events with ids `e-{first}` … for users `u-{n % 97}`, as one JSON batch.
fn batch(first: usize, len: usize) -> serde_json::Value {
    let events: Vec<_> = (first..first + len)
        .map(|n| json!({"event_id": format!("e-{n}"), "event": "purchase", "user_id": format!("u-{}", n % 97), "value": 2.0}))
        .collect();
    serde_json::Value::Array(events)
}

/// The day's `purchase` count on a node, once it stops changing at `expected` (or the last seen).
async fn purchases(node: &Server, expected: f64) -> f64 {
    let from = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let query = format!("/v1/stats/events?event=purchase&window=day&from={from}");
    let mut counted = 0.0;
    for _ in 0..500 {
        let (_, stats) = node.call(Method::GET, &query, None).await;
        counted = stats["buckets"].as_array().map_or(0.0, |b| b.iter().map(|b| b["count"].as_f64().unwrap()).sum());
        if counted >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counted
}

/// Every event id in the archive under `prefix`, one entry per archived line.
async fn archived_ids(prefix: &str) -> Vec<String> {
    use std::io::Read;
    let archive = S3Archive::connect(&S3Target::parse(prefix).unwrap()).unwrap();
    let mut ids = Vec::new();
    for (key, bytes) in archive.list().await.unwrap() {
        assert!(key.ends_with(".jsonl.gz"), "only finished files are visible: {key}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
        for line in text.lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.push(event["event_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_to_any_node_are_counted_once_and_survive_a_killed_node() {
    let Some(database_url) = fresh_database().await else { return };
    let (Some(broker), Some(endpoint), Some(bucket)) = (
        engine_variable("VEXIL_TEST_BROKER", "broker.sh"),
        engine_variable("AWS_ENDPOINT_URL", "s3.sh"),
        engine_variable("VEXIL_TEST_S3_URL", "s3.sh"),
    ) else {
        return;
    };
    let run = database_url.rsplit('/').next().unwrap().replace('_', "-");
    let aws: Vec<(String, String)> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        .iter()
        .map(|v| (v.to_string(), std::env::var(v).unwrap_or_default()))
        .chain([("AWS_ENDPOINT_URL".to_string(), endpoint)])
        .collect();
    // One topic and database for all; an archive prefix per node (each node archives the whole
    // stream it processes, see docs/deployment.md).
    let prefix = |node: &str| format!("{bucket}/{run}/{node}");
    let start = |node: &'static str| {
        let args = vec![
            "--database-url".into(),
            database_url.clone(),
            "--event-bus".into(),
            format!("kafka://{broker}/{run}"),
            "--archive-url".into(),
            prefix(node),
        ];
        Server::start_with(Options { args, env: aws.clone(), ..Options::default() })
    };
    let a = start("a").await;
    let (b, c) = tokio::join!(start("b"), start("c"));

    // 3,000 events round-robin in batches of 100, then batch 0 again through another node.
    let nodes = [&a, &b, &c];
    for (i, first) in (0..3000).step_by(100).enumerate() {
        let request = nodes[i % 3].admin(Method::POST, "/v1/events").json(&batch(first, 100));
        let (status, answer) = Server::send(request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], 100, "{answer}");
    }
    let (status, _) = Server::send(b.admin(Method::POST, "/v1/events").json(&batch(0, 100))).await;
    assert_eq!(status, StatusCode::OK);

    // 1,000 more acknowledged by C, which is then killed without warning.
    for first in (3000..4000).step_by(100) {
        let (status, answer) = Server::send(c.admin(Method::POST, "/v1/events").json(&batch(first, 100))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    c.kill().await;

    for node in [&a, &b] {
        assert_eq!(purchases(node, 4000.0).await, 4000.0, "{} counts every acknowledged event once", node.base);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(purchases(&a, 4000.0).await, 4000.0, "and no more once processing is idle");

    // A graceful stop closes the open archive files: each surviving node archived every event once.
    assert!(a.stop().await && b.stop().await);
    for node in ["a", "b"] {
        let ids = archived_ids(&prefix(node)).await;
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), distinct.len()), (4000, 4000), "archive of node {node}");
    }
}
