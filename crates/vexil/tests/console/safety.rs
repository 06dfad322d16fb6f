//! The safety page: an emergency stop made through the page, whose confirmation names exactly
//! the flags and the experiments it will stop, takes effect on the evaluation API; the resume
//! undoes it; the audit page lists both as the person's.

use crate::browser::{create_user, password, Browser};
use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn reason_of(server: &Server, flag: &str) -> Value {
    let body = json!({"user_id": "user_1", "context": {"country": "US"}});
    let (status, result) = server.call(Method::POST, &format!("/v1/flags/{flag}/evaluate"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result["reason"].clone()
}

#[tokio::test]
async fn an_emergency_stop_names_what_stops_takes_effect_and_resumes() {
    let server = Server::start().await;
    create_user(&server, "erin", "editor", Value::Null).await;
    server
        .create(
            "experiments",
            json!({"key": "checkout_test",
            "variants": [{"key": "control", "value": false}, {"key": "treatment", "value": true}]}),
        )
        .await;
    server.create("flags", checkout_flag()).await;
    server
        .create(
            "flags",
            json!({"key": "checkout_banner", "enabled": true, "tags": ["payments"],
                                "default": {"experiment": "checkout_test"}}),
        )
        .await;
    server.create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"variant": "on"}})).await;
    let Some(browser) = Browser::open(&server, "emergency_stop").await else { return };
    browser.sign_in("erin", &password("erin")).await;

    browser.goto("/#/safety").await;
    browser.find("#no-stops").await;
    browser.select("#stop-scope", "tag").await;
    browser.fill("#stop-tag", "payments").await;
    browser.fill("#stop-reason", "checkout incident").await;
    browser.click("#stop-submit").await;
    let preview = browser.wait_text("dialog[open] #stop-preview", "new_checkout").await;
    assert!(preview.contains("These 2 flag(s) will evaluate as off"), "{preview}");
    assert!(preview.contains("checkout_banner") && preview.contains("checkout_test"), "{preview}");
    assert!(!preview.contains("dark_mode"), "only what the stop covers: {preview}");
    browser.confirm_dialog(None).await;

    let stopped = browser.wait_text("#stopped-flags", "new_checkout").await;
    assert!(stopped.contains("checkout_banner") && !stopped.contains("dark_mode"), "{stopped}");
    assert_eq!(reason_of(&server, "new_checkout").await, "DISABLED");
    assert_eq!(reason_of(&server, "dark_mode").await, "STATIC");

    browser.click("#resume").await;
    let resuming = browser.wait_text("dialog[open]", "new_checkout").await;
    assert!(resuming.contains("checkout_banner"), "{resuming}");
    browser.confirm_dialog(None).await;
    browser.find("#no-stops").await;
    assert_eq!(reason_of(&server, "new_checkout").await, "TARGETING_MATCH");

    browser.goto("/#/audit").await;
    browser.select("#audit-entity", "emergency_stop").await;
    browser.click("#audit-filters button[type=submit]").await;
    let log = browser.wait_text("#audit-list", "delete emergency_stop").await;
    assert!(log.contains("create emergency_stop") && log.contains("checkout incident"), "{log}");
    assert_eq!(log.matches("user:erin").count(), 2, "both made by the person: {log}");
    browser.finish().await;
}
