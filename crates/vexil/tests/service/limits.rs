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
