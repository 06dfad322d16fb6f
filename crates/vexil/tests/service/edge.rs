//! The HTTP edge over raw TCP: headers or a body trickled a byte a second are cut off with a
//! 408 in the error shape, idle connections close, thousands of idle connections do not stop
//! real requests, and every framework-level rejection (408, 413, 414, 431) has the error shape
//! and the common headers.

use crate::harness::{checkout_flag, Options, Server, PATIENCE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_env(pairs: &[(&str, &str)]) -> Options {
    Options { env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Options::default() }
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap()
}

/// Writes `request` one byte a second while reading, and returns what the server answered
/// (up to its closing the connection) and how many bytes were written by then.
async fn trickle(server: &Server, request: &[u8]) -> (String, usize) {
    let (mut reader, mut writer) = connect(server).await.into_split();
    let request = request.to_vec();
    let (sent_tx, sent_rx) = tokio::sync::watch::channel(0usize);
    let writing = tokio::spawn(async move {
        for (i, byte) in request.iter().enumerate() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            let _ = sent_tx.send(i + 1);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer)).await.expect("the server never closed").unwrap();
    let sent = *sent_rx.borrow();
    writing.abort();
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

/// Checks a raw answer: its status line, the common headers and the error code of its body.
fn assert_rejection(answer: &str, status: u16, code: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete answer: {answer:?}"));
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with(&format!("http/1.1 {status} ")), "{head}");
    for header in [
        "x-request-id: ",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
        "content-type: application/json",
    ] {
        assert!(head.contains(header), "{header} missing in {head}");
    }
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn headers_trickled_a_byte_a_second_are_cut_off_with_a_408() {
    // The timeout falls between two bytes: a byte arriving as the server closes the connection
    // resets it, and a reset can overtake the answer (the server's answer is best effort then).
    let server = Server::start_with(with_env(&[("VEXIL_HEADER_READ_TIMEOUT_MS", "2500")])).await;
    let request = b"GET /health HTTP/1.1\r\nhost: localhost\r\nuser-agent: slowloris\r\n\r\n";
    let (answer, sent) = trickle(&server, request).await;
    assert_rejection(&answer, 408, "request_timeout");
    assert!(sent < request.len(), "cut off after {sent} of {} bytes", request.len());
}

#[tokio::test]
async fn a_body_trickled_a_byte_a_second_is_cut_off_with_a_408() {
    let server = Server::start_with(with_env(&[("VEXIL_BODY_TIMEOUT_MS", "2500")])).await;
    server.create("flags", checkout_flag()).await;
    let body = json!({"user_id": "user_1", "context": {"country": "US"}}).to_string();
    let head = format!(
        "POST /v1/flags/new_checkout/evaluate HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        server.key,
        body.len()
    );
    let (mut stream, mut answer) = (connect(&server).await, Vec::new());
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0;
    let read = loop {
        tokio::select! {
            read = stream.read_to_end(&mut answer) => break read,
            () = tokio::time::sleep(Duration::from_secs(1)), if sent < body.len() => {
                stream.write_all(&body.as_bytes()[sent..=sent]).await.unwrap();
                sent += 1;
            }
        }
    };
    read.unwrap();
    assert_rejection(&String::from_utf8_lossy(&answer), 408, "request_timeout");
    assert!(sent < body.len(), "cut off after {sent} of {} bytes", body.len());
}

#[tokio::test]
async fn idle_connections_close_after_the_keep_alive_timeout() {
    let server = Server::start_with(with_env(&[("VEXIL_KEEP_ALIVE_TIMEOUT_SECS", "1")])).await;
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the idle connection stayed open")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "only the answer, no rejection after it: {answer}");
}

/// The timers follow a kept-alive connection through its requests: after an answered request,
/// a head that stops halfway is cut off by the header timeout (shorter than the keep-alive
/// timeout it replaces), and a connection used again within the keep-alive timeout stays open.
#[tokio::test]
async fn a_kept_alive_connection_gets_each_phases_timeout() {
    let server = Server::start_with(with_env(&[
        ("VEXIL_HEADER_READ_TIMEOUT_MS", "2500"),
        ("VEXIL_KEEP_ALIVE_TIMEOUT_SECS", "30"),
    ]))
    .await;
    let mut stream = connect(&server).await;
    let mut answer = vec![0u8; 4096];
    for _ in 0..3 {
        stream.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut answer)).await.expect("no answer").unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&answer[..n]));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: loc").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the half-sent head was never cut off")
        .unwrap();
    assert_rejection(&String::from_utf8_lossy(&rest), 408, "request_timeout");
}

