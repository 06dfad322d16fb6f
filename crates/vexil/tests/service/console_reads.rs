//! The reads the web console's pages need beyond the rest of the API, over HTTP: the event
//! names an environment was sent (each environment sees only its own), every rollout plan at
//! once, and the preview of an emergency stop that names what it would cover without storing
//! anything.

use crate::harness::{checkout_flag, eventually, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn names(answer: &Value) -> Vec<(String, u64)> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["count"].as_u64().unwrap()))
        .collect()
}

#[tokio::test]
async fn event_names_list_what_each_environment_was_sent() {
    let server = Server::start().await;
    server.create("environments", json!({"key": "staging", "name": "Staging"})).await;
    server.create("flags", checkout_flag()).await;
    // An evaluation is counted under $evaluation:new_checkout, which is the flag's, not an event.
    let evaluation = json!({"user_id": "u1", "context": {"country": "US"}});
    server.call(Method::POST, "/v1/flags/new_checkout/evaluate", Some(evaluation)).await;
    let sent = json!([{"event": "purchase", "user_id": "u1", "value": 10},
                      {"event": "purchase", "user_id": "u2", "value": 5},
                      {"event": "signup", "user_id": "u3"}]);
    let (status, body) = server.call(Method::POST, "/v1/events", Some(sent)).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(3)), "{body}");
    let (status, body) =
        server.call(Method::POST, "/v1/events?env=staging", Some(json!([{"event": "refund", "user_id": "u9"}]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let production = eventually("production's counters", || async {
        let (_, answer) = server.call(Method::GET, "/v1/stats/event-names", None).await;
        (names(&answer).len() == 2).then_some(answer)
    })
    .await;
    assert_eq!(names(&production), [("purchase".to_owned(), 2), ("signup".to_owned(), 1)]);
    assert_eq!(production["events"][0]["sum"], 15.0);
    let staging = eventually("staging's counters", || async {
        let (_, answer) = server.call(Method::GET, "/v1/stats/event-names?env=staging", None).await;
        (!names(&answer).is_empty()).then_some(answer)
    })
    .await;
    assert_eq!(names(&staging), [("refund".to_owned(), 1)], "each environment sees only its own names");

    let (status, body) =
        server.call(Method::GET, "/v1/stats/event-names?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", None).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")), "{body}");
    let (status, body) = server.call(Method::GET, "/v1/stats/event-names?from=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn rollout_plans_are_listed_with_their_state_and_step() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    server
        .create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"split": {"on": 1}, "rollout": 0}}))
        .await;
    let (_, empty) = server.call(Method::GET, "/v1/admin/rollout-plans", None).await;
    assert_eq!(empty, json!({"environment": "production", "plans": []}));

    let steps = json!({"steps": [{"percent": 10, "hold": "1h"}, {"percent": 100, "hold": 0}]});
    for flag in ["new_checkout", "dark_mode"] {
        let (status, body) =
            server.call(Method::PUT, &format!("/v1/admin/flags/{flag}/rollout-plan"), Some(steps.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/start", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, list) = server.call(Method::GET, "/v1/admin/rollout-plans", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let plans = list["plans"].as_array().unwrap();
    let summary: Vec<(&str, &str)> =
        plans.iter().map(|p| (p["flag"].as_str().unwrap(), p["state"].as_str().unwrap())).collect();
    assert_eq!(summary, [("dark_mode", "ready"), ("new_checkout", "running")]);
    assert_eq!(plans[1]["step"], 0);
    let (_, one) = server.call(Method::GET, "/v1/admin/flags/new_checkout/rollout-plan", None).await;
    assert_eq!(plans[1]["steps"], one["steps"], "each entry is the plan as its own route shows it");
}

#[tokio::test]
async fn a_stop_preview_names_the_flags_and_experiments_without_stopping_them() {
    let server = Server::start().await;
    let experiment = json!({"key": "checkout_test",
        "variants": [{"key": "control", "value": false}, {"key": "treatment", "value": true}]});
    server.create("experiments", experiment).await;
    server.create("flags", checkout_flag()).await;
    let served = json!({"key": "checkout_banner", "enabled": true, "tags": ["payments"],
        "default": {"experiment": "checkout_test"}});
    server.create("flags", served).await;
    server.create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"variant": "on"}})).await;

    let (status, preview) =
        server.call(Method::GET, "/v1/admin/emergency-stop/preview?scope=tag&tag=payments", None).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        preview,
        json!({"scope": "tag", "flags": ["checkout_banner", "new_checkout"], "experiments": ["checkout_test"]})
    );
    let (_, all) = server.call(Method::GET, "/v1/admin/emergency-stop/preview?scope=all", None).await;
    assert_eq!(all["flags"], json!(["checkout_banner", "dark_mode", "new_checkout"]));
    let (_, listed) =
        server.call(Method::GET, "/v1/admin/emergency-stop/preview?scope=flags&flags=dark_mode", None).await;
    assert_eq!((listed["flags"].clone(), listed["experiments"].clone()), (json!(["dark_mode"]), json!([])));

    let (_, active) = server.call(Method::GET, "/v1/admin/emergency-stop", None).await;
    assert_eq!(active["stops"], json!([]), "a preview stores nothing");
    let (_, evaluated) =
        server.call(Method::POST, "/v1/flags/dark_mode/evaluate", Some(json!({"user_id": "u1"}))).await;
    assert_eq!(evaluated["reason"], "STATIC");

    for (query, field) in
        [("scope=flags&flags=dark_mode,ghost", "flags[1]"), ("scope=tag", "tag"), ("scope=all&tag=x", "scope")]
    {
        let (status, body) = server.call(Method::GET, &format!("/v1/admin/emergency-stop/preview?{query}"), None).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{query}: {body}"
        );
    }
    let (status, body) = server.call(Method::GET, "/v1/admin/emergency-stop/preview?scope=everything", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
