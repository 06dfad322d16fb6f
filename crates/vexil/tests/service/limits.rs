//! Bounds on every input (issue: unbounded inputs were stored, then silently lost or made
//! evaluation slow): user ids on every route, context and attribute sizes, the sizes and
//! counts inside admin documents, and control characters in text read back by people.

use crate::experiments::{experiment, running};
use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Sends `body` (or none) and returns the status and body.
async fn send(server: &Server, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    server.call(method, path, body).await
}

#[tokio::test]
async fn user_ids_longer_than_256_characters_are_refused_on_every_route() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    running(&server, experiment("checkout_redesign")).await;
    // 256 two-byte characters are within the bound (it counts characters, not bytes); one more
    // is not, and neither is the 100,000-character id of the report.
    let at_limit = "é".repeat(256);
    let over = ["é".repeat(257), "u".repeat(100_000)];
    let requests = |user: &str| {
        let query_user = if user.len() > 2_000 { &user[..2_000] } else { user };
        vec![
            (Method::POST, "/v1/flags/new_checkout/evaluate".to_string(), Some(json!({"user_id": user}))),
            (Method::POST, "/v1/evaluate".to_string(), Some(json!({"user_id": user}))),
            (Method::GET, format!("/v1/evaluate?flag_key=new_checkout&user_id={query_user}"), None),
            (
                Method::POST,
                "/v1/assign".to_string(),
                Some(json!({"experiment_key": "checkout_redesign", "user_id": user})),
            ),
            (Method::GET, format!("/v1/assign?experiment_key=checkout_redesign&user_id={query_user}"), None),
        ]
    };
    for (method, path, body) in requests(&at_limit) {
        let (status, answer) = send(&server, method, &path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    for user in &over {
        for (method, path, body) in requests(user) {
            let (status, answer) = send(&server, method, &path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
            assert_eq!(
                (answer["error"]["code"].as_str(), answer["error"]["field"].as_str()),
                (Some("invalid_user_id"), Some("user_id")),
                "{path}: {answer}"
            );
        }
        let ofrep = json!({"context": {"targetingKey": user}});
        let (status, answer) = send(&server, Method::POST, "/ofrep/v1/evaluate/flags/new_checkout", Some(ofrep)).await;
        assert_eq!(
            (status, answer["errorCode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_CONTEXT")),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn contexts_past_their_bounds_are_refused_naming_the_attribute() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let long = "x".repeat(1_000_000);
    let many: serde_json::Map<String, Value> = (0..300).map(|i| (format!("a{i}"), json!(i))).collect();
    for (context, field) in [
        (json!({"country": long}), "context.country"),
        (json!({"devices": ["ok", long]}), "context.devices[1]"),
        (Value::Object(many), "context"),
    ] {
        let body = json!({"user_id": "user_1", "context": context});
        let (status, answer) = send(&server, Method::POST, "/v1/flags/new_checkout/evaluate", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(
            (answer["error"]["code"].as_str(), answer["error"]["field"].as_str()),
            (Some("invalid_context"), Some(field))
        );
        let ofrep = json!({"context": {"targetingKey": "user_1", "blob": long}});
        let (status, answer) = send(&server, Method::POST, "/ofrep/v1/evaluate/flags/new_checkout", Some(ofrep)).await;
        assert_eq!(
            (status, answer["errorCode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_CONTEXT")),
            "{answer}"
        );
    }
    let fine = json!({"user_id": "user_1", "context": {"country": "US", "agent": "a".repeat(4096)}});
    assert_eq!(send(&server, Method::POST, "/v1/flags/new_checkout/evaluate", Some(fine)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn documents_reasons_and_timestamps_past_their_bounds_are_refused_and_nothing_is_stored() {
    let server = Server::start().await;
    let flag = |change: Value| {
        let mut flag = checkout_flag();
        flag.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        flag
    };
    let many_tags: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
    let many_rules: Vec<Value> = (0..2_000)
        .map(|i| json!({"id": format!("r{i}"), "when": {"attr": "email", "op": "matches", "value": "^a.*z$"}, "serve": {"variant": "on"}}))
        .collect();
    for (body, field) in [
        (flag(json!({"tags": ["x".repeat(1_000_000)]})), "tags[0]"),
        (flag(json!({"tags": many_tags})), "tags"),
        (flag(json!({"description": format!("bell{}", '\u{7}')})), "description"),
        (
            flag(json!({"variants": {"x".repeat(1_000_000): true, "off": false}, "default": {"variant": "off"}})),
            "variants",
        ),
        (flag(json!({"rules": many_rules})), "rules"),
        (
            flag(
                json!({"rules": [{"id": "r".repeat(10_000), "when": {"attr": "a", "op": "eq", "value": "b"}, "serve": {"variant": "on"}}]}),
            ),
            "rules[0].id",
        ),
    ] {
        let (status, answer) = send(&server, Method::POST, "/v1/admin/flags", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let found = answer["error"]["field"].as_str().unwrap();
        assert!(found.starts_with(field), "{field}: {answer}");
    }
    let (_, listed) = send(&server, Method::GET, "/v1/admin/flags", None).await;
    assert_eq!(listed["flags"], json!([]), "nothing was stored");

    server.create("flags", checkout_flag()).await;
    let reason = format!("{}\u{7}", "r".repeat(60_000));
    let (status, answer) =
        send(&server, Method::POST, "/v1/admin/emergency-stop", Some(json!({"scope": "all", "reason": reason}))).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")), "{answer}");
    let (status, answer) =
        send(&server, Method::DELETE, "/v1/admin/flags/new_checkout?reason=ring%07the%07bell", None).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")), "{answer}");
    let (_, audit) = send(&server, Method::GET, "/v1/admin/audit", None).await;
    assert!(audit["records"].as_array().unwrap().iter().all(|r| r["action"] == "create"), "{audit}");

    let event = json!([{"event": "signup", "user_id": "u1", "timestamp": "0000-01-01T00:00:00Z"}]);
    let (status, answer) = send(&server, Method::POST, "/v1/events", Some(event)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["rejected"][0]["error"]["code"], "invalid_timestamp", "{answer}");
}
