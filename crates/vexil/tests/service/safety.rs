//! Safety rails over HTTP: emergency stops across a restart, rollout plans stepping on a short
//! check interval, and plan validation and state errors.

use crate::harness::{checkout_flag, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn reason_of(server: &Server, flag: &str) -> Value {
    let body = json!({"user_id": "user_1", "context": {"country": "US"}});
    let (status, result) = server.call(Method::POST, &format!("/v1/flags/{flag}/evaluate"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result["reason"].clone()
}

fn fast() -> Options {
    Options { env: vec![("VEXIL_SAFETY_CHECK_INTERVAL_MS".into(), "50".into())], ..Options::default() }
}

#[tokio::test]
async fn emergency_stop_and_resume_round_trip_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start_in(&data_dir, fast()).await;
    server.create("flags", checkout_flag()).await;
    server.create("flags", json!({"key": "dark_mode", "enabled": true, "default": {"variant": "on"}})).await;
    assert_eq!(reason_of(&server, "new_checkout").await, "TARGETING_MATCH");

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/admin/emergency-stop",
            Some(json!({"scope": "tag", "tag": "payments", "reason": "incident"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["stopped_flags"], json!(["new_checkout"]));
    assert_eq!(reason_of(&server, "new_checkout").await, "DISABLED", "immediately on the receiving node");
    assert_eq!(reason_of(&server, "dark_mode").await, "STATIC");

    let (status, body) = server
        .call(Method::POST, "/v1/admin/emergency-stop", Some(json!({"scope": "flags", "flags": ["ghost"]})))
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("flags[0]")));

    assert!(server.stop().await);
    let server = Server::start_in(&data_dir, fast()).await;
    assert_eq!(reason_of(&server, "new_checkout").await, "DISABLED", "stops survive a restart");
    let (_, active) = server.call(Method::GET, "/v1/admin/emergency-stop", None).await;
    assert_eq!(active["stops"].as_array().unwrap().len(), 1);
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vexil_emergency_stops_active 1"), "{metrics}");

    let (status, body) = server.call(Method::POST, "/v1/admin/emergency-stop/resume", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resumed"].as_array().unwrap().len(), 1);
    assert_eq!(reason_of(&server, "new_checkout").await, "TARGETING_MATCH", "the previous state, exactly");
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(flag["version"], 1, "a stop never changes the flag");
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=emergency_stop", None).await;
    let actions: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "create"]);
    assert_eq!(audit["records"][1]["reason"], "incident");
}

async fn plan_state(server: &Server, until: &str) -> Value {
    for _ in 0..100 {
        let (_, plan) = server.call(Method::GET, "/v1/admin/flags/new_checkout/rollout-plan", None).await;
        if plan["state"] == until {
            return plan;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the plan never reached {until}");
}

#[tokio::test]
async fn a_plan_steps_through_its_percentages_as_holds_elapse() {
    let server = Server::start_with(fast()).await;
    server.create("flags", checkout_flag()).await;
    let steps = json!([{"percent": 1, "hold": 0}, {"percent": 5, "hold": "0s"}, {"percent": 25, "hold": 0}, {"percent": 100, "hold": 0}]);
    let (status, plan) =
        server.call(Method::PUT, "/v1/admin/flags/new_checkout/rollout-plan", Some(json!({"steps": steps}))).await;
    assert_eq!((status, &plan["state"]), (StatusCode::OK, &json!("ready")), "{plan}");
    let (status, plan) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/start", None).await;
    assert_eq!((status, &plan["state"]), (StatusCode::OK, &json!("running")), "{plan}");

    plan_state(&server, "completed").await;
    let (_, flag) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!(flag["default"]["rollout"], 100);
    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=new_checkout", None).await;
    let rollouts: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "update")
        .map(|r| &r["after"]["default"]["rollout"])
        .collect();
    assert_eq!(rollouts, [&json!(100), &json!(25), &json!(5), &json!(1)], "one flag version per step, newest first");
    assert!(audit["records"][0]["actor"] == "system:rollout");
    let metrics = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vexil_rollout_plan_state{flag=\"new_checkout\",state=\"completed\"} 1"), "{metrics}");

    let (status, body) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/pause", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")));
}

async fn put(server: &Server, flag: &str, body: Value) -> (StatusCode, Value) {
    server.call(Method::PUT, &format!("/v1/admin/flags/{flag}/rollout-plan"), Some(body)).await
}

#[tokio::test]
async fn invalid_plans_name_the_field() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let (status, body) =
        put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": 0}, {"percent": 5, "hold": 0}]})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("steps[1].percent")),
        "{body}"
    );
    let (status, body) = put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": -1}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("non-negative"), "{body}");
    let (status, body) =
        put(&server, "new_checkout", json!({"target": "us", "steps": [{"percent": 5, "hold": 0}]})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("target")), "{body}");
    let guard = json!({"signal": "count", "event": "never_sent", "op": "lt", "threshold": 1});
    let (status, body) =
        put(&server, "new_checkout", json!({"steps": [{"percent": 5, "hold": 0}], "guards": [guard]})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("guards[0].event")), "{body}");
    let (status, _) = put(&server, "ghost", json!({"steps": [{"percent": 5, "hold": 0}]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = server.call(Method::POST, "/v1/admin/flags/new_checkout/rollout-plan/start", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
