//! Enrichment and metric filters over HTTP: users are exposed through `/v1/assign`, then send
//! purchases dated before and after that exposure, in and out of a segment; the results endpoint
//! must count only the purchases after the exposure, and a segment-filtered metric only the
//! purchases its segment matches.

use crate::events::{post_json, settle};
use crate::experiments::running;
use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USERS: usize = 12;

#[tokio::test]
async fn only_events_after_the_first_exposure_and_matching_a_segment_filter_count() {
    let server = Server::start().await;
    server.create("segments", json!({"key": "germany", "when": {"attr": "country", "op": "eq", "value": "DE"}})).await;
    running(
        &server,
        json!({"key": "window",
               "variants": [{"key": "control"}, {"key": "treatment"}],
               "metrics": [
                   {"key": "revenue", "kind": "sum", "event": "purchase", "role": "primary"},
                   {"key": "german_revenue", "kind": "sum", "event": "purchase", "filter": {"segment": "germany"}}]}),
    )
    .await;
    let users: Vec<String> = (0..USERS).map(|i| format!("window_user_{i}")).collect();
    for user in &users {
        let (status, body) =
            server.call(Method::POST, "/v1/assign", Some(json!({"user_id": user, "experiment_key": "window"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The exposures are processed before any purchase, as they are when users act after
    // being assigned.
    settle(&server, USERS as f64).await;

    let now = chrono::Utc::now();
    let before = (now - chrono::Duration::hours(1)).to_rfc3339();
    let after = (now + chrono::Duration::minutes(1)).to_rfc3339();
    let purchase = |user: &str, value: f64, country: &str, timestamp: &str| {
        json!({"event": "purchase", "user_id": user, "value": value, "timestamp": timestamp,
               "properties": {"country": country}})
    };
    let mut events: Vec<Value> = Vec::new();
    for user in &users {
        events.push(purchase(user, 1000.0, "DE", &before));
        events.push(purchase(user, 10.0, "DE", &after));
        events.push(purchase(user, 5.0, "FR", &after));
    }
    // Never exposed: counts for no variant.
    events.push(purchase("window_stranger", 50.0, "DE", &after));
    post_json(&server, &events).await;
    settle(&server, (USERS + events.len()) as f64).await;

    let (status, results) = server.call(Method::GET, "/v1/experiments/window/results", None).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    let per_variant: Vec<u64> =
        results["variants"].as_array().unwrap().iter().map(|v| v["users"].as_u64().unwrap()).collect();
    assert_eq!(per_variant.iter().sum::<u64>(), USERS as u64, "{results}");
    assert!(per_variant.iter().all(|&n| n > 0), "{results}");
    for (metric, mean) in [("revenue", 15.0), ("german_revenue", 10.0)] {
        let report = results["metrics"].as_array().unwrap().iter().find(|m| m["key"] == metric).unwrap();
        for variant in report["variants"].as_array().unwrap() {
            assert_eq!(variant["mean"].as_f64(), Some(mean), "{metric}: {variant}");
        }
        let users: u64 = report["variants"].as_array().unwrap().iter().map(|v| v["users"].as_u64().unwrap()).sum();
        assert_eq!(users, USERS as u64, "{metric}");
    }
}
