//! The audit page shows who changed what and why, with each change's before and after.

use crate::browser::{create_user, password, Browser};
use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn the_audit_page_shows_changes_with_their_diffs_and_filters_them() {
    let server = Server::start().await;
    create_user(&server, "olivia", "owner", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    server.create("flags", json!({"key": "dark_mode", "default": {"variant": "on"}})).await;
    let mut flag = checkout_flag();
    flag["default"]["rollout"] = json!(75);
    let (status, body) = server.call(Method::PUT, "/v1/admin/flags/new_checkout?reason=ramp%20up", Some(flag)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let Some(browser) = Browser::open(&server, "audit").await else { return };
    browser.sign_in("olivia", &password("olivia")).await;

    browser.goto("/#/audit").await;
    let log = browser.wait_text("#audit-list", "ramp up").await;
    assert!(log.contains("dark_mode") && log.contains("new_checkout"), "{log}");

    browser.fill("#audit-key", "new_checkout").await;
    browser.click("#audit-filters button[type=submit]").await;
    crate::harness::eventually("the filter applies", || async {
        let text = browser.find("#audit-list").await.text().await.ok()?;
        (!text.contains("dark_mode")).then_some(())
    })
    .await;
    // The newest record first: its diff shows the rollout going from 50 to 75.
    browser.click("#audit-list tbody tr:first-child summary").await;
    let diff = browser.wait_text("#audit-list tbody tr:first-child .diff", "75").await;
    assert!(crate::browser::diff_line(&diff, '-', "\"rollout\": 50"), "{diff}");
    assert!(crate::browser::diff_line(&diff, '+', "\"rollout\": 75"), "{diff}");
    browser.finish().await;
}
