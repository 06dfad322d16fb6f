//! What the web console needs from the service besides the admin API: its files, served with
//! their tags and policy; "evaluate as", which counts nothing; and the stream of revisions.
//! The console itself is tested in a browser (tests/console).

use crate::harness::{checkout_flag, Server};
use crate::sdk::next_events;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_console_is_served_with_its_tags_and_a_same_origin_policy() {
    let server = Server::start().await;
    let page = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    // The route's own caching, not the API's no-store.
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page.text().await.unwrap().contains("/console/app.js"));

    let script =
        server.client.get(server.url("/console/app.js")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript");
    // reqwest here does not decode gzip: the body is the compressed file.
    assert_eq!(script.headers()["content-encoding"], "gzip");
    let etag = script.headers()["etag"].clone();
    let again = server.client.get(server.url("/console/app.js")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    let (status, body) = Server::send(server.client.get(server.url("/console/secrets.txt"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn evaluate_as_answers_like_evaluation_and_counts_nothing() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let viewer = {
        let body = json!({"kind": "admin", "name": "viewer", "role": "viewer"});
        let (status, created) = server.call(Method::POST, "/v1/admin/keys", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["key"].as_str().unwrap().to_string()
    };
    let preview = |query: &'static [(&'static str, &'static str)]| {
        let request = server.with_key(Method::GET, "/v1/admin/flags/new_checkout/evaluation", &viewer).query(query);
        Server::send(request)
    };
    let (status, answer) = preview(&[("user_id", "u1"), ("context", r#"{"country": "US"}"#)]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["value"].as_bool(), answer["variant"].as_str()), (Some(true), Some("on")));
    assert_eq!((answer["reason"].as_str(), answer["rule_id"].as_str()), (Some("TARGETING_MATCH"), Some("us")));

    let (status, answer) = preview(&[("user_id", "u1"), ("context", "[1, 2]")]).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("context")), "{answer}");
    let (status, answer) = preview(&[("user_id", "u1"), ("context", "{not json")]).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_context")),
        "{answer}"
    );
    let (status, answer) = preview(&[("context", "{}")]).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("user_id")), "{answer}");

    // The evaluation route counts what it evaluates; evaluate as counted nothing.
    let metrics = server.metrics().await;
    assert!(!metrics.contains("vexil_evaluations_total{environment=\"production\",flag=\"new_checkout\""), "{metrics}");
    let client = server.create_key("client").await;
    let request = server.with_key(Method::POST, "/v1/flags/new_checkout/evaluate", &client);
    let (status, _) = Server::send(request.json(&json!({"user_id": "u1", "context": {"country": "US"}}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(server.metrics().await.contains("flag=\"new_checkout\",reason=\"TARGETING_MATCH\"} 1"));
}

#[tokio::test]
async fn the_admin_stream_names_each_new_revision_of_its_environment() {
    let server = Server::start().await;
    let (status, created) =
        server.call(Method::POST, "/v1/admin/environments", Some(json!({"key": "staging", "name": "Staging"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let response = server.admin(Method::GET, "/v1/admin/stream?env=production").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let first = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(first[0].0, "revision");
    let start = first[0].1["revision"].as_u64().unwrap();

    server.create("flags", checkout_flag()).await;
    let next = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(next[0].0, "revision");
    assert!(next[0].1["revision"].as_u64().unwrap() > start, "{next:?}");

    // A reconnecting client that has the current revision gets no message until a change.
    let current = next[0].1["revision"].as_u64().unwrap().to_string();
    let (status, body) = Server::send(server.admin(Method::GET, "/v1/admin/stream").header("last-event-id", "x")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Last-Event-ID")));
    let response = server.admin(Method::GET, "/v1/admin/stream").header("last-event-id", current).send().await.unwrap();
    let mut resumed = response.bytes_stream();
    let mut resumed_buffer = String::new();
    let mut flag = checkout_flag();
    flag["enabled"] = json!(false);
    let (status, _) = server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(flag)).await;
    assert_eq!(status, StatusCode::OK);
    let after = next_events(&mut resumed, &mut resumed_buffer, 1).await;
    assert!(after[0].1["revision"].as_u64().unwrap() > next[0].1["revision"].as_u64().unwrap(), "{after:?}");
}
