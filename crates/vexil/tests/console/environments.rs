//! Environments: promotion from staging to production after reading the diff, and an editor's
//! change in a protected environment held as a change request until another person approves.

use crate::browser::{create_user, password, Browser};
use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn create_environment(server: &Server, key: &str, protected: bool) {
    let body = json!({"key": key, "name": key, "protected": protected});
    let (status, created) = server.call(Method::POST, "/v1/admin/environments", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

#[tokio::test]
async fn promoting_staging_to_production_shows_the_diff_before_applying_it() {
    let server = Server::start().await;
    create_environment(&server, "staging", false).await;
    create_user(&server, "olivia", "owner", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    let mut staged = checkout_flag();
    staged["default"]["rollout"] = json!(80);
    let (status, body) = server.call(Method::POST, "/v1/admin/flags?env=staging", Some(staged)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server
        .create(
            "flags",
            json!({"key": "dark_mode", "enabled": false, "tags": ["ui"], "description": "Dark theme",
                                  "default": {"variant": "on"}}),
        )
        .await;
    let Some(browser) = Browser::open(&server, "promotion").await else { return };
    browser.sign_in("olivia", &password("olivia")).await;
    // The list shows each flag in both environments: absent from staging, off, on.
    let row = browser.wait_text("#flag-list tbody tr:first-child", "dark_mode").await;
    assert!(row.contains("Off") && row.contains("absent"), "{row}");
    browser.wait_text("#flag-list tbody tr:nth-child(2)", "new_checkout").await;
    browser.screenshot("flags_list").await;

    browser.goto("/#/environments").await;
    browser.select("#promote-from", "staging").await;
    browser.select("#promote-to", "production").await;
    browser.fill("#promote-reason", "80 % looked fine in staging").await;
    browser.click("#promote-preview").await;
    let preview = browser.wait_text("#promotion-preview", "update flag new_checkout").await;
    // The diff names the old and the new rollout, and nothing changed yet.
    assert!(crate::browser::diff_line(&preview, '-', "\"rollout\": 50"), "{preview}");
    assert!(crate::browser::diff_line(&preview, '+', "\"rollout\": 80"), "{preview}");
    let (_, production) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(production["default"]["rollout"], 50);
    browser.script("document.getElementById('promote-form').scrollIntoView();").await;
    browser.screenshot("promotion_preview").await;

    browser.click("#promote-apply").await;
    browser.wait_text("#promotion-done", "Applied 1 change").await;
    let (_, production) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(production["default"]["rollout"], 80);
    browser.finish().await;
}

#[tokio::test]
async fn an_editors_change_in_a_protected_environment_waits_for_another_persons_approval() {
    let server = Server::start().await;
    create_environment(&server, "prod", true).await;
    create_user(&server, "eddie", "editor", json!(["prod"])).await;
    create_user(&server, "erin", "editor", Value::Null).await;
    let (status, body) = server.call(Method::POST, "/v1/admin/flags?env=prod", Some(checkout_flag())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let Some(browser) = Browser::open(&server, "change_request").await else { return };
    browser.sign_in("eddie", &password("eddie")).await;
    browser.select("#env-select", "prod").await;
    browser.goto("/#/flags/new_checkout").await;
    browser.find("#flag-form").await;
    browser.fill("#flag-description", "Checkout v2, reviewed").await;
    browser.fill("#change-reason", "ready for everyone").await;
    browser.click("#save-flag").await;

    // Held: the change request page lists it, the flag is unchanged, and its author may not
    // approve it.
    let card = browser.wait_text(".change-request", "update flag new_checkout").await;
    assert!(card.contains("user:eddie") && card.contains("ready for everyone"), "{card}");
    let (_, stored) = server.call(Method::GET, "/v1/admin/flags/new_checkout?env=prod", None).await;
    assert!(stored["description"].is_null() || stored["description"] == "", "{stored}");
    assert_eq!(
        browser.find(".change-request [data-approve]").await.attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    browser.sign_out().await;

    browser.sign_in("erin", &password("erin")).await;
    browser.select("#env-select", "prod").await;
    browser.goto("/#/changes").await;
    browser.click(".change-request [data-approve]").await;
    browser.confirm_dialog(Some("looks right")).await;
    browser.wait_text("#change-list", "No change requests here").await;
    let (_, stored) = server.call(Method::GET, "/v1/admin/flags/new_checkout?env=prod", None).await;
    assert_eq!(stored["description"], "Checkout v2, reviewed");
    let (_, requests) = server.call(Method::GET, "/v1/admin/change-requests?env=prod&status=approved", None).await;
    assert_eq!(requests["change_requests"][0]["decided_by"], "user:erin", "{requests}");
    browser.finish().await;
}
