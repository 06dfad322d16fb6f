use crate::harness::{checkout_flag, Options, Server, PATIENCE};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn ofrep_single_bulk_errors_and_etags() {
    let server = Server::start().await;
    let flag = server.create("flags", checkout_flag()).await;
    let single = |key: &str, body: &str| {
        Server::send(
            server
                .admin(Method::POST, &format!("/ofrep/v1/evaluate/flags/{key}"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    };
    let (status, result) = single("new_checkout", r#"{"context": {"targetingKey": "u1", "country": "US"}}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        result,
        json!({"key": "new_checkout", "value": true, "variant": "on", "reason": "TARGETING_MATCH",
        "metadata": {"reason": "TARGETING_MATCH", "rule_id": "us", "flag_id": flag["id"], "flag_version": 1}})
    );
    let failures = [
        ("ghost", r#"{"context": {"targetingKey": "u1"}}"#, StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
        ("new_checkout", r#"{"context": {"country": "US"}}"#, StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
        ("new_checkout", r#"{"context": {"targetingKey": " "}}"#, StatusCode::BAD_REQUEST, "TARGETING_KEY_MISSING"),
        ("new_checkout", r#"{"context": "#, StatusCode::BAD_REQUEST, "PARSE_ERROR"),
        ("new_checkout", r#"{"context": [1]}"#, StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
    ];
    for (key, body, status, code) in failures {
        let (got, answer) = single(key, body).await;
        assert_eq!(
            (got, answer["errorCode"].as_str(), answer["key"].as_str()),
            (status, Some(code), Some(key)),
            "{body}"
        );
        assert!(answer["errorDetails"].is_string());
    }

    let bulk = |etag: Option<&str>, country: &str| {
        let mut request = server
            .admin(Method::POST, "/ofrep/v1/evaluate/flags")
            .json(&json!({"context": {"targetingKey": "u1", "country": country}}));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let first = bulk(None, "US").await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["flags"][0]["key"], "new_checkout");
    assert_eq!(bulk(Some(&etag), "US").await.unwrap().status(), StatusCode::NOT_MODIFIED);
    assert_eq!(bulk(Some(&etag), "FR").await.unwrap().status(), StatusCode::OK, "another context is another result");
    server.create("flags", json!({"key": "second", "enabled": true, "default": {"variant": "on"}})).await;
    let after_change = bulk(Some(&etag), "US").await.unwrap();
    assert_eq!(after_change.status(), StatusCode::OK, "a configuration change invalidates the ETag");
    let (status, error) =
        Server::send(server.admin(Method::POST, "/ofrep/v1/evaluate/flags").json(&json!({"context": {}}))).await;
    assert_eq!((status, error["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("TARGETING_KEY_MISSING")));
}

/// One SSE event as text (`id:`, `event:`, `data:` lines), skipping heartbeat comments; `None`
/// when only heartbeats came for `quiet_for` (a stream that stays quiet on purpose).
async fn next_message<B: AsRef<[u8]>>(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<B>> + Unpin),
    buffer: &mut String,
    quiet_for: Option<Duration>,
) -> Option<(u64, serde_json::Value)> {
    let deadline = tokio::time::Instant::now() + quiet_for.unwrap_or(PATIENCE);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
            if let Some(data) = field("data:") {
                assert_eq!(field("event:").as_deref(), Some("message"), "OFREP's envelope event is always message");
                let id = field("id:").expect("every event has an id").parse().expect("the id is a revision");
                return Some((id, serde_json::from_str(&data).unwrap()));
            }
            assert_eq!(block, ": heartbeat\n\n");
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(chunk) => {
                buffer.push_str(&String::from_utf8_lossy(chunk.expect("the stream stays open").unwrap().as_ref()))
            }
            Err(_) if quiet_for.is_some() => return None,
            Err(_) => panic!("no event in time"),
        }
    }
}

#[tokio::test]
async fn ofrep_event_stream_announces_changes_and_refetches_use_the_etag() {
    let env = vec![("VEXIL_SSE_HEARTBEAT_SECS".to_string(), "1".to_string())];
    let server = Server::start_with(Options { env, ..Default::default() }).await;
    server.create("flags", checkout_flag()).await;
    let key = server.create_key("client").await;
    let bulk = |etag: Option<&str>, flag_config_etag: Option<&str>| {
        let mut request = server
            .client
            .post(server.url("/ofrep/v1/evaluate/flags"))
            .header("x-api-key", &key)
            .json(&json!({"context": {"targetingKey": "u1", "country": "US"}}));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        if let Some(flag_config_etag) = flag_config_etag {
            request = request.query(&[("flagConfigEtag", flag_config_etag)]);
        }
        request.send()
    };

    // The bulk answer names the stream: a request URI on the provider's own OFREP origin,
    // carrying the client key, as a browser's EventSource sends no headers.
    let first = bulk(None, None).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = first.json().await.unwrap();
    let stream_uri = format!("/ofrep/v1/event-stream?key={key}");
    assert_eq!(body["eventStreams"], json!([{"type": "sse", "endpoint": {"requestUri": stream_uri}}]));

    // Two subscribers: one with only the URL (as EventSource connects), one with the key in a
    // header. Each starts with the current configuration's tag.
    let open = |last_event_id: Option<String>| {
        let mut request = server.client.get(server.url(&stream_uri));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send()
    };
    let mut subscribers = Vec::new();
    for response in [
        open(None).await.unwrap(),
        server.client.get(server.url("/ofrep/v1/event-stream")).header("x-api-key", &key).send().await.unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        subscribers.push((response.bytes_stream(), String::new()));
    }
    let mut announced = Vec::new();
    for (stream, buffer) in &mut subscribers {
        let (id, data) = next_message(stream, buffer, None).await.unwrap();
        assert_eq!(data, json!({"type": "refetchEvaluation", "etag": format!("\"{id}\"")}));
        announced.push(id);
    }
    assert_eq!(announced[0], announced[1]);
    let before = announced[0];

    // Nothing changed: the re-fetch the message triggers is answered 304.
    let unchanged = bulk(Some(&etag), Some(&format!("\"{before}\""))).await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.headers()["etag"].to_str().unwrap(), etag);
    assert!(unchanged.bytes().await.unwrap().is_empty());

    // An admin change reaches every subscriber, with the new configuration's tag.
    server.create("flags", json!({"key": "second", "enabled": true, "default": {"variant": "on"}})).await;
    let mut after = Vec::new();
    for (stream, buffer) in &mut subscribers {
        let (id, data) = next_message(stream, buffer, None).await.unwrap();
        assert!(id > before, "{id} after {before}");
        assert_eq!(data, json!({"type": "refetchEvaluation", "etag": format!("\"{id}\"")}));
        after.push(id);
    }
    assert_eq!(after[0], after[1]);
    let changed = bulk(Some(&etag), Some(&format!("\"{}\"", after[0]))).await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let new_etag = changed.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    let body: serde_json::Value = changed.json().await.unwrap();
    assert!(body["flags"].as_array().unwrap().iter().any(|f| f["key"] == "second"), "{body}");
    assert_eq!(bulk(Some(&new_etag), None).await.unwrap().status(), StatusCode::NOT_MODIFIED);

    // A client reconnecting with the id it last saw gets no message until the next change;
    // one that missed a change gets one at once.
    let response = open(Some(after[0].to_string())).await.unwrap();
    let (mut current, mut buffer) = (response.bytes_stream(), String::new());
    assert_eq!(next_message(&mut current, &mut buffer, Some(Duration::from_millis(2500))).await, None);
    assert!(buffer.is_empty(), "heartbeats only");
    let response = open(Some(before.to_string())).await.unwrap();
    let (mut behind, mut buffer) = (response.bytes_stream(), String::new());
    assert_eq!(next_message(&mut behind, &mut buffer, None).await.unwrap().0, after[0]);
}

#[tokio::test]
async fn ofrep_event_stream_needs_a_key_and_refuses_bad_input() {
    let server = Server::start().await;
    let key = server.create_key("client").await;
    // No key, or a wrong one: SPEC 4's 401.
    for request in [
        server.client.get(server.url("/ofrep/v1/event-stream")),
        server.client.get(server.url("/ofrep/v1/event-stream")).header("x-api-key", "vx_not_a_key"),
        server.client.get(server.url("/ofrep/v1/event-stream")).bearer_auth("vx_not_a_key"),
    ] {
        let (status, error) = Server::send(request).await;
        assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }
    // A wrong key in the URL is 401 too; a server or admin key is not taken from a URL (403):
    // those keys go in a header, and the bulk answer does not put them in the URI.
    let (status, _) = Server::send(server.client.get(server.url("/ofrep/v1/event-stream?key=vx_not_a_key"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let server_key = server.create_key("server").await;
    for secret in [server_key.as_str(), crate::harness::ADMIN_KEY] {
        let (status, error) =
            Server::send(server.client.get(server.url(&format!("/ofrep/v1/event-stream?key={secret}")))).await;
        assert_eq!(
            (status, error["error"]["code"].as_str(), error["error"]["field"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden"), Some("key"))
        );
        let request = server
            .with_key(Method::POST, "/ofrep/v1/evaluate/flags", secret)
            .json(&json!({"context": {"targetingKey": "u1"}}));
        let (status, body) = Server::send(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["eventStreams"],
            json!([{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/event-stream"}}])
        );
        let response = server.with_key(Method::GET, "/ofrep/v1/event-stream", secret).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "in a header, any key");
    }
    // A Last-Event-ID the stream never sent.
    for id in ["abc", "-1", "1.5"] {
        let request = server.with_key(Method::GET, "/ofrep/v1/event-stream", &key).header("last-event-id", id);
        let (status, error) = Server::send(request).await;
        assert_eq!(
            (status, error["error"]["code"].as_str(), error["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_header"), Some("Last-Event-ID")),
            "{id}: {error}"
        );
        assert!(error["error"]["message"].as_str().unwrap().contains("Last-Event-ID"));
    }
    // An empty one is a client that saw no event yet: it starts with the current tag.
    let request = server.with_key(Method::GET, "/ofrep/v1/event-stream", &key).header("last-event-id", "");
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (mut stream, mut buffer) = (response.bytes_stream(), String::new());
    assert!(next_message(&mut stream, &mut buffer, None).await.is_some());
    // A flagConfigEtag that names no revision: OFREP's error body, naming the parameter.
    for etag in ["abc", "\"\"", "W/\"x\""] {
        let request = server
            .with_key(Method::POST, "/ofrep/v1/evaluate/flags", &key)
            .query(&[("flagConfigEtag", etag)])
            .json(&json!({"context": {"targetingKey": "u1"}}));
        let (status, error) = Server::send(request).await;
        assert_eq!((status, error["errorCode"].as_str()), (StatusCode::BAD_REQUEST, Some("GENERAL")), "{etag}");
        assert!(error["errorDetails"].as_str().unwrap().contains("flagConfigEtag"), "{error}");
    }
    // A tag ahead of everything the store has is answered with the newest configuration.
    let request = server
        .with_key(Method::POST, "/ofrep/v1/evaluate/flags", &key)
        .query(&[("flagConfigEtag", "\"999999\""), ("flagConfigLastModified", "1771622898")])
        .json(&json!({"context": {"targetingKey": "u1"}}));
    assert_eq!(Server::send(request).await.0, StatusCode::OK);
}