/// Opens `n` connections that send nothing.
async fn idle_connections(server: &Server, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(connect(server).await);
    }
    open
}

async fn evaluate(server: &Server) -> StatusCode {
    let body = json!({"user_id": "user_1", "context": {"country": "US"}});
    server.call(Method::POST, "/v1/flags/new_checkout/evaluate", Some(body)).await.0
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_real_requests() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let idle = idle_connections(&server, 3000).await;
    assert_eq!(server.client.get(server.url("/health")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(evaluate(&server).await, StatusCode::OK);
    drop(idle);

    // At the connection cap, idle connections hold every slot only until their header timeout.
    let capped =
        Server::start_with(with_env(&[("VEXIL_MAX_CONNECTIONS", "50"), ("VEXIL_HEADER_READ_TIMEOUT_MS", "1000")]))
            .await;
    capped.create("flags", checkout_flag()).await;
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let _idle = idle_connections(&capped, 200).await;
    let health = fresh.get(capped.url("/health")).timeout(PATIENCE).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn framework_rejections_have_the_error_shape_and_common_headers() {
    let server = Server::start().await;
    server.create("flags", checkout_flag()).await;
    let long_target = format!("/v1/evaluate?flag_key=new_checkout&user_id={}", "u".repeat(9000));
    let huge_header = "h".repeat(20_000);
    let beyond_hyper = "h".repeat(600_000);
    let six_mib = vec![b' '; 6 * 1024 * 1024];
    let cases = [
        (server.admin(Method::GET, &long_target), StatusCode::URI_TOO_LONG, "uri_too_long"),
        (
            server.admin(Method::GET, "/health").header("x-padding", &huge_header),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        ),
        (
            server.admin(Method::GET, "/health").header("x-padding", &beyond_hyper),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        ),
        (
            server
                .admin(Method::POST, "/ofrep/v1/evaluate/flags")
                .header("content-type", "application/json")
                .body(six_mib),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{code}");
        for (name, value) in
            [("x-content-type-options", "nosniff"), ("cache-control", "no-store"), ("content-type", "application/json")]
        {
            assert_eq!(response.headers().get(name).and_then(|v| v.to_str().ok()), Some(value), "{code}: {name}");
        }
        assert!(response.headers().contains_key("x-request-id"), "{code}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_others_go_on() {
    let limits = [("VEXIL_RATE_LIMIT_PER_KEY", "1"), ("VEXIL_RATE_LIMIT_BURST", "3")];
    let server = Server::start_with(with_env(&limits)).await;
    server.create("flags", checkout_flag()).await;
    let client_key = server.create_key("client").await;
    let body = json!({"user_id": "user_1", "context": {"country": "US"}});
    // 30 requests cannot all fit in a burst of 3 and one more a second, however slow the
    // machine, unless each took over a second.
    let mut refused = None;
    for _ in 0..30 {
        let response = server
            .with_key(Method::POST, "/v1/flags/new_checkout/evaluate", &client_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = refused.expect("the flood was never throttled");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "rate_limited", "{answer}");
    assert_eq!(evaluate(&server).await, StatusCode::OK, "another key is not throttled by this one's flood");
}
