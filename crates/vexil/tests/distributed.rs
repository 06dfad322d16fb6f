//! The distributed mode end to end: several `vexil serve` processes on loopback sharing one
//! PostgreSQL database (`VEXIL_TEST_DATABASE_URL`, started by `scripts/test.sh`). Each test
//! gets a database of its own on that server.
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
use vexil_store::testkit::postgres::fresh_database;

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
