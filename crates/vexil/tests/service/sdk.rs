use crate::harness::{checkout_flag, Server, PATIENCE};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn sdk_document_has_an_etag() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let response = server.admin(Method::GET, "/v1/sdk/flags").send().await.unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["flags"][0]["key"], "new_checkout");
    assert_eq!(document["flags"][0]["version"], 1);
    let again = server.admin(Method::GET, "/v1/sdk/flags").header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn sdk_document_is_gzipped_for_clients_that_accept_it() {
    let server = Server::start().await;
    // Enough flags that the document is worth compressing (it is above a kilobyte).
    for n in 0..5 {
        server.create("flags", json!({"key": format!("flag_{n}"), "enabled": true})).await;
    }
    let plain = server.admin(Method::GET, "/v1/sdk/flags").send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain: Value = plain.json().await.unwrap();

    let gzipped = server.admin(Method::GET, "/v1/sdk/flags").header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut text).unwrap();
    let unpacked: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(unpacked, plain);
    assert_eq!(unpacked["flags"].as_array().unwrap().len(), 5);
    assert!(compressed.len() < text.len() / 2, "{} bytes compressed from {}", compressed.len(), text.len());

    // A client that refuses gzip gets the document as it is.
    let refused =
        server.admin(Method::GET, "/v1/sdk/flags").header("accept-encoding", "gzip;q=0").send().await.unwrap();
    assert!(refused.headers().get("content-encoding").is_none());
    assert_eq!(refused.json::<Value>().await.unwrap(), plain);
}

/// Reads SSE events (name, data) from a byte stream until `count` arrived (for at most
/// [`PATIENCE`]).
pub async fn next_events<B: AsRef<[u8]>>(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<B>> + Unpin),
    buffer: &mut String,
    count: usize,
) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while events.len() < count {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field =
                |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_string());
            if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                events.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
        if events.len() >= count {
            break;
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("events in time").unwrap().unwrap();
        buffer.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
    events
}

#[tokio::test]
async fn stream_sends_put_then_changes() {
    let server = Server::start().await;
    server.create("segments", json!({"key": "beta", "when": {"attr": "beta", "op": "eq", "value": true}})).await;
    let response = server.admin(Method::GET, "/v1/sdk/stream").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let put = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(put[0].0, "put");
    assert_eq!(put[0].1["segments"][0]["key"], "beta");

    server.create("flags", checkout_flag()).await;
    let patch = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(patch[0].0, "patch");
    assert_eq!((patch[0].1["kind"].as_str(), patch[0].1["key"].as_str()), (Some("flag"), Some("new_checkout")));
    assert_eq!(patch[0].1["object"]["version"], 1);

    let (status, _) = server.call(Method::DELETE, "/v1/admin/segments/beta", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let delete = next_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(delete[0], ("delete".to_string(), json!({"kind": "segment", "key": "beta"})));
}

#[tokio::test]
async fn an_idle_stream_carries_heartbeats() {
    let env = vec![("VEXIL_SSE_HEARTBEAT_SECS".to_string(), "1".to_string())];
    let server = Server::start_with(crate::harness::Options { env, ..Default::default() }).await;
    let response = server.admin(Method::GET, "/v1/sdk/stream").send().await.unwrap();
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !received.contains("\n: heartbeat\n\n") {
        let chunk =
            tokio::time::timeout_at(deadline, stream.next()).await.expect("a heartbeat in time").unwrap().unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.starts_with("event: put\n"), "{received}");
}
