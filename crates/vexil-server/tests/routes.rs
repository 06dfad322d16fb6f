//! The route table, the router and the OpenAPI document agree: every described route is
//! served (neither 404 nor 405), and every route is in the document with its method. The routes
//! browsers may call cross-origin are exactly the evaluation, assignment, OFREP and event-ingest
//! ones.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use std::collections::BTreeSet;
use tower::ServiceExt;
use vexil_server::config::{PartialConfig, ServerConfig};
use vexil_server::http::routes::{router, specs};

#[tokio::test]
async fn every_route_is_served_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let store = vexil_server::server::open_store(dir.path()).await.unwrap();
    let config =
        ServerConfig::validate(PartialConfig { data_dir: Some(dir.path().into()), ..Default::default() }).unwrap();
    let state = vexil_server::server::state(config, store, || {}).await.unwrap();
    let document = vexil_server::http::openapi::document(&specs(state.clone()));
    let app = router(state.clone());
    let specs = specs(state);
    let cors: BTreeSet<(String, &str)> =
        specs.iter().filter(|s| s.cors).map(|s| (s.method.to_string(), s.path)).collect();
    let browser_routes: BTreeSet<(String, &str)> = [
        (Method::POST, "/v1/flags/{key}/evaluate"),
        (Method::GET, "/v1/evaluate"),
        (Method::POST, "/v1/evaluate"),
        (Method::GET, "/v1/assign"),
        (Method::POST, "/v1/assign"),
        (Method::POST, "/ofrep/v1/evaluate/flags/{key}"),
        (Method::POST, "/ofrep/v1/evaluate/flags"),
        (Method::GET, "/ofrep/v1/event-stream"),
        (Method::POST, "/v1/events"),
    ]
    .into_iter()
    .map(|(method, path)| (method.to_string(), path))
    .collect();
    assert_eq!(cors, browser_routes, "the routes that allow CORS");
    assert!(specs.len() >= 25, "{} routes", specs.len());
    let mut public = 0;
    for spec in specs {
        let described = spec.path.replace("{*", "{");
        let operation = &document["paths"][described.as_str()][spec.method.as_str().to_ascii_lowercase()];
        assert!(operation["summary"].is_string(), "{} {} is not described", spec.method, spec.path);
        let uri = spec.path.replace("{key}", "some_key").replace("{id}", "some_id").replace("{*path}", "app.js");
        let request = Request::builder().method(spec.method.clone()).uri(&uri).body(Body::empty()).unwrap();
        let status = app.clone().oneshot(request).await.unwrap().status();
        // Reading or ending one's own session needs no key, but a session: without its cookie
        // the answer is 401 `unauthenticated`.
        let own_session = spec.path == "/v1/session" && spec.method != Method::POST;
        match spec.access {
            Some(_) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {uri} answered without a key", spec.method),
            None if own_session => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {uri} answered without a session", spec.method)
            }
            None => {
                public += 1;
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{} {uri} is public but asked for credentials: {status}",
                    spec.method
                );
            }
        }
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{} {uri}: {status}",
            spec.method
        );
    }
    assert!(public > 0, "the health and metrics routes are public");
}
