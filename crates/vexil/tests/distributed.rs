//! The distributed mode end to end: several `vexil serve` processes on loopback sharing one
//! PostgreSQL database, one Kafka-protocol broker and one S3 bucket (the engines that
//! `scripts/test.sh` starts: `VEXIL_TEST_DATABASE_URL`, `VEXIL_TEST_BROKER`, `AWS_ENDPOINT_URL`
//! and `VEXIL_TEST_S3_URL`). Each test gets a database, a topic and a prefix of its own.
//!
//! Without the variables the tests fail: a green run must have run them
//! (`VEXIL_TEST_ALLOW_SKIPS=1` turns that into a recorded skip).

// The service tests' harness; this binary uses only part of it.
#[allow(dead_code)]
#[path = "service/harness.rs"]
mod harness;

use harness::{eventually, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use vexil_distributed::s3::{S3Archive, S3Target};
use vexil_store::testkit::postgres::{engine_variable, fresh_database};

/// A node of the distributed mode on `database_url`, with its own (local) data directory.
async fn node(database_url: &str) -> Server {
    Server::start_with(Options { args: vec!["--database-url".into(), database_url.into()], ..Options::default() }).await
}

/// A node of the distributed mode on `database_url` and the event bus `bus` (`kafka://…`), which
/// processes events or only ingests them, with `args` and `env` besides.
async fn bus_node(
    database_url: &str,
    bus: &str,
    processing: bool,
    mut args: Vec<String>,
    mut env: Vec<(String, String)>,
) -> Server {
    args.extend(["--database-url".into(), database_url.into(), "--event-bus".into(), bus.into()]);
    if !processing {
        env.push(("VEXIL_EVENT_PROCESSING".into(), "false".into()));
    }
    Server::start_with(Options { args, env, ..Options::default() }).await
}

/// The boolean a node serves for `flag` to `user`, or `None` while it does not know the flag.
async fn served(node: &Server, flag: &str, user: &str) -> Option<bool> {
    let request = node.admin(Method::POST, &format!("/v1/flags/{flag}/evaluate")).json(&json!({"user_id": user}));
    let (status, result) = Server::send(request).await;
    (status == StatusCode::OK).then(|| result["value"].as_bool().expect("a boolean value"))
}

/// Waits until `node` serves `expected` for `flag`.
async fn until_served(node: &Server, flag: &str, expected: bool) {
    let what = format!("{} serves {flag} = {expected}", node.base);
    eventually(&what, || async { (served(node, flag, "user_1").await == Some(expected)).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// SPEC 8 gives a change one second to reach every node: PostgreSQL notifies the listening
// nodes at commit, and each polls the revision every 500 ms besides. That bound is a latency
// figure, not something a test on a loaded machine can assert; this test proves the change
// arrives at all.
async fn a_change_on_one_node_is_served_by_the_others() {
    let Some(database_url) = fresh_database().await else { return };
    let a = node(&database_url).await;
    let (b, c) = tokio::join!(node(&database_url), node(&database_url));

    let flag = json!({"key": "shared_flag", "enabled": true, "default": {"variant": "on"}});
    a.create("flags", flag).await;
    for other in [&b, &c] {
        until_served(other, "shared_flag", true).await;
    }

    let (status, off) = a
        .call(
            Method::PUT,
            "/v1/admin/flags/shared_flag",
            Some(json!({"key": "shared_flag", "enabled": false, "default": {"variant": "on"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    for other in [&b, &c] {
        until_served(other, "shared_flag", false).await;
    }

    // The nodes share keys and audit too: a key created on B authenticates on C.
    let key = b.create_key("client").await;
    let request = c.with_key(Method::POST, "/v1/flags/shared_flag/evaluate", &key).json(&json!({"user_id": "u"}));
    assert_eq!(Server::send(request).await.0, StatusCode::OK);
}

/// Users of the event test: `u-0` … `u-96`, half of them exposed to the experiment.
const USERS: usize = 97;

/// Events with ids `e-{first}` … for users `u-{n % 97}`, as one JSON batch.
fn batch(first: usize, len: usize) -> serde_json::Value {
    let events: Vec<_> = (first..first + len)
        .map(|n| json!({"event_id": format!("e-{n}"), "event": "purchase", "user_id": format!("u-{}", n % USERS), "value": 2.0}))
        .collect();
    serde_json::Value::Array(events)
}

/// The variant user `u` is exposed to, if any: even users, alternating.
fn variant_of(u: usize) -> Option<&'static str> {
    u.is_multiple_of(2).then_some(if u.is_multiple_of(4) { "control" } else { "treatment" })
}

/// The day's `purchase` counter on a node, summed over its buckets, once its count stops
/// changing at `expected` (or the last seen): (count, sum of values, unique users).
async fn purchases(node: &Server, expected: u64) -> (u64, f64, u64) {
    let from = (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let query = format!("/v1/stats/events?event=purchase&window=day&from={from}");
    let mut counted = (0, 0.0, 0);
    for _ in 0..1500 {
        let (_, stats) = node.call(Method::GET, &query, None).await;
        let buckets = stats["buckets"].as_array().cloned().unwrap_or_default();
        let sum = |field: &str| buckets.iter().map(|b| b[field].as_f64().unwrap()).sum::<f64>();
        counted = (sum("count") as u64, sum("sum"), sum("unique_users") as u64);
        if counted.0 >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    counted
}

/// The value of `node`'s gauge `name`.
async fn gauge(node: &Server, name: &str) -> u64 {
    let metrics = node.metrics().await;
    let line = metrics.lines().find(|l| l.split(' ').next() == Some(name)).unwrap().to_owned();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// How many log partitions `node` processes.
async fn partitions(node: &Server) -> u64 {
    gauge(node, "vexil_events_partitions").await
}

/// A fresh database and a topic of `partitions` on the test broker named after it: (database URL,
/// event bus URL), or `None` where the engines are not there.
async fn database_and_topic(partitions: u32) -> Option<(String, String)> {
    let database_url = fresh_database().await?;
    let broker = engine_variable("VEXIL_TEST_BROKER", "broker.sh")?;
    let run = database_url.rsplit('/').next().unwrap().replace('_', "-");
    let bus = format!("kafka://{broker}/{run}?partitions={partitions}");
    Some((database_url, bus))
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
    // One database, one topic of 4 partitions and one archive prefix shared by every node.
    let prefix = format!("{bucket}/{run}");
    let bus = format!("kafka://{broker}/{run}?partitions=4");
    let start = |processing| {
        let archive = vec!["--archive-url".into(), prefix.clone()];
        bus_node(&database_url, &bus, processing, archive, aws.clone())
    };
    let a = start(true).await;
    // D only ingests: it takes no partition, and what it is sent is processed by the others.
    let (b, c, d) = tokio::join!(start(true), start(true), start(false));
    let nodes = [&a, &b, &c, &d];

    // An experiment every node knows before any exposure is sent.
    let experiment = json!({"key": "checkout", "variants": [{"key": "control"}, {"key": "treatment"}],
        "metrics": [{"key": "revenue", "kind": "sum", "event": "purchase", "role": "primary"}]});
    a.create("experiments", experiment).await;
    let (status, started) = a.call(Method::POST, "/v1/admin/experiments/checkout/start", None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    for node in nodes {
        eventually(&format!("{} knows the experiment", node.base), || async {
            (node.call(Method::GET, "/v1/experiments/checkout/results", None).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }
    let exposed_at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let exposures: Vec<_> = (0..USERS)
        .filter_map(|u| variant_of(u).map(|v| (u, v)))
        .map(|(u, v)| {
            json!({"event_id": format!("x-{u}"), "event": "exposure", "type": "exposure",
            "user_id": format!("u-{u}"), "experiment_key": "checkout", "variant": v, "timestamp": exposed_at})
        })
        .collect();
    let (status, answer) = Server::send(b.admin(Method::POST, "/v1/events").json(&exposures)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // The group has given every processing node its share (2, 1, 1 of 4), so C's death leaves
    // work to take over.
    eventually("the nodes share the partitions", || async {
        let (on_a, on_b, on_c) = (partitions(&a).await, partitions(&b).await, partitions(&c).await);
        (on_a + on_b + on_c == 4 && on_c > 0).then_some(())
    })
    .await;
    assert_eq!(partitions(&d).await, 0, "the ingest-only node takes no partition");

    // 3,000 purchases round-robin in batches of 100, then batch 0 again through another node.
    for (i, first) in (0..3000).step_by(100).enumerate() {
        let request = nodes[i % nodes.len()].admin(Method::POST, "/v1/events").json(&batch(first, 100));
        let (status, answer) = Server::send(request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], 100, "{answer}");
    }
    let (status, _) = Server::send(b.admin(Method::POST, "/v1/events").json(&batch(0, 100))).await;
    assert_eq!(status, StatusCode::OK);

    // 1,000 more through C, which is killed with SIGKILL in the middle of them; the batch it
    // did not answer goes to A again, as a client retries. C's partitions pass to A and B.
    for first in (3000..3500).step_by(100) {
        let (status, answer) = Server::send(c.admin(Method::POST, "/v1/events").json(&batch(first, 100))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let in_flight = batch(3500, 100);
    let posted = tokio::spawn(c.admin(Method::POST, "/v1/events").json(&in_flight).send());
    tokio::time::sleep(Duration::from_millis(2)).await;
    c.kill().await;
    let answered = posted.await.unwrap().is_ok_and(|r| r.status() == StatusCode::OK);
    if !answered {
        let (status, answer) = Server::send(a.admin(Method::POST, "/v1/events").json(&in_flight)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    for (i, first) in (3600..4000).step_by(100).enumerate() {
        let node = [&a, &b, &d][i % 3];
        let (status, answer) = Server::send(node.admin(Method::POST, "/v1/events").json(&batch(first, 100))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    // Every node that is left answers from the shared state: each purchase once.
    for node in [&a, &b, &d] {
        let (count, sum, users) = purchases(node, 4000).await;
        assert_eq!((count, sum, users), (4000, 8000.0, USERS as u64), "{} counts every event once", node.base);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(purchases(&b, 4000).await.0, 4000, "and no more once processing is idle");
    // Between them the processing survivors process every partition, C's included; D none.
    assert_eq!(partitions(&a).await + partitions(&b).await, 4);
    assert_eq!(partitions(&d).await, 0);

    // The experiment's aggregates, against a brute-force count: the exposed users' purchases.
    let (status, results) = a.call(Method::GET, "/v1/experiments/checkout/results", None).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    let revenue = results["metrics"].as_array().unwrap().iter().find(|m| m["key"] == "revenue").unwrap().clone();
    for variant in ["control", "treatment"] {
        let users: Vec<usize> = (0..USERS).filter(|&u| variant_of(u) == Some(variant)).collect();
        let purchases: usize = (0..4000).filter(|n| users.contains(&(n % USERS))).count();
        let reported = revenue["variants"].as_array().unwrap().iter().find(|v| v["key"] == variant).unwrap();
        assert_eq!(reported["users"].as_u64(), Some(users.len() as u64), "{reported}");
        let mean = reported["mean"].as_f64().unwrap();
        assert!((mean - 2.0 * purchases as f64 / users.len() as f64).abs() < 1e-9, "{variant}: {reported}");
    }
    let (_, from_b) = b.call(Method::GET, "/v1/experiments/checkout/results", None).await;
    assert_eq!(from_b["metrics"], results["metrics"], "every node reads the same aggregates");

    // A graceful stop closes the open archive files: the one shared prefix holds every event
    // once, the files C left open at its death rewritten by the nodes that took its partitions.
    assert!(a.stop().await && b.stop().await && d.stop().await);
    let ids = archived_ids(&prefix).await;
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    let events = 4000 + exposures.len();
    assert_eq!((ids.len(), distinct.len()), (events, events), "the shared archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shares_its_caches_among_the_partitions_it_processes() {
    let Some((database_url, bus)) = database_and_topic(4).await else { return };
    let sizes = [("VEXIL_EVENT_USER_CACHE_ENTRIES", "8"), ("VEXIL_EVENT_MEMBER_CACHE_ENTRIES", "100")];
    let env = sizes.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    let node = bus_node(&database_url, &bus, true, Vec::new(), env).await;
    eventually("the node processes every partition", || async { (partitions(&node).await == 4).then_some(()) }).await;

    // Ten purchases by each of 97 users: about 24 users to a partition, each of them a member of
    // the hour's and the day's unique purchasers, more than a partition's share of either cache
    // (2 users, 25 memberships) and than 8 users and 100 memberships over the four.
    for first in (0..970).step_by(97) {
        let (status, answer) = Server::send(node.admin(Method::POST, "/v1/events").json(&batch(first, 97))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    assert_eq!(purchases(&node, 970).await, (970, 1940.0, USERS as u64), "every purchase and purchaser counted");
    eventually("the node keeps 8 users in memory over its four partitions", || async {
        (gauge(&node, "vexil_events_cached_users").await == 8).then_some(())
    })
    .await;
    let members = gauge(&node, "vexil_events_cached_members").await;
    assert!(members <= 100, "{members} memberships kept, more than the node's 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_refuses_events_while_the_topic_is_too_far_behind() {
    let Some((database_url, bus)) = database_and_topic(2).await else { return };
    let bound = vec![("VEXIL_EVENT_MAX_LAG_EVENTS".to_string(), "300".to_string())];
    let start = |processing| bus_node(&database_url, &bus, processing, Vec::new(), bound.clone());
    // Two ingest-only nodes and, for now, no node that processes.
    let (d1, d2) = tokio::join!(start(false), start(false));
    let post =
        |node: &Server, first: usize| Server::send(node.admin(Method::POST, "/v1/events").json(&batch(first, 100)));
    let (status, answer) = Server::send(d1.admin(Method::POST, "/v1/events").json(&batch(0, 400))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // D2 appended none of them and processes nothing: it learns of them from the end offsets
    // the nodes share, and refuses the first batch it is sent.
    eventually("D2 measures the backlog of D1's events", || async {
        (gauge(&d2, "vexil_events_backlog_events").await >= 400).then_some(())
    })
    .await;
    let (status, refused) = post(&d2, 400).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["error"]["code"], "backpressure", "{refused}");
    assert_eq!(gauge(&d2, "vexil_events_lag_events").await, 0, "its own lag has no partition to count");
    assert!(d2.metrics().await.contains("vexil_background_task_panics_total{task=\"event_backlog\"} 0"));

    // A node that processes catches up, and both accept again.
    let a = start(true).await;
    for node in [&d1, &d2] {
        eventually(&format!("{} accepts events again", node.base), || async {
            (post(node, 0).await.0 == StatusCode::OK).then_some(())
        })
        .await;
    }
    eventually("the backlog is gone", || async {
        (gauge(&d2, "vexil_events_backlog_events").await == 0).then_some(())
    })
    .await;
    // Accepted: D1's 400 (the batch of 0 again is a redelivery).
    assert_eq!(purchases(&a, 400).await.0, 400, "every accepted event counted once");
}
