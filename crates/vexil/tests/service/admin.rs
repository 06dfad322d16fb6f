use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn flags_round_trip_with_versions_tags_and_audit() {
    let server = Server::start().await;
    let created = server.create("flags", checkout_flag()).await;
    assert_eq!(created["version"], 1);
    assert!(created["id"].is_string() && created["created_at"].is_string() && created["updated_at"].is_string());
    assert_eq!(created["rules"][0]["when"]["op"], "eq");

    let (status, fetched) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &created));
    let (_, tagged) = server.call(Method::GET, "/v1/admin/flags?tag=payments", None).await;
    assert_eq!(tagged["flags"].as_array().unwrap().len(), 1);
    let (_, untagged) = server.call(Method::GET, "/v1/admin/flags?tag=other", None).await;
    assert_eq!(untagged["flags"], json!([]));

    let mut changed = checkout_flag();
    changed["enabled"] = json!(false);
    let put = |version: &str| {
        server
            .admin(Method::PUT, "/v1/admin/flags/new_checkout")
            .header("If-Match", version)
            .header("X-Vexil-Reason", "incident 42")
            .json(&changed)
    };
    let (status, updated) = Server::send(put("1")).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!((updated["version"].as_u64(), updated["id"] == created["id"]), (Some(2), true));
    let (status, body) = Server::send(put("1")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("version_mismatch")));

    let mut other_key = checkout_flag();
    other_key["key"] = json!("other");
    let (status, body) = server.call(Method::PUT, "/v1/admin/flags/new_checkout", Some(other_key)).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("key")));
    let (status, _) = server.call(Method::PUT, "/v1/admin/flags/missing", Some(json!({"enabled": true}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = server.call(Method::DELETE, "/v1/admin/flags/new_checkout?reason=cleanup", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.call(Method::GET, "/v1/admin/flags/new_checkout", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("flag_not_found")));

    let (_, audit) = server.call(Method::GET, "/v1/admin/audit?entity=flag&key=new_checkout", None).await;
    let records = audit["records"].as_array().unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "update", "create"], "newest first");
    assert_eq!(records[0]["reason"], "cleanup");
    assert_eq!(records[1]["reason"], "incident 42");
    assert_eq!(records[1]["before"]["enabled"], true);
    assert_eq!(records[1]["after"]["enabled"], false);
    let (_, keys) = server.call(Method::GET, "/v1/admin/keys", None).await;
    assert_eq!(records[2]["actor"], keys["keys"][0]["id"], "the actor is the admin key's id");
    let (_, limited) = server.call(Method::GET, "/v1/admin/audit?limit=1", None).await;
    assert_eq!(limited["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn writes_are_validated_against_the_whole_configuration() {
    let server = Server::start().await;
    let (status, body) =
        server.call(Method::POST, "/v1/admin/flags", Some(json!({"key": "a", "enabled": true, "colour": 1}))).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("colour")));
    assert_eq!(body["error"]["code"], "validation_failed");

    let unknown_segment = json!({"key": "a", "enabled": true,
        "rules": [{"id": "r", "when": {"segment": "beta"}, "serve": {"variant": "on"}}]});
    let (status, body) = server.call(Method::POST, "/v1/admin/flags", Some(unknown_segment.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "rules[0].when.segment", "{body}");
    assert!(!body["errors"].as_array().unwrap().is_empty());

    let (status, body) = server
        .call(
            Method::POST,
            "/v1/admin/flags",
            Some(json!({"key": "b", "default": {"split": {"on": 1}, "rollout": 101}})),
        )
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("default.rollout")), "{body}");

    server.create("segments", json!({"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}})).await;
    server.create("flags", unknown_segment).await;
    server
        .create("flags", json!({"key": "child", "enabled": true, "prerequisites": [{"flag": "a", "variants": ["on"]}]}))
        .await;
    let (status, body) = server.call(Method::POST, "/v1/admin/flags", Some(json!({"key": "a", "enabled": true}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_exists")));

    let cycle = json!({"key": "a", "enabled": true, "prerequisites": [{"flag": "child", "variants": ["on"]}]});
    let (status, body) = server.call(Method::PUT, "/v1/admin/flags/a", Some(cycle)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("cycle"), "{body}");

    let (status, body) = server.call(Method::DELETE, "/v1/admin/segments/beta", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("referenced")));
    assert!(body["error"]["message"].as_str().unwrap().contains("flag a"), "{body}");
    let (status, body) = server.call(Method::DELETE, "/v1/admin/flags/a", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"]["message"].as_str().unwrap().contains("flag child"), "{body}");
}
