//! The Rust SDK (`vexil-sdk`) against a real `vexil serve`: live updates through the stream,
//! fail-open when the server dies or is not there yet, and the same answers as the server.

use crate::harness::{eventually, Options, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use vexil_sdk::{Client, Context, ErrorKind, Reason, Resolution, Source, Status};

/// Fast reconnection for tests, and no polling: only the stream can bring a change.
pub fn sdk_options(server_base: &str, key: &str) -> vexil_sdk::Options {
    vexil_sdk::Options::new(server_base, key)
        .retry_delays(Duration::from_millis(20), Duration::from_millis(200))
        .poll_interval(Duration::from_secs(3600))
}

fn user(id: &str) -> Context<'_> {
    Context::user(id)
}

/// A boolean flag on for everyone, except `user_off`.
fn switch(enabled: bool) -> Value {
    json!({"key": "switch", "enabled": enabled, "default": {"variant": "on"},
           "overrides": {"disabled_for": ["user_off"]}})
}

async fn ready(client: &Client) {
    eventually("the SDK is in step with the server", || async { (client.status() == Status::Ready).then_some(()) })
        .await;
}

/// A loopback address nobody listens on (yet).
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn an_admin_change_reaches_the_sdk_through_the_stream() {
    let server = Server::start().await;
    server.create("flags", switch(true)).await;
    let key = server.create_key("server").await;
    let client = Client::start(sdk_options(&server.base, &key));
    ready(&client).await;
    assert!(client.bool_value("switch", &user("u1"), false));
    assert!(!client.bool_value("switch", &user("user_off"), true));

    let (status, _) = server.call(Method::PUT, "/v1/admin/flags/switch", Some(switch(false))).await;
    assert!(status.is_success());
    eventually("the disabled flag reaches the SDK", || async {
        let details = client.bool_details("switch", &user("u1"), true);
        (details.resolution == Resolution::Evaluated(Reason::Disabled)).then_some(())
    })
    .await;
    assert!(!client.bool_value("switch", &user("u1"), true));

    server
        .create(
            "flags",
            json!({"key": "theme", "type": "string", "enabled": true,
        "variants": {"dark": "dark", "light": "light"}, "off_variant": "light", "default": {"variant": "dark"}}),
        )
        .await;
    eventually("a new flag reaches the SDK", || async {
        (client.string_value("theme", &user("u1"), "none") == "dark").then_some(())
    })
    .await;
    let (status, _) = server.call(Method::DELETE, "/v1/admin/flags/theme", None).await;
    assert!(status.is_success());
    eventually("a deleted flag leaves the SDK", || async {
        let details = client.string_details("theme", &user("u1"), "none");
        (details.resolution == Resolution::Error(ErrorKind::FlagNotFound)).then_some(details.value)
    })
    .await;
}

#[tokio::test]
async fn a_killed_server_leaves_the_last_configuration_served() {
    let server = Server::start().await;
    server.create("flags", switch(true)).await;
    let key = server.create_key("server").await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("flags-cache.json");
    let client = Client::start(sdk_options(&server.base, &key).cache_file(&cache));
    ready(&client).await;
    let base = server.base.clone();
    server.kill().await;

    eventually("the SDK notices the server is gone", || async { (client.status() == Status::Stale).then_some(()) })
        .await;
    assert!(client.bool_value("switch", &user("u1"), false), "the last configuration still answers");
    assert!(!client.bool_value("switch", &user("user_off"), true));

    // A process that starts now, with the server still away, serves what the first one cached.
    let restarted = Client::start(sdk_options(&base, &key).cache_file(&cache));
    assert_eq!(restarted.status(), Status::Fallback(Source::Cache));
    assert!(restarted.bool_value("switch", &user("u1"), false));
    let details = restarted.bool_details("missing", &user("u1"), true);
    assert_eq!((details.value, details.resolution), (true, Resolution::Error(ErrorKind::FlagNotFound)));
    // As on the server, a blank user id is the error even for an unknown flag.
    let details = restarted.bool_details("missing", &user(" "), true);
    assert_eq!(details.resolution, Resolution::Error(ErrorKind::InvalidUserId));
}

fn write_bootstrap(path: &Path) {
    let flags = json!({"flags": [{"key": "switch", "enabled": false, "default": {"variant": "on"}}]});
    std::fs::write(path, flags.to_string()).unwrap();
}

