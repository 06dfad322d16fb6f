//! Crash safety over HTTP: a client streams batches while the real `vexil serve` process is
//! killed with SIGKILL several times (each time after more batches were acknowledged) and
//! restarted. The client re-sends every batch it has no acknowledgement for. Afterwards every
//! event is archived exactly once and counted exactly once.

use crate::events::{enc, read_archive};
use crate::harness::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BATCHES: usize = 80;
const BATCH: usize = 500;
const KILLS: usize = 5;
const SENDERS: usize = 4;

type Queue = Arc<Mutex<VecDeque<String>>>;

/// Batches acknowledged, and batches sent but never acknowledged (which went back to the queue).
#[derive(Default, Clone, Copy)]
struct Progress {
    acked: usize,
    unanswered: usize,
}

type Shared = Arc<Mutex<Progress>>;

/// Posts batches from the queue until it is empty or the server stops answering; a batch
/// without an acknowledgement goes back to the queue.
async fn stream(base: String, key: String, queue: Queue, progress: Shared) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    loop {
        let Some(body) = queue.lock().unwrap().pop_front() else { return };
        let sent = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == StatusCode::OK => progress.lock().unwrap().acked += 1,
            _ => {
                progress.lock().unwrap().unanswered += 1;
                queue.lock().unwrap().push_back(body);
                return;
            }
        }
    }
}

fn spawn_senders(server: &Server, queue: &Queue, progress: &Shared) -> Vec<tokio::task::JoinHandle<()>> {
    (0..SENDERS)
        .map(|_| tokio::spawn(stream(server.base.clone(), server.key.clone(), queue.clone(), progress.clone())))
        .collect()
}

#[tokio::test]
async fn every_acknowledged_event_is_counted_and_archived_once_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let at = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let batches: VecDeque<String> = (0..BATCHES)
        .map(|b| {
            let events: Vec<Value> = (0..BATCH)
                .map(|i| {
                    json!({"event_id": format!("c-{b}-{i}"), "event": "crash", "user_id": format!("u{}", i % 97),
                                "value": 1.0, "timestamp": at})
                })
                .collect();
            serde_json::to_string(&events).unwrap()
        })
        .collect();
    let queue: Queue = Arc::new(Mutex::new(batches));
    let progress = Shared::default();
    let mut server = Server::start_in(&data_dir, Default::default()).await;
    for kill in 1..=KILLS {
        let senders = spawn_senders(&server, &queue, &progress);
        // Kill on acknowledged progress, while batches are in flight.
        while progress.lock().unwrap().acked < kill * BATCHES / (KILLS + 2) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let unanswered_before = progress.lock().unwrap().unanswered;
        server.kill().await;
        for sender in senders {
            sender.await.unwrap();
        }
        // The kill interrupted work: batches were still to send, and at least one request was
        // cut off without its answer (each sender had one in flight or sent one to the dead
        // server), so the redelivery after the restart is really exercised.
        let Progress { acked, unanswered } = *progress.lock().unwrap();
        assert!(acked < BATCHES, "kill {kill}: every batch was acknowledged before it");
        assert!(unanswered > unanswered_before, "kill {kill} cut off no request");
        server = Server::start_in(&data_dir, Default::default()).await;
    }
    while !queue.lock().unwrap().is_empty() {
        for sender in spawn_senders(&server, &queue, &progress) {
            sender.await.unwrap();
        }
    }
    assert_eq!(progress.lock().unwrap().acked, BATCHES, "every batch acknowledged once in the end");
    let total = (BATCHES * BATCH) as f64;
    let from = enc(&(chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339());
    let query = format!("/v1/stats/events?event=crash&window=day&from={from}");
    let mut counted = 0.0;
    for _ in 0..500 {
        let (_, stats) = server.call(reqwest::Method::GET, &query, None).await;
        counted = stats["buckets"].as_array().unwrap().iter().map(|b| b["count"].as_f64().unwrap()).sum();
        if counted >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, total);
    // Counted exactly `total`, and stays so once processing has nothing left.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, stats) = server.call(reqwest::Method::GET, &query, None).await;
    assert_eq!(stats["buckets"][0]["count"].as_f64(), Some(total), "{stats}");
    assert!(server.stop().await);
    let archived = read_archive(&data_dir.join("archive"));
    let ids: HashSet<&str> = archived.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(archived.len(), BATCHES * BATCH, "archived events");
    assert_eq!(ids.len(), BATCHES * BATCH, "distinct archived events");
}
