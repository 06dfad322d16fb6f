//! A viewer sees every page read-only: no control that writes, and the API refuses a write sent
//! with the viewer's session anyway.

use crate::browser::{create_user, password, Browser};
use crate::harness::{checkout_flag, Server};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn a_viewer_has_no_write_controls_and_the_api_refuses_their_writes() {
    let server = Server::start().await;
    create_user(&server, "vera", "viewer", Value::Null).await;
    server.create("flags", checkout_flag()).await;
    let Some(browser) = Browser::open(&server, "viewer").await else { return };
    browser.sign_in("vera", &password("vera")).await;
    browser.wait_text("#flag-list", "new_checkout").await;
    assert!(!browser.exists("#new-flag").await, "no New flag control");
    let kill = browser.find("[data-kill=new_checkout]").await;
    assert_eq!(kill.attr("disabled").await.unwrap().as_deref(), Some("true"));
    // Owners' pages are not offered.
    let nav = browser.find("#nav").await.text().await.unwrap();
    assert!(nav.contains("Flags") && !nav.contains("API keys") && !nav.contains("People"), "{nav}");

    browser.goto("/#/flags/new_checkout").await;
    browser.wait_text("#read-only", "Read only").await;
    assert!(!browser.exists("#save-flag").await);
    assert_eq!(browser.find("#flag-description").await.attr("disabled").await.unwrap().as_deref(), Some("true"));
    // Evaluate as is a read: it works for a viewer.
    browser.click("#eval-form button[type=submit]").await;
    browser.wait_shown("#eval-reason").await;

    browser.goto("/#/segments").await;
    browser.find("#segment-list").await;
    assert!(!browser.exists("#new-segment").await);

    // The session's own write, CSRF token included, is refused for the role.
    let refused = browser
        .script_async(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/session').then((r) => r.json()).then((session) =>
               fetch('/v1/admin/flags', {method: 'POST', headers: {'Content-Type': 'application/json',
                 'X-CSRF-Token': session.csrf_token}, body: JSON.stringify({key: 'sneaky'})}))
             .then(async (r) => done({status: r.status, body: await r.json()}));",
        )
        .await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["body"]["error"]["code"], "forbidden", "{refused}");
    let (status, _) = server.call(Method::GET, "/v1/admin/flags/sneaky", None).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    browser.finish().await;
}
