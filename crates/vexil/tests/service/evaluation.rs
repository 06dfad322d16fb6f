use crate::harness::{checkout_flag, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn single_query_and_batch_evaluation() {
    let server = Server::start().await;
    let flag = server.create("flags", checkout_flag()).await;
    server
        .create(
            "flags",
            json!({"key": "banner", "type": "string", "enabled": true,
        "variants": {"red": "#f00", "blue": "#00f"}, "off_variant": "red", "default": {"variant": "blue"}}),
        )
        .await;
    let evaluate = |body: serde_json::Value| {
        Server::send(server.admin(Method::POST, "/v1/flags/new_checkout/evaluate").json(&body))
    };

    let (status, result) = evaluate(json!({"user_id": "user_1", "context": {"country": "US"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        result,
        json!({"flag_key": "new_checkout", "flag_id": flag["id"], "flag_version": 1, "user_id": "user_1",
        "value": true, "variant": "on", "reason": "TARGETING_MATCH", "rule_id": "us", "enabled": true})
    );
    let (_, result) =
        evaluate(json!({"user_id": "user_1", "context": {"country": 42, "nested": {"x": [1, null]}}})).await;
    assert!(
        matches!(result["reason"].as_str(), Some("SPLIT" | "ROLLOUT_EXCLUDED")),
        "bad context values never fail: {result}"
    );
    for user in [json!(null), json!(""), json!("   "), json!(7)] {
        let (status, body) = evaluate(json!({"user_id": user})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_user_id")),
            "{user}"
        );
    }
    let (status, body) = evaluate(json!({"user_id": "u", "context": "US"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("context")));
    let (status, body) =
        Server::send(server.admin(Method::POST, "/v1/flags/nope/evaluate").json(&json!({"user_id": "u"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("flag_not_found")));

    let (status, result) = Server::send(server.admin(Method::GET, "/v1/evaluate?flag_key=banner&user_id=u2")).await;
    assert_eq!(
        (status, result["value"].as_str(), result["reason"].as_str()),
        (StatusCode::OK, Some("#00f"), Some("STATIC"))
    );
    let with_context = server
        .admin(Method::GET, "/v1/evaluate?flag_key=new_checkout&user_id=u2")
        .header("content-type", "application/json")
        .body(r#"{"context": {"country": "US"}}"#);
    assert_eq!(Server::send(with_context).await.1["reason"], "TARGETING_MATCH");
    let (status, _) = Server::send(server.admin(Method::GET, "/v1/evaluate?user_id=u2")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, batch) = Server::send(server.admin(Method::POST, "/v1/evaluate").json(
        &json!({"user_id": "u3", "context": {"country": "US"}, "flag_keys": ["banner", "new_checkout", "ghost"]}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(batch["flags"]["banner"]["variant"], "blue");
    assert_eq!(batch["flags"]["new_checkout"]["variant"], "on");
    assert_eq!(batch["errors"]["ghost"]["code"], "flag_not_found");
    let (_, all) = Server::send(server.admin(Method::POST, "/v1/evaluate").json(&json!({"user_id": "u3"}))).await;
    assert_eq!(all["flags"].as_object().unwrap().len(), 2);
    assert_eq!(all["errors"], json!({}));
}
