//! The cross-cutting behaviour of SPEC 4: error shapes of every 4xx, headers, CORS, metrics
//! and the OpenAPI document.

use crate::harness::{checkout_flag, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn every_client_error_has_the_error_shape() {
    let server =
        Server::start_with(Options { args: vec!["--max-body-bytes".into(), "2048".into()], ..Options::default() })
            .await;
    server.create("flags", checkout_flag()).await;
    let evaluate = || server.admin(Method::POST, "/v1/flags/new_checkout/evaluate");
    let cases = [
        (evaluate().header("content-type", "application/json").body("{"), StatusCode::BAD_REQUEST, "invalid_json"),
        (evaluate().body("{}"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (
            evaluate().json(&json!({"user_id": "u", "context": {"x": "y".repeat(4096)}})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (server.admin(Method::GET, "/v1/nothing"), StatusCode::NOT_FOUND, "not_found"),
        (
            server.admin(Method::PATCH, "/v1/admin/flags/new_checkout"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (server.client.get(server.url("/v1/admin/flags")), StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            server.admin(Method::POST, "/v1/admin/keys").json(&json!({"kind": "root", "name": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (server.admin(Method::GET, "/v1/admin/audit?entity=flags"), StatusCode::BAD_REQUEST, "invalid_query"),
        (
            server.admin(Method::PUT, "/v1/admin/flags/new_checkout").header("If-Match", "abc").json(&checkout_flag()),
            StatusCode::BAD_REQUEST,
            "invalid_header",
        ),
        (evaluate().json(&json!({"context": {}})), StatusCode::BAD_REQUEST, "invalid_user_id"),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert!(response.headers().contains_key("x-request-id"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn request_ids_cors_metrics_and_openapi() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let response = server.client.get(server.url("/health")).header("x-request-id", "trace-me-1").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-1");

    let preflight = |path: &str| {
        server
            .client
            .request(Method::OPTIONS, server.url(path))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let allowed = preflight("/v1/flags/new_checkout/evaluate").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "*");
    let admin = preflight("/v1/admin/flags").await.unwrap();
    assert!(!admin.headers().contains_key("access-control-allow-origin"), "the admin API is not for browsers");

    let (status, _) = Server::send(
        server
            .admin(Method::POST, "/v1/flags/new_checkout/evaluate")
            .json(&json!({"user_id": "u1", "context": {"country": "US"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "vexil_evaluations_total{environment=\"production\",flag=\"new_checkout\",reason=\"TARGETING_MATCH\"} 1",
        "vexil_http_requests_total{method=\"POST\",route=\"/v1/flags/{key}/evaluate\",status=\"200\"} 1",
        "vexil_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/flags/{key}/evaluate\"",
        "vexil_config_snapshot_hit_ratio",
        "vexil_config_snapshot_age_seconds",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }

    let (status, openapi) = Server::send(server.client.get(server.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    for (path, method) in [
        ("/v1/flags/{key}/evaluate", "post"),
        ("/ofrep/v1/evaluate/flags", "post"),
        ("/v1/admin/flags/{key}", "put"),
        ("/v1/sdk/stream", "get"),
    ] {
        assert!(openapi["paths"][path][method].is_object(), "{method} {path}");
    }
}

#[tokio::test]
async fn a_configured_metrics_key_protects_metrics() {
    let metrics_key = "vx_metrics_scraper_0123456789";
    let server = Server::start_with(Options {
        env: vec![("VEXIL_METRICS_KEY".into(), metrics_key.into())],
        ..Options::default()
    })
    .await;
    server.create("flags", checkout_flag()).await;
    for request in [
        server.client.get(server.url("/metrics")),
        server.client.get(server.url("/metrics")).bearer_auth("vx_metrics_wrong_guess_000000"),
        server.admin(Method::GET, "/metrics"),
    ] {
        let (status, body) = Server::send(request).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{body}"
        );
    }
    let response = server.client.get(server.url("/metrics")).bearer_auth(metrics_key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("vexil_config_flags 1"));
    assert_eq!(server.client.get(server.url("/health")).send().await.unwrap().status(), StatusCode::OK);
}
