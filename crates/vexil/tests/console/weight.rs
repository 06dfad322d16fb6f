//! The console's page weight and speed (BENCHMARKS.md), not a test: the first load of the
//! flags page with 1,000 flags in headless Chromium on loopback, with an empty cache, by the
//! browser's own navigation and resource timing (until the page marks `vexil:flags-shown`, the
//! list drawn), and the bytes its files took on the wire (compressed).
//!
//! `cargo test -p vexil --test console -- --ignored --nocapture console_page_weight`
//! (`scripts/bench/console.sh` runs it on a release build).

use crate::browser::{create_user, password, Browser};
use crate::harness::Server;
use fantoccini::cookies::Cookie;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const FLAGS: usize = 1000;

#[tokio::test]
#[ignore = "a benchmark: prints figures for BENCHMARKS.md"]
async fn console_page_weight() {
    let server = Server::start().await;
    create_user(&server, "olivia", "owner", Value::Null).await;
    let flags: Vec<Value> = (0..FLAGS)
        .map(|i| {
            json!({"key": format!("flag_{i:04}"), "description": format!("Flag number {i}"), "tags": [format!("team_{}", i % 7)],
                   "rules": [{"id": "beta", "when": {"attr": "plan", "op": "eq", "value": "beta"}, "serve": {"variant": "on"}}],
                   "default": {"split": {"on": 1}, "rollout": i % 100}})
        })
        .collect();
    let (status, report) = server.call(Method::POST, "/v1/admin/import", Some(json!({"flags": flags}))).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let Some(browser) = Browser::open(&server, "page_weight").await else { return };
    // Signed in outside the browser, so its cache is empty when it first loads the console: a
    // page of the server that is not the console takes the session cookie first.
    let signed_in = server
        .client
        .post(server.url("/v1/session"))
        .json(&json!({"username": "olivia", "password": password("olivia")}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let set_cookie = signed_in.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    browser.goto("/health").await;
    let mut cookie = Cookie::parse(set_cookie).unwrap();
    // chromedriver refuses a cookie without a domain.
    cookie.set_domain("127.0.0.1");
    browser.client.add_cookie(cookie).await.unwrap();
    // The browser's request for /health's icon (404) is not the console's.
    browser.forget_log().await;

    browser.goto("/#/flags").await;
    browser.wait_text("#flag-count", &format!("{FLAGS} of {FLAGS} flags")).await;
    let figures = browser
        .script(
            "const nav = performance.getEntriesByType('navigation')[0];
             const resources = performance.getEntriesByType('resource');
             const files = resources.filter((r) => r.name.includes('/console/'));
             const api = resources.filter((r) => r.name.includes('/v1/'));
             const sum = (list, field) => list.reduce((n, r) => n + r[field], 0);
             return {
               flags_shown_ms: performance.getEntriesByName('vexil:flags-shown')[0].startTime,
               dom_content_loaded_ms: nav.domContentLoadedEventEnd,
               load_ms: nav.loadEventEnd,
               page_bytes: nav.transferSize,
               files: files.length,
               file_bytes_transferred: sum(files, 'transferSize'),
               file_bytes_decoded: sum(files, 'decodedBodySize'),
               api_calls: api.length,
               api_bytes_transferred: sum(api, 'transferSize'),
             };",
        )
        .await;
    println!("console first load, {FLAGS} flags: {figures:#}");
    browser.finish().await;
}
