//! The experiment admin API: validation with field paths, the lifecycle and its 409s, the
//! rules for changing a running experiment, audit records, and flags that serve experiments.

use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A two-arm 50/50 experiment in draft.
pub fn experiment(key: &str) -> Value {
    json!({"key": key, "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}]})
}

/// `POST /v1/admin/experiments/{key}/{action}` with an optional body.
pub async fn lifecycle(server: &Server, key: &str, action: &str, body: Option<Value>) -> (StatusCode, Value) {
    server.call(Method::POST, &format!("/v1/admin/experiments/{key}/{action}"), body).await
}

/// Creates and starts an experiment; returns the stored, running experiment.
pub async fn running(server: &Server, body: Value) -> Value {
    let key = body["key"].as_str().unwrap().to_string();
    server.create("experiments", body).await;
    let (status, started) = lifecycle(server, &key, "start", None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    started
}

async fn replace(server: &Server, key: &str, body: Value) -> (StatusCode, Value) {
    server.call(Method::PUT, &format!("/v1/admin/experiments/{key}"), Some(body)).await
}

fn error(answer: &(StatusCode, Value)) -> (StatusCode, &str, &str) {
    let (status, body) = answer;
    (*status, body["error"]["code"].as_str().unwrap_or(""), body["error"]["field"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn crud_lifecycle_and_running_rules() {
    let server = Server::start().await;
    let created = server.create("experiments", experiment("checkout_redesign")).await;
    assert_eq!((created["status"].as_str(), created["version"].as_u64()), (Some("draft"), Some(1)));
    assert_eq!(created["salt"], "checkout_redesign", "defaults are filled in");
    assert!(created["id"].is_string());

    let mut bad = experiment("bad");
    bad["variants"][1]["weight"] = json!(-1);
    bad["targeting"] = json!({"segment": "nobody"});
    bad["colour"] = json!("red");
    let answer = server.call(Method::POST, "/v1/admin/experiments", Some(bad)).await;
    let paths: Vec<&str> = answer.1["errors"].as_array().unwrap().iter().filter_map(|e| e["path"].as_str()).collect();
    assert_eq!(error(&answer).1, "validation_failed");
    assert!(paths.contains(&"variants[1].weight") && paths.contains(&"colour"), "{paths:?}");
    let mut unknown_segment = experiment("bad");
    unknown_segment["targeting"] = json!({"segment": "nobody"});
    let answer = server.call(Method::POST, "/v1/admin/experiments", Some(unknown_segment)).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, "validation_failed", "targeting.segment"));
    let mut started = experiment("bad");
    started["status"] = json!("running");
    let answer = server.call(Method::POST, "/v1/admin/experiments", Some(started)).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, "validation_failed", "status"));
    let answer = server.call(Method::POST, "/v1/admin/experiments", Some(experiment("checkout_redesign"))).await;
    assert_eq!(error(&answer).0, StatusCode::CONFLICT);
    let answer = server.call(Method::GET, "/v1/admin/experiments/ghost", None).await;
    assert_eq!(error(&answer), (StatusCode::NOT_FOUND, "experiment_not_found", ""));
    let (_, list) = server.call(Method::GET, "/v1/admin/experiments", None).await;
    assert_eq!(list["experiments"].as_array().unwrap().len(), 1);

    for action in ["pause", "complete", "archive"] {
        let answer = lifecycle(&server, "checkout_redesign", action, None).await;
        assert_eq!(error(&answer), (StatusCode::CONFLICT, "invalid_transition", "status"), "{action} from draft");
    }
    let (status, running) = lifecycle(&server, "checkout_redesign", "start", Some(json!({}))).await;
    assert_eq!((status, running["status"].as_str()), (StatusCode::OK, Some("running")));
    assert_eq!(error(&lifecycle(&server, "checkout_redesign", "start", None).await).0, StatusCode::CONFLICT);
    assert_eq!(
        error(&lifecycle(&server, "checkout_redesign", "start", Some(json!({"force": true}))).await).0,
        StatusCode::BAD_REQUEST
    );

    let mut weights = experiment("checkout_redesign");
    weights["variants"][0]["weight"] = json!(20);
    let answer = replace(&server, "checkout_redesign", weights.clone()).await;
    assert_eq!(error(&answer), (StatusCode::CONFLICT, "experiment_running", "variants"));
    let mut more_variants = experiment("checkout_redesign");
    more_variants["variants"].as_array_mut().unwrap().push(json!({"key": "third"}));
    assert_eq!(error(&replace(&server, "checkout_redesign", more_variants).await).1, "experiment_running");
    let mut traffic = experiment("checkout_redesign");
    traffic["traffic_allocation"] = json!(50);
    let answer = replace(&server, "checkout_redesign", traffic.clone()).await;
    assert_eq!(error(&answer), (StatusCode::CONFLICT, "experiment_running", "traffic_allocation"));
    let mut described = experiment("checkout_redesign");
    described["description"] = json!("new checkout page");
    let (status, updated) = replace(&server, "checkout_redesign", described).await;
    assert_eq!((status, updated["status"].as_str()), (StatusCode::OK, Some("running")), "{updated}");
    let mut status_change = experiment("checkout_redesign");
    status_change["status"] = json!("completed");
    assert_eq!(
        error(&replace(&server, "checkout_redesign", status_change).await),
        (StatusCode::CONFLICT, "invalid_transition", "status")
    );

    let (status, paused) = lifecycle(&server, "checkout_redesign", "pause", None).await;
    assert_eq!((status, paused["status"].as_str()), (StatusCode::OK, Some("paused")));
    let (status, reweighted) = replace(&server, "checkout_redesign", weights).await;
    assert_eq!((status, reweighted["variants"][0]["weight"].as_u64()), (StatusCode::OK, Some(20)), "paused: free");
    lifecycle(&server, "checkout_redesign", "start", None).await;
    traffic["variants"][0]["weight"] = json!(20);
    traffic["traffic_allocation"] = json!(100);
    assert_eq!(replace(&server, "checkout_redesign", traffic).await.0, StatusCode::OK, "100 % is not less");

    let answer = lifecycle(&server, "checkout_redesign", "complete", Some(json!({"winner": "nope"}))).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, "validation_failed", "winner"));
    let (status, done) =
        lifecycle(&server, "checkout_redesign", "complete", Some(json!({"winner": "treatment"}))).await;
    assert_eq!(
        (status, done["status"].as_str(), done["winner"].as_str()),
        (StatusCode::OK, Some("completed"), Some("treatment"))
    );
    assert_eq!(error(&lifecycle(&server, "checkout_redesign", "start", None).await).0, StatusCode::CONFLICT);
    let (status, archived) = lifecycle(&server, "checkout_redesign", "archive", None).await;
    assert_eq!((status, archived["status"].as_str()), (StatusCode::OK, Some("archived")));

    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=experiment&key=checkout_redesign", None).await;
    let records = audit["records"].as_array().unwrap();
    let statuses: Vec<&str> = records.iter().rev().filter_map(|r| r["after"]["status"].as_str()).collect();
    assert_eq!(
        statuses,
        ["draft", "running", "running", "paused", "paused", "running", "running", "completed", "archived"]
    );
    assert!(records.iter().all(|r| r["actor"].is_string()));

    let (status, _) = server.call(Method::DELETE, "/v1/admin/experiments/checkout_redesign", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn flags_that_serve_experiments_are_checked_both_ways() {
    let server = Server::start().await;
    server.create("segments", json!({"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}})).await;
    let flag = json!({"key": "banner", "type": "string", "enabled": true, "variants": {"off": "none"},
        "off_variant": "off", "default": {"experiment": "banner_test"}});
    let answer = server.call(Method::POST, "/v1/admin/flags", Some(flag.clone())).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, "validation_failed", "default.experiment"));

    let mut valueless = experiment("banner_test");
    valueless["targeting"] = json!({"segment": "beta"});
    server.create("experiments", valueless.clone()).await;
    let answer = server.call(Method::POST, "/v1/admin/flags", Some(flag.clone())).await;
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("carries no value"), "{}", answer.1);

    let mut numbers = valueless.clone();
    numbers["variants"] = json!([{"key": "control", "value": 1}, {"key": "treatment", "value": 2}]);
    replace(&server, "banner_test", numbers).await;
    let answer = server.call(Method::POST, "/v1/admin/flags", Some(flag.clone())).await;
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("not a string"), "{}", answer.1);

    let mut strings = valueless;
    strings["variants"] = json!([{"key": "control", "value": "blue"}, {"key": "treatment", "value": "green"}]);
    replace(&server, "banner_test", strings.clone()).await;
    server.create("flags", flag).await;

    // The other direction: the experiment's values must keep fitting the flags that serve it.
    let mut broken = strings;
    broken["variants"][0]["value"] = json!(true);
    let answer = replace(&server, "banner_test", broken).await;
    assert_eq!(error(&answer), (StatusCode::BAD_REQUEST, "validation_failed", "flags.banner.default.experiment"));
    let answer = server.call(Method::DELETE, "/v1/admin/experiments/banner_test", None).await;
    assert_eq!(error(&answer).1, "referenced");
    let answer = server.call(Method::DELETE, "/v1/admin/segments/beta", None).await;
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("experiment banner_test"), "{}", answer.1);
}
