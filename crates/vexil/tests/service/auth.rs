use crate::harness::{checkout_flag, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn key_kinds_follow_the_access_matrix() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let server_key = server.create_key("server").await;
    let client_key = server.create_key("client").await;
    let admin_key = server.create_key("admin").await;
    let eval_body = json!({"user_id": "u", "context": {"targetingKey": "u"}});
    let routes: [(Method, &str, [StatusCode; 3]); 5] = [
        (Method::POST, "/v1/flags/new_checkout/evaluate", [StatusCode::OK; 3]),
        (Method::POST, "/ofrep/v1/evaluate/flags/new_checkout", [StatusCode::OK; 3]),
        (Method::GET, "/v1/sdk/flags", [StatusCode::OK, StatusCode::OK, StatusCode::FORBIDDEN]),
        (Method::GET, "/v1/admin/flags", [StatusCode::OK, StatusCode::FORBIDDEN, StatusCode::FORBIDDEN]),
        (Method::GET, "/v1/admin/keys", [StatusCode::OK, StatusCode::FORBIDDEN, StatusCode::FORBIDDEN]),
    ];
    for (method, path, expected) in routes {
        for (key, status) in [&admin_key, &server_key, &client_key].into_iter().zip(expected) {
            let (got, body) = Server::send(server.with_key(method.clone(), path, key).json(&eval_body)).await;
            assert_eq!(got, status, "{method} {path} with {key}: {body}");
            if got == StatusCode::FORBIDDEN {
                assert_eq!(body["error"]["code"], "forbidden");
            }
        }
        let (got, body) = Server::send(server.client.request(method.clone(), server.url(path)).json(&eval_body)).await;
        assert_eq!((got, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{path}");
        let (got, _) = Server::send(server.with_key(method.clone(), path, "vx_cli_not_a_key").json(&eval_body)).await;
        assert_eq!(got, StatusCode::UNAUTHORIZED);
    }
    let ofrep = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags/new_checkout"))
        .header("x-api-key", &client_key)
        .json(&eval_body);
    assert_eq!(Server::send(ofrep).await.0, StatusCode::OK, "OFREP accepts X-API-Key");

    let (_, keys) = server.call(Method::GET, "/v1/admin/keys", None).await;
    assert!(keys["keys"].as_array().unwrap().iter().all(|k| k.get("key").is_none()), "secrets are never listed");
    let client_id = keys["keys"].as_array().unwrap().iter().find(|k| k["kind"] == "client").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, revoked) = server.call(Method::DELETE, &format!("/v1/admin/keys/{client_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, _) =
        Server::send(server.with_key(Method::POST, "/v1/flags/new_checkout/evaluate", &client_key).json(&eval_body))
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked key stops working at once");
}

#[tokio::test]
async fn a_fresh_store_prints_one_admin_key_and_a_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start_in(&data, Options { generated_key: true, ..Options::default() }).await;
    let key = first.key.clone();
    assert!(key.starts_with("vx_adm_"), "stdout: {}", first.stdout.lock().unwrap());
    let flag = first.create("flags", checkout_flag()).await;
    let client_key = first.create_key("client").await;
    assert!(first.stop().await, "SIGTERM ends the process cleanly");

    let second = Server::start_in(&data, Options { generated_key: true, ..Options::default() }).await;
    assert!(!second.stdout.lock().unwrap().contains("vx_adm_"), "no second bootstrap key");
    let (status, stored) = Server::send(second.with_key(Method::GET, "/v1/admin/flags/new_checkout", &key)).await;
    assert_eq!((status, &stored), (StatusCode::OK, &flag));
    let (status, result) = Server::send(
        second
            .with_key(Method::POST, "/v1/flags/new_checkout/evaluate", &client_key)
            .json(&json!({"user_id": "u", "context": {"country": "US"}})),
    )
    .await;
    assert_eq!((status, result["flag_id"].clone()), (StatusCode::OK, flag["id"].clone()));
}
