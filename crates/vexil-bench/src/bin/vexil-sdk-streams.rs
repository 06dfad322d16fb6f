//! Holds many `GET /v1/sdk/stream` connections open against one `vexil serve` and measures how
//! long a configuration change takes to reach them: for each round it changes one flag through
//! the admin API and times, per stream, the arrival of the `patch` that carries it.
//!
//! `vexil-sdk-streams URL KEY STREAMS ROUNDS`: the streams are opened at most 256 at a time;
//! each round prints the share of streams reached within 1 s and the delivery percentiles.
//! Used by `scripts/bench/sdk-streams.sh`, which also reports the server's RSS and CPU.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

const FLAG: &str = "sdk_streams_bench";
const MARKER: &[u8] = b"fanout-round-";
const CONNECTING_AT_ONCE: usize = 256;

fn flag(round: u32) -> String {
    serde_json::json!({"key": FLAG, "enabled": true, "description": format!("fanout-round-{round}"),
                       "default": {"variant": "on"}})
    .to_string()
}

/// One HTTP/1.1 request on its own connection; answers the status code.
async fn request(address: &str, method: &str, path: &str, key: &str, body: &str) -> std::io::Result<u16> {
    let mut socket = TcpStream::connect(address).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await?;
    let status = answer.get(9..12).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse().ok());
    Ok(status.unwrap_or(0))
}

/// The highest round number found in `bytes` after [`MARKER`].
fn highest_round(bytes: &[u8]) -> Option<u32> {
    let mut best = None;
    let mut rest = bytes;
    while let Some(at) = rest.windows(MARKER.len()).position(|w| w == MARKER) {
        rest = &rest[at + MARKER.len()..];
        let digits: Vec<u8> = rest.iter().take_while(|b| b.is_ascii_digit()).copied().collect();
        if let Some(round) = std::str::from_utf8(&digits).ok().and_then(|d| d.parse::<u32>().ok()) {
            best = best.max(Some(round));
        }
    }
    best
}

/// Opens one stream, reports when its `put` arrived (and gives back its connecting permit),
/// then reports each new round it sees.
async fn follow(
    address: String,
    key: String,
    permit: OwnedSemaphorePermit,
    opened: mpsc::UnboundedSender<bool>,
    seen: mpsc::UnboundedSender<(u32, Instant)>,
) {
    let mut permit = Some(permit);
    let Ok(mut socket) = TcpStream::connect(&address).await else {
        let _ = opened.send(false);
        return;
    };
    let head = format!("GET /v1/sdk/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\r\n");
    if socket.write_all(head.as_bytes()).await.is_err() {
        let _ = opened.send(false);
        return;
    }
    let mut buffer = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    let mut put = false;
    let mut last_round = 0;
    loop {
        let n = match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !put {
                    let _ = opened.send(false);
                }
                return;
            }
            Ok(n) => n,
        };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk[..n]);
        if !put && buffer.windows(10).any(|w| w == b"event: put") {
            put = true;
            permit.take();
            let _ = opened.send(true);
        }
        if let Some(round) = highest_round(&buffer).filter(|r| *r > last_round) {
            last_round = round;
            let _ = seen.send((round, at));
        }
        // Keep a tail long enough to hold a marker split across reads.
        let keep = buffer.len().saturating_sub(64);
        buffer.drain(..keep);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, streams, rounds] = &args[..] else {
        eprintln!("usage: vexil-sdk-streams URL KEY STREAMS ROUNDS");
        std::process::exit(2);
    };
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let streams: usize = streams.parse().expect("STREAMS is a number");
    let rounds: u32 = rounds.parse().expect("ROUNDS is a number");

    let status = request(&address, "POST", "/v1/admin/flags", key, &flag(0)).await.expect("the server answers");
    assert!(status == 201 || status == 409, "creating the flag answered {status}");

    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let connecting = std::sync::Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let started = Instant::now();
    let (mut open, mut failed) = (0usize, 0usize);
    for _ in 0..streams {
        let permit = connecting.clone().acquire_owned().await.unwrap();
        tokio::spawn(follow(address.clone(), key.clone(), permit, opened_tx.clone(), seen_tx.clone()));
    }
    while open + failed < streams {
        match opened.recv().await {
            Some(true) => open += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    println!("streams: {open} open, {failed} failed, opened in {:.1} s", started.elapsed().as_secs_f64());

    for round in 1..=rounds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let changed_at = Instant::now();
        let status = request(&address, "PUT", &format!("/v1/admin/flags/{FLAG}"), key, &flag(round)).await.unwrap();
        assert!((200..300).contains(&status), "the change answered {status}");
        let mut delays = Vec::with_capacity(open);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while delays.len() < open {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some((r, at))) if r == round => delays.push(at.saturating_duration_since(changed_at)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        delays.sort();
        let within = delays.iter().filter(|d| **d <= Duration::from_secs(1)).count();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        if delays.is_empty() {
            println!("round {round}: reached no stream within 10 s");
            continue;
        }
        println!(
            "round {round}: reached {} of {open} streams; within 1 s: {within} ({:.2} %); p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            delays.len(),
            100.0 * within as f64 / open as f64,
            ms(percentile(&delays, 0.5)),
            ms(percentile(&delays, 0.99)),
            ms(*delays.last().unwrap()),
        );
    }
}
