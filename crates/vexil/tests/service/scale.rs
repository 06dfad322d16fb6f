//! The live configuration follows writes by patching its snapshot (only what a write affects is
//! compiled again): the answers must be those of the whole configuration, whether the write came
//! through this server or from another process on the same data directory, and a change of one
//! environment leaves the others' documents as they were.

use crate::cli::run;
use crate::harness::{eventually, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn variant(server: &Server, flag: &str, context: Value) -> String {
    let body = json!({"user_id": "user_1", "context": context});
    let (status, result) =
        Server::send(server.admin(Method::POST, &format!("/v1/flags/{flag}/evaluate")).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result["variant"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn writes_reach_the_flags_that_depend_on_them() {
    let server = Server::start().await;
    server
        .create("segments", json!({"key": "europe", "when": {"attr": "country", "op": "in", "values": ["DE", "FR"]}}))
        .await;
    server.create("segments", json!({"key": "eu_pro", "when": {"all": [{"segment": "europe"}, {"attr": "plan", "op": "eq", "value": "pro"}]}})).await;
    server
        .create(
            "flags",
            json!({"key": "banner", "enabled": true,
            "rules": [{"id": "eu", "when": {"segment": "eu_pro"}, "serve": {"variant": "on"}}]}),
        )
        .await;
    server
        .create(
            "flags",
            json!({"key": "checkout", "enabled": true, "default": {"variant": "on"},
            "prerequisites": [{"flag": "banner", "variants": ["on"]}]}),
        )
        .await;
    let us_pro = json!({"country": "US", "plan": "pro"});
    assert_eq!(variant(&server, "banner", us_pro.clone()).await, "off");
    assert_eq!(variant(&server, "checkout", us_pro.clone()).await, "off");

    // A segment two steps below the flag changes: the flag and its dependant follow at once.
    let (status, body) = server
        .call(
            Method::PUT,
            "/v1/admin/segments/europe",
            Some(json!({"when": {"attr": "country", "op": "in", "values": ["DE", "FR", "US"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(variant(&server, "banner", us_pro.clone()).await, "on");
    assert_eq!(variant(&server, "checkout", us_pro.clone()).await, "on");

    // Writes that would break a dependant are refused, naming it, and change nothing.
    let (status, body) = server.call(Method::DELETE, "/v1/admin/segments/europe", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("segment eu_pro"), "{body}");
    let (status, body) = server
        .call(
            Method::PUT,
            "/v1/admin/flags/banner",
            Some(json!({"enabled": true, "type": "string",
            "variants": {"a": "A", "b": "B"}, "off_variant": "a", "default": {"variant": "a"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("flags.checkout.prerequisites[0].variants[0]"), "{body}");
    assert_eq!(variant(&server, "checkout", us_pro.clone()).await, "on");

    // Another process writes the data directory: the server patches its snapshot from the store.
    let file = json!({"segments": [{"key": "europe", "when": {"attr": "country", "op": "in", "values": ["DE"]}}]});
    let path = server.data_dir.parent().unwrap().join("europe.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let (ok, out, err) =
        run(&["flags", "import", path.to_str().unwrap(), "--data-dir", server.data_dir.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");
    eventually("the CLI's write to reach evaluation", || async {
        (variant(&server, "checkout", us_pro.clone()).await == "off").then_some(())
    })
    .await;
    assert_eq!(variant(&server, "banner", json!({"country": "DE", "plan": "pro"})).await, "on");

    // The SDK document is the stored configuration, the same compressed or not.
    let document: Value = server.admin(Method::GET, "/v1/sdk/flags").send().await.unwrap().json().await.unwrap();
    let europe = document["segments"].as_array().unwrap().iter().find(|s| s["key"] == "europe").unwrap().clone();
    assert_eq!(europe["when"]["values"], json!(["DE"]));
    assert_eq!(europe["version"], 3);
}

#[tokio::test]
async fn the_sdk_document_is_compressed_once_per_revision() {
    let server = Server::start().await;
    for n in 0..20 {
        server.create("flags", json!({"key": format!("flag_{n}"), "enabled": true})).await;
    }
    let server = &server;
    let get = |accept: &'static str| async move {
        let response =
            server.admin(Method::GET, "/v1/sdk/flags").header("accept-encoding", accept).send().await.unwrap();
        let headers = response.headers().clone();
        (headers, response.bytes().await.unwrap())
    };
    let (first_headers, first) = get("br;q=1, gzip;q=0.5").await;
    let (second_headers, second) = get("gzip").await;
    assert_eq!(first_headers["content-encoding"], "gzip");
    assert_eq!(first_headers["vary"], "accept-encoding");
    assert_eq!(first_headers["etag"], second_headers["etag"]);
    assert_eq!(first, second, "the same compressed bytes for every client of one revision");
    let (plain_headers, plain) = get("identity").await;
    assert!(plain_headers.get("content-encoding").is_none());
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&first[..]), &mut text).unwrap();
    assert_eq!(text, plain);

    // A write moves the tag; the new document is compressed once again, for every client.
    let (status, body) =
        server.call(Method::POST, "/v1/admin/flags", Some(json!({"key": "one_more", "enabled": true}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (after_headers, after) = eventually("the write to reach the SDK document", || async {
        let (headers, bytes) = get("gzip").await;
        (headers["etag"] != first_headers["etag"]).then_some((headers, bytes))
    })
    .await;
    assert_ne!(after, first);
    assert_eq!(get("gzip").await.1, after, "the same compressed bytes for every client of one revision");
    let stale = server
        .admin(Method::GET, "/v1/sdk/flags")
        .header("accept-encoding", "gzip")
        .header("if-none-match", first_headers["etag"].to_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    let current = server
        .admin(Method::GET, "/v1/sdk/flags")
        .header("if-none-match", after_headers["etag"].to_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_flag_written_under_an_emergency_stop_stays_stopped() {
    let server = Server::start().await;
    server
        .create("flags", json!({"key": "pay", "enabled": true, "tags": ["payments"], "default": {"variant": "on"}}))
        .await;
    server.create("flags", json!({"key": "other", "enabled": true, "default": {"variant": "on"}})).await;
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/admin/emergency-stop",
            Some(json!({"scope": "tag", "tag": "payments", "reason": "incident"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(variant(&server, "pay", json!({})).await, "off");

    // The patched flag (and a new one the stop covers) are served disabled, in evaluation and
    // in the SDK document; the flag's own document keeps what was written.
    let (status, body) = server
        .call(
            Method::PUT,
            "/v1/admin/flags/pay",
            Some(json!({"enabled": true, "tags": ["payments", "web"], "default": {"variant": "on"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server
        .create("flags", json!({"key": "pay_2", "enabled": true, "tags": ["payments"], "default": {"variant": "on"}}))
        .await;
    assert_eq!(variant(&server, "pay", json!({})).await, "off");
    assert_eq!(variant(&server, "pay_2", json!({})).await, "off");
    assert_eq!(variant(&server, "other", json!({})).await, "on");
    let document: Value = server.admin(Method::GET, "/v1/sdk/flags").send().await.unwrap().json().await.unwrap();
    let enabled: Vec<(String, bool)> = document["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["key"].as_str().unwrap().to_string(), f["enabled"].as_bool().unwrap()))
        .collect();
    assert_eq!(enabled, [("other".into(), true), ("pay".into(), false), ("pay_2".into(), false)]);
    let (_, stored) = server.call(Method::GET, "/v1/admin/flags/pay", None).await;
    assert_eq!((stored["enabled"].clone(), stored["version"].clone()), (json!(true), json!(2)));

    let (status, body) = server.call(Method::POST, "/v1/admin/emergency-stop/resume", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(variant(&server, "pay", json!({})).await, "on");
    let document: Value = server.admin(Method::GET, "/v1/sdk/flags").send().await.unwrap().json().await.unwrap();
    assert!(document["flags"].as_array().unwrap().iter().all(|f| f["enabled"] == true), "{document}");
}
