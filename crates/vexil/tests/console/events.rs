//! The events page: counters charted per event name, and the dead-letter queue, whose entries
//! are replayed (those valid now are ingested, the others stay) and purged through the page.

use crate::browser::{create_user, password, Browser};
use crate::harness::{eventually, Server};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn counters_are_charted_and_dead_letters_replayed_and_purged() {
    let server = Server::start().await;
    create_user(&server, "erin", "editor", Value::Null).await;
    // Just over the 24 hours ahead that ingest accepts: dead-lettered now, valid in a moment.
    let valid_from = chrono::Utc::now() + chrono::Duration::seconds(2);
    let soon_valid = (valid_from + chrono::Duration::hours(24)).to_rfc3339();
    let events = json!([{"event": "signup", "user_id": "u1"}, {"event": "signup", "user_id": "u2"},
                        {"event": "purchase", "user_id": "u1", "value": 12.5},
                        {"event": "signup", "user_id": "u3", "timestamp": soon_valid},
                        {"event": "no good", "user_id": "u4"}]);
    let (_, answer) = server.call(Method::POST, "/v1/events", Some(events)).await;
    assert_eq!(answer["accepted"], 3, "{answer}");
    eventually("the counters", || async {
        let (_, names) = server.call(Method::GET, "/v1/stats/event-names", None).await;
        (names["events"].as_array()?.len() == 2).then_some(())
    })
    .await;

    let Some(browser) = Browser::open(&server, "events").await else { return };
    browser.sign_in("erin", &password("erin")).await;
    browser.goto("/#/events").await;
    let caption = browser.wait_text("figure.event-chart[data-event=signup] figcaption", "2 event(s)").await;
    assert!(caption.contains("per hour"), "{caption}");
    let charts =
        browser.script("return [...document.querySelectorAll('figure.event-chart')].map((f) => f.dataset.event)").await;
    assert_eq!(charts, json!(["signup", "purchase"]), "the busiest first");
    browser.wait_text("#dlq-total", "2 event(s)").await;

    while chrono::Utc::now() <= valid_from {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    browser.click("#dlq-replay").await;
    browser.wait_text("#notices", "Replayed 1").await;
    let left = browser.wait_text("#dlq-total", "1 event(s)").await;
    assert!(left.contains("1 event(s)"), "{left}");
    let letters = browser.find(".dlq table").await.text().await.unwrap();
    assert!(letters.contains("invalid_event_name") && letters.contains("no good"), "{letters}");

    browser.click("#dlq-purge").await;
    browser.wait_text("dialog[open]", "all 1 dead letters").await;
    browser.confirm_dialog(None).await;
    browser.wait_text("#dlq-total", "0 event(s)").await;
    let (_, queue) = server.call(Method::GET, "/v1/admin/dlq", None).await;
    assert_eq!(queue["total"], 0);
    browser.finish().await;
}