#[tokio::test]
async fn starting_without_the_server_serves_the_bootstrap_or_defaults_then_the_server() {
    let address = free_address();
    let base = format!("http://{address}");
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.json");
    write_bootstrap(&bootstrap);
    // The key does not exist yet: the admin key works for the SDK routes too.
    let key = crate::harness::ADMIN_KEY;
    let with_file = Client::start(sdk_options(&base, key).bootstrap_file(&bootstrap));
    let without = Client::start(sdk_options(&base, key));

    assert_eq!(with_file.status(), Status::Fallback(Source::Bootstrap));
    let details = with_file.bool_details("switch", &user("u1"), true);
    assert_eq!((details.value, details.resolution), (false, Resolution::Evaluated(Reason::Disabled)));
    assert_eq!(without.status(), Status::NotReady);
    let details = without.bool_details("switch", &user("u1"), true);
    assert_eq!((details.value, details.resolution), (true, Resolution::Error(ErrorKind::NotReady)));

    let data = dir.path().join("data");
    let server = Server::start_in(&data, Options { listen: Some(address), ..Options::default() }).await;
    server.create("flags", switch(true)).await;
    for client in [&with_file, &without] {
        ready(client).await;
        eventually("the server's flag replaces the fallback", || async {
            client.bool_value("switch", &user("u1"), false).then_some(())
        })
        .await;
    }
    server.kill().await;
}

#[tokio::test]
async fn a_broken_bootstrap_file_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.yaml");
    std::fs::write(&bootstrap, "flags: [{key: 'Bad Key'}]").unwrap();
    let client = Client::start(sdk_options(&format!("http://{}", free_address()), "k").bootstrap_file(&bootstrap));
    assert_eq!(client.status(), Status::NotReady);
    assert_eq!(client.number_value("anything", &user("u1"), 2.5), 2.5);
}

/// The number of `event` events the pipeline has counted today and yesterday.
async fn counted(server: &Server, event: &str) -> f64 {
    let from = crate::events::enc(&(chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339());
    let query = format!("/v1/stats/events?event={}&window=day&from={from}", crate::events::enc(event));
    let (_, stats) = server.call(Method::GET, &query, None).await;
    stats["buckets"].as_array().unwrap().iter().map(|b| b["count"].as_f64().unwrap()).sum()
}

#[tokio::test]
async fn a_flag_that_serves_an_experiment_serves_the_servers_arm_and_exposes_once() {
    let server = Server::start().await;
    crate::experiments::running(
        &server,
        json!({"key": "theme_test", "variants": [
            {"key": "control", "weight": 50, "value": "classic"},
            {"key": "treatment", "weight": 50, "value": "bold"}]}),
    )
    .await;
    server
        .create(
            "flags",
            json!({"key": "theme", "type": "string", "enabled": true, "variants": {"off": "plain", "classic": "classic"},
                   "off_variant": "off", "default": {"experiment": "theme_test"}}),
        )
        .await;
    let key = server.create_key("server").await;
    let client = Client::start(sdk_options(&server.base, &key).assignment_freshness(Duration::from_millis(100)));
    ready(&client).await;

    // A getter never waits: the first answer is the off variant, saying the arm is unknown.
    let first = client.string_details("theme", &user("user_1"), "default");
    assert_eq!((first.value.as_str(), first.resolution), ("plain", Resolution::ArmUnknown));

    let users: Vec<String> = (0..20).map(|i| format!("user_{i}")).collect();
    for round in 0..3 {
        for id in &users {
            let details = eventually("the SDK knows the user's arm", || async {
                let details = client.string_details("theme", &user(id), "default");
                (details.resolution != Resolution::ArmUnknown).then_some(details)
            })
            .await;
            let body = json!({"user_id": id, "flag_keys": ["theme"]});
            let (_, answer) = Server::send(server.admin(Method::POST, "/v1/evaluate").json(&body)).await;
            let served = &answer["flags"]["theme"];
            assert_eq!(
                (json!(details.value), json!(details.variant), details.resolution),
                (served["value"].clone(), served["variant"].clone(), Resolution::Evaluated(Reason::Split)),
                "round {round}, {id}"
            );
        }
        // Past the freshness: the next round refreshes every arm (sticky, no new exposure).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eventually("one exposure per user reaches the pipeline", || async {
        (counted(&server, "exposure").await >= users.len() as f64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counted(&server, "exposure").await, users.len() as f64, "refreshes and repeats expose nobody again");

    // Paused, nobody is in the experiment: the SDK follows within the freshness.
    let (status, _) = crate::experiments::lifecycle(&server, "theme_test", "pause", None).await;
    assert!(status.is_success());
    eventually("the pause reaches the SDK", || async {
        let details = client.string_details("theme", &user("user_1"), "default");
        (details.resolution == Resolution::Evaluated(Reason::RolloutExcluded)).then_some(())
    })
    .await;
    assert_eq!(client.string_value("theme", &user("user_1"), "default"), "plain");
}

#[tokio::test]
async fn evaluation_counts_and_events_reach_the_server() {
    let server = Server::start().await;
    server.create("flags", json!({"key": "plain", "enabled": true, "default": {"variant": "on"}})).await;
    server
        .create(
            "flags",
            json!({"key": "tracked", "enabled": true, "default": {"variant": "off"}, "track_events": true}),
        )
        .await;
    let key = server.create_key("server").await;
    let client = Client::start(sdk_options(&server.base, &key).report_interval(Duration::from_millis(200)));
    ready(&client).await;
    for i in 0..30 {
        assert!(client.bool_value("plain", &user(&format!("user_{i}")), false));
    }
    for i in 0..5 {
        assert!(!client.bool_value("tracked", &user(&format!("user_{i}")), true));
    }
    let properties = json!({"currency": "EUR"}).as_object().unwrap().clone();
    for i in 0..3 {
        client.track("purchase", &format!("user_{i}"), Some(10.0), properties.clone());
    }
    eventually("the report is acknowledged", || async {
        let delivery = client.delivery();
        (delivery.events_sent == 8 && delivery.evaluations_reported == 35).then_some(())
    })
    .await;
    // The server adds the SDK's counts to its own and flushes them every 10 s.
    for (event, expected) in
        [("$evaluation:plain", 30.0), ("$evaluation:tracked", 5.0), ("tracked", 5.0), ("purchase", 3.0)]
    {
        eventually(&format!("{event} is counted"), || async {
            (counted(&server, event).await == expected).then_some(())
        })
        .await;
    }
    assert_eq!(client.delivery().events_dropped, 0);

    // Bad counts are refused whole, naming the field; nothing of such a request is counted.
    for (body, field) in [
        (
            json!({"counts": [{"flag": "plain", "variant": "on", "count": 2}, {"flag": "plain", "variant": "on", "count": 0}]}),
            "counts[1].count",
        ),
        (json!({"counts": [{"flag": "Bad Key", "variant": "on", "count": 1}]}), "counts[0].flag"),
        (json!({"counts": [{"flag": "plain", "variant": "", "count": 1}]}), "counts[0].variant"),
    ] {
        let request = server.with_key(Method::POST, "/v1/events/evaluation-counts", &key).json(&body);
        let (status, answer) = Server::send(request).await;
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str(), answer["error"]["field"].as_str()),
            (400, Some("invalid_count"), Some(field))
        );
    }
    let request =
        server.with_key(Method::POST, "/v1/events/evaluation-counts", &key).json(&json!({"counts": [], "x": 1}));
    assert_eq!(Server::send(request).await.0.as_u16(), 400);
    let client_key = server.create_key("client").await;
    let request =
        server.with_key(Method::POST, "/v1/events/evaluation-counts", &client_key).json(&json!({"counts": []}));
    assert_eq!(Server::send(request).await.0.as_u16(), 403);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(counted(&server, "$evaluation:plain").await, 30.0);
}

