//! The owners' pages: an API key created on the page shows its secret once and works; a person
//! created on the page signs in with the role given there.

use crate::browser::{create_user, password, Browser};
use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn an_owner_creates_a_key_and_a_person_on_their_pages() {
    let server = Server::start().await;
    create_user(&server, "olivia", "owner", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    let Some(browser) = Browser::open(&server, "owners").await else { return };
    browser.sign_in("olivia", &password("olivia")).await;

    browser.goto("/#/keys").await;
    browser.click("#new-key").await;
    browser.select("#key-kind", "client").await;
    browser.fill("#key-name", "web shop").await;
    browser.confirm_dialog(None).await;
    let secret = browser.wait_shown("#new-secret .secret").await;
    browser.wait_text("#key-list", "web shop").await;
    let request = server.with_key(Method::POST, "/v1/flags/new_checkout/evaluate", secret.trim());
    let (status, answer) = Server::send(request.json(&json!({"user_id": "u1", "context": {"country": "US"}}))).await;
    assert_eq!((status, answer["value"].as_bool()), (StatusCode::OK, Some(true)), "{answer}");

    browser.goto("/#/users").await;
    browser.click("#new-user").await;
    browser.fill("#user-name", "ed").await;
    browser.fill("#user-password", &password("ed")).await;
    browser.select("#user-role", "editor").await;
    browser.confirm_dialog(None).await;
    browser.wait_text("#user-list", "editor").await;
    let (_, users) = server.call(Method::GET, "/v1/admin/users", None).await;
    let ed = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "ed").cloned();
    assert_eq!(ed.map(|u| (u["role"].clone(), u["environments"].clone())), Some((json!("editor"), Value::Null)));

    browser.sign_out().await;
    browser.sign_in("ed", &password("ed")).await;
    browser.wait_text("#who", "ed · editor").await;
    browser.finish().await;
}
