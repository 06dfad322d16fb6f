use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn ofrep_single_bulk_errors_and_etags() {
    let server = Server::start().await;
    let flag = server.create("flags", checkout_flag()).await;
    let single = |key: &str, body: &str| {
        Server::send(
            server
                .admin(Method::POST, &format!("/ofrep/v1/evaluate/flags/{key}"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    };
    let (status, result) = single("new_checkout", r#"{"context": {"targetingKey": "u1", "country": "US"}}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        result,
        json!({"key": "new_checkout", "value": true, "variant": "on", "reason": "TARGETING_MATCH",
        "metadata": {"reason": "TARGETING_MATCH", "rule_id": "us", "flag_id": flag["id"], "flag_version": 1}})
    );
    let failures = [
        ("ghost", r#"{"context": {"targetingKey": "u1"}}"#, StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
        ("new_checkout", r#"{"context": {"country": "US"}}"#, StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
        ("new_checkout", r#"{"context": {"targetingKey": " "}}"#, StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
        ("new_checkout", r#"{"context": "#, StatusCode::BAD_REQUEST, "PARSE_ERROR"),
        ("new_checkout", r#"{"context": [1]}"#, StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
    ];
    for (key, body, status, code) in failures {
        let (got, answer) = single(key, body).await;
        assert_eq!(
            (got, answer["errorCode"].as_str(), answer["key"].as_str()),
            (status, Some(code), Some(key)),
            "{body}"
        );
        assert!(answer["errorDetails"].is_string());
    }

    let bulk = |etag: Option<&str>, country: &str| {
        let mut request = server
            .admin(Method::POST, "/ofrep/v1/evaluate/flags")
            .json(&json!({"context": {"targetingKey": "u1", "country": country}}));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let first = bulk(None, "US").await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["flags"][0]["key"], "new_checkout");
    assert_eq!(bulk(Some(&etag), "US").await.unwrap().status(), StatusCode::NOT_MODIFIED);
    assert_eq!(bulk(Some(&etag), "FR").await.unwrap().status(), StatusCode::OK, "another context is another result");
    server.create("flags", json!({"key": "second", "enabled": true, "default": {"variant": "on"}})).await;
    let after_change = bulk(Some(&etag), "US").await.unwrap();
    assert_eq!(after_change.status(), StatusCode::OK, "a configuration change invalidates the ETag");
    let (status, error) =
        Server::send(server.admin(Method::POST, "/ofrep/v1/evaluate/flags").json(&json!({"context": {}}))).await;
    assert_eq!((status, error["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("TARGETING_KEY_MISSING")));
}
