//! The flags pages: sign-in, the editor's form with the server's validation errors at their
//! fields, "evaluate as", the kill switch, and a flag changed elsewhere showing without a reload.

use crate::browser::{create_user, password, Browser};
use crate::harness::{checkout_flag, eventually, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn a_person_signs_in_creates_a_flag_fixing_what_the_server_refused_and_evaluates_it() {
    let server = Server::start().await;
    create_user(&server, "olivia", "owner", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    server.create("flags", json!({"key": "dark_mode", "enabled": false, "tags": ["ui"], "description": "Dark theme", "default": {"variant": "on"}})).await;
    let Some(browser) = Browser::open(&server, "flags_editor").await else { return };

    // A wrong password is refused on the form, and nothing else happens.
    browser.goto("/").await;
    browser.fill("#signin input[name=username]", "olivia").await;
    browser.fill("#signin input[name=password]", "not her password").await;
    browser.click("#signin button[type=submit]").await;
    browser.wait_shown("#signin .form-error").await;
    assert!(!browser.exists("#who").await);

    browser.sign_in("olivia", &password("olivia")).await;
    browser.wait_text("#flag-list", "new_checkout").await;
    assert!(browser.find("#flag-list").await.text().await.unwrap().contains("dark_mode"));

    // A flag whose key breaks the pattern: the server's error shows at the key field.
    browser.click("#new-flag").await;
    browser.fill("#flag-key", "Summer Sale").await;
    browser.fill("#flag-description", "The summer banner").await;
    browser.click("#add-rule").await;
    browser.fill(".rule .condition-attr", "country").await;
    browser.fill(".rule .condition-value", "DE").await;
    browser.click("#save-flag").await;
    browser.wait_shown("#flag-form [data-path=key] .field-error").await;
    assert_eq!(browser.find("#flag-key").await.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/summer_sale", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    // Fixed, it saves; the rule serves "on" to Germany, the rest get a 0 % rollout of "on".
    browser.fill("#flag-key", "summer_sale").await;
    browser.select(".rule .serve-variant", "on").await;
    browser.select("#default-serve .serve-kind", "split").await;
    browser.fill("#default-serve .serve-weight[data-variant=on]", "1").await;
    browser.fill("#default-serve .serve-rollout", "0").await;
    browser.click("#save-flag").await;
    browser.find("#eval-form").await;
    let (status, stored) = server.call(Method::GET, "/v1/admin/flags/summer_sale", None).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["rules"][0]["when"], json!({"attr": "country", "op": "eq", "value": "DE"}));
    assert_eq!(stored["description"], "The summer banner");

    // Evaluate as: a German user matches the rule; anyone else falls through to the rollout.
    browser.fill("#eval-user", "user_42").await;
    browser.fill("#eval-context", r#"{"country": "DE"}"#).await;
    browser.click("#eval-form button[type=submit]").await;
    browser.wait_text("#eval-reason", "TARGETING_MATCH").await;
    assert_eq!(browser.find("#eval-value").await.text().await.unwrap(), "true");
    assert_eq!(browser.find("#eval-rule").await.text().await.unwrap(), stored["rules"][0]["id"].as_str().unwrap());
    browser.fill("#eval-context", r#"{"country": "FR"}"#).await;
    browser.click("#eval-form button[type=submit]").await;
    browser.wait_text("#eval-value", "false").await;
    assert_ne!(browser.find("#eval-reason").await.text().await.unwrap(), "TARGETING_MATCH");
    browser.finish().await;
}

#[tokio::test]
async fn the_kill_switch_makes_the_evaluation_api_answer_disabled() {
    let server = Server::start().await;
    create_user(&server, "eddie", "editor", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    let client = server.create_key("client").await;
    let evaluate = || async {
        let request = server.with_key(Method::POST, "/v1/flags/new_checkout/evaluate", &client);
        Server::send(request.json(&json!({"user_id": "u1", "context": {"country": "US"}}))).await
    };
    assert_eq!(evaluate().await.1["reason"], "TARGETING_MATCH");
    let Some(browser) = Browser::open(&server, "kill_switch").await else { return };
    browser.sign_in("eddie", &password("eddie")).await;
    browser.click("[data-kill=new_checkout]").await;
    browser.confirm_dialog(Some("checkout errors in the logs")).await;
    browser.wait_text("#stops", "Emergency stop active").await;
    browser.wait_text("#flag-list", "Stopped").await;
    let (_, answer) = evaluate().await;
    assert_eq!((answer["reason"].as_str(), answer["value"].as_bool()), (Some("DISABLED"), Some(false)), "{answer}");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=emergency_stop", None).await;
    let record = &audit["records"][0];
    assert_eq!(
        (record["actor"].as_str(), record["reason"].as_str()),
        (Some("user:eddie"), Some("checkout errors in the logs"))
    );

    // Resume: the flag serves its rules again.
    browser.click("#resume-stops").await;
    browser.confirm_dialog(None).await;
    eventually("the stop is lifted", || async { (evaluate().await.1["reason"] == "TARGETING_MATCH").then_some(()) })
        .await;
    browser.finish().await;
}

#[tokio::test]
async fn a_flag_changed_through_the_api_shows_its_new_state_without_a_reload() {
    let server = Server::start().await;
    create_user(&server, "vera", "viewer", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    let Some(browser) = Browser::open(&server, "live_update").await else { return };
    browser.sign_in("vera", &password("vera")).await;
    let row = "#flag-list tbody tr:first-child";
    browser.wait_text(row, "On").await;
    // A mark in the page's memory: a reload would drop it.
    browser.script("window.notReloaded = true;").await;

    let mut flag = checkout_flag();
    flag["enabled"] = json!(false);
    let (status, body) = server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(flag)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    browser.wait_text(row, "Off").await;
    assert_eq!(browser.script("return window.notReloaded === true;").await, json!(true));
    browser.finish().await;
}