#[tokio::test]
async fn an_evaluation_count_report_sent_again_with_its_report_id_is_counted_once() {
    let server = Server::start().await;
    server.create("flags", json!({"key": "plain", "enabled": true, "default": {"variant": "on"}})).await;
    let key = server.create_key("server").await;
    let report = |id: &str, count: u64| {
        let body = json!({"report_id": id, "counts": [{"flag": "plain", "variant": "on", "count": count}]});
        Server::send(server.with_key(Method::POST, "/v1/events/evaluation-counts", &key).json(&body))
    };
    let (status, answer) = report("3f1c9a52-report-1", 7).await;
    assert_eq!((status.as_u16(), answer), (200, json!({"accepted": 1, "duplicate": false})));
    // The reply was lost, say, and the SDK sends the same report again: acknowledged, not counted.
    for _ in 0..2 {
        let (status, answer) = report("3f1c9a52-report-1", 7).await;
        assert_eq!((status.as_u16(), answer), (200, json!({"accepted": 0, "duplicate": true})));
    }
    // The same id with other counts is a sender's mistake, refused and not counted.
    let (status, answer) = report("3f1c9a52-report-1", 9).await;
    assert_eq!(
        (status.as_u16(), answer["error"]["code"].as_str(), answer["error"]["field"].as_str()),
        (409, Some("report_id_reused"), Some("report_id"))
    );
    for bad in [String::new(), "two words".to_string(), "x".repeat(129), "caf\u{e9}".to_string()] {
        let (status, answer) = report(&bad, 1).await;
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str(), answer["error"]["field"].as_str()),
            (400, Some("invalid_report_id"), Some("report_id")),
            "{bad:?}"
        );
    }
    // A later report is counted. Counts are added as each request is answered, so once this one
    // shows, everything sent before it does too: 7 + 1, not 7 + 7 + 7 + 1.
    let (status, _) = report("3f1c9a52-report-2", 1).await;
    assert_eq!(status.as_u16(), 200);
    let total = eventually("the reports are counted", || async {
        let total = counted(&server, "$evaluation:plain").await;
        (total >= 8.0).then_some(total)
    })
    .await;
    assert_eq!(total, 8.0);
}

#[tokio::test]
async fn events_wait_for_an_unreachable_server_up_to_the_capacity_then_drop_and_count() {
    let base = format!("http://{}", free_address());
    let client = Client::start(sdk_options(&base, "k").event_capacity(5).report_interval(Duration::from_secs(3600)));
    for i in 0..8 {
        client.track("purchase", &format!("user_{i}"), None, serde_json::Map::new());
    }
    client.flush().await;
    assert_eq!((client.delivery().events_sent, client.delivery().events_dropped), (0, 3));
}
