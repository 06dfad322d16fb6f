//! Evaluation counts and events, sent to the server in the background (SPEC 5).
//!
//! A getter adds one to an atomic counter of the configuration it evaluated on and, for a flag
//! with `track_events`, queues a raw `evaluation` event (the one the server would emit);
//! [`Client::track`](crate::Client::track) queues the application's own events. Every
//! `report_interval` a task sends the counts to `POST /v1/events/evaluation-counts` and the
//! queued events, in batches, to `POST /v1/events`. Nothing here waits on the evaluation path.
//!
//! Bounded: the event queue holds `event_capacity` events; while the server cannot be reached
//! events stay queued and are sent again, and an event that finds the queue full is dropped and
//! counted ([`Delivery::events_dropped`]). Counts are summed per flag and variant while they wait,
//! so they take no more room however long the server is away. Each event carries an `event_id`,
//! so one sent twice (a reply lost after the server took it) is counted once by the server.
//! Likewise each report of counts carries a `report_id`: a report that got no answer is sent
//! again unchanged, same id and same counts, before any newer counts, so the server recognises
//! it if it had counted it; counts gathered meanwhile wait for the next report.

use crate::configuration::Configuration;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use vexil_core::Evaluation;

/// Events sent per request at most (the server takes up to 10,000).
const BATCH: usize = 1_000;

/// What the background reporting has done so far, for the application's own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Events the server acknowledged (accepted, duplicates or rejected as invalid).
    pub events_sent: u64,
    /// Events dropped because the queue was full (the server unreachable for long).
    pub events_dropped: u64,
    /// Evaluations whose counts the server acknowledged.
    pub evaluations_reported: u64,
}

/// The counts and events waiting to be sent.
pub(crate) struct Reporter {
    events: Mutex<VecDeque<Value>>,
    capacity: usize,
    /// Counts taken from configurations that are no longer served, or not sent yet.
    pending_counts: Mutex<HashMap<(String, String), u64>>,
    /// The report of counts sent without an answer, to send again as it was.
    unanswered: Mutex<Option<CountsReport>>,
    /// One sender of counts at a time (the background task and `flush` may overlap), so two
    /// unanswered reports never compete for `unanswered`.
    sending_counts: tokio::sync::Mutex<()>,
    events_sent: AtomicU64,
    events_dropped: AtomicU64,
    evaluations_reported: AtomicU64,
}

impl Reporter {
    pub fn new(capacity: usize) -> Reporter {
        Reporter {
            events: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            pending_counts: Mutex::default(),
            unanswered: Mutex::default(),
            sending_counts: tokio::sync::Mutex::new(()),
            events_sent: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            evaluations_reported: AtomicU64::new(0),
        }
    }

    pub fn delivery(&self) -> Delivery {
        Delivery {
            events_sent: self.events_sent.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            evaluations_reported: self.evaluations_reported.load(Ordering::Relaxed),
        }
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub fn queue(&self, event: Value) {
        let mut events = self.events.lock().expect("event queue poisoned");
        if events.len() >= self.capacity {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            events.push_back(event);
        }
    }

    /// Queues the raw `evaluation` event of a flag with `track_events`, shaped as the server's.
    pub fn queue_evaluation(&self, evaluation: &Evaluation<'_>, user_id: &str) {
        let mut properties = Map::new();
        properties.insert("reason".into(), json!(evaluation.reason.name()));
        properties.insert("value".into(), evaluation.value.clone());
        if let Some(version) = evaluation.flag.meta.version {
            properties.insert("flag_version".into(), json!(version));
        }
        self.queue(json!({
            "event_id": uuid::Uuid::new_v4().to_string(), "event": evaluation.flag.key, "type": "evaluation",
            "user_id": user_id, "timestamp": now_rfc3339(), "properties": properties,
            "variant": evaluation.variant,
        }));
    }

    /// Keeps the counts of a configuration that is being replaced, for the next report.
    pub fn retire(&self, configuration: &Configuration) {
        self.add_counts(configuration.take_counts());
    }

    fn add_counts(&self, counts: Vec<(String, String, u64)>) {
        let mut pending = self.pending_counts.lock().expect("pending counts poisoned");
        for (flag, variant, n) in counts {
            *pending.entry((flag, variant)).or_default() += n;
        }
    }

    /// Sends what has gathered; what the server did not take waits for the next report.
    pub async fn report(&self, http: &reqwest::Client, base_url: &str, key: &str, current: Option<&Configuration>) {
        if let Some(configuration) = current {
            self.add_counts(configuration.take_counts());
        }
        let url = format!("{base_url}/v1/events/evaluation-counts");
        let one_at_a_time = self.sending_counts.lock().await;
        while let Some(report) = self.next_counts_report() {
            match send(http, &url, key, &report.body).await {
                Ok(()) => {
                    self.evaluations_reported.fetch_add(report.evaluations, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send evaluation counts; sending the same report next time");
                    *self.unanswered.lock().expect("unanswered report poisoned") = Some(report);
                    break;
                }
            }
        }
        drop(one_at_a_time);
        loop {
            let batch: Vec<Value> = {
                let mut events = self.events.lock().expect("event queue poisoned");
                let n = events.len().min(BATCH);
                events.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let sent = batch.len() as u64;
            if let Err(e) = send(http, &format!("{base_url}/v1/events"), key, &json!({ "events": batch })).await {
                tracing::warn!(error = %e, "cannot send events; keeping them for the next report");
                self.put_back(batch);
                return;
            }
            self.events_sent.fetch_add(sent, Ordering::Relaxed);
        }
    }

    /// The report of counts to send now: the one that got no answer, as it was, or a new one
    /// (with a new id) of the counts gathered; `None` when there is nothing to send.
    fn next_counts_report(&self) -> Option<CountsReport> {
        if let Some(report) = self.unanswered.lock().expect("unanswered report poisoned").take() {
            return Some(report);
        }
        let counts = std::mem::take(&mut *self.pending_counts.lock().expect("pending counts poisoned"));
        if counts.is_empty() {
            return None;
        }
        let evaluations = counts.values().sum();
        let counts: Vec<Value> = counts
            .into_iter()
            .map(|((flag, variant), n)| json!({"flag": flag, "variant": variant, "count": n}))
            .collect();
        let body = json!({"report_id": uuid::Uuid::new_v4().to_string(), "counts": counts});
        Some(CountsReport { body, evaluations })
    }

    /// Puts unsent events back in front of the queue; those that no longer fit are dropped.
    fn put_back(&self, batch: Vec<Value>) {
        let mut events = self.events.lock().expect("event queue poisoned");
        let room = self.capacity.saturating_sub(events.len());
        let dropped = batch.len().saturating_sub(room);
        self.events_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        for event in batch.into_iter().take(room).rev() {
            events.push_front(event);
        }
    }
}

/// One report of evaluation counts, kept as it was first sent.
struct CountsReport {
    /// `{"report_id", "counts"}`.
    body: Value,
    /// The evaluations its counts add up to.
    evaluations: u64,
}

async fn send(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Result<(), String> {
    let response = http.post(url).bearer_auth(key).json(body).send().await.map_err(|e| e.to_string())?;
    // A refused batch (400, 413) would be refused again: it counts as delivered, and is logged.
    match response.status() {
        status if status.is_success() => Ok(()),
        status if status.is_client_error() && status.as_u16() != 401 && status.as_u16() != 429 => {
            tracing::warn!(%status, url, "the server refused a report; not sending it again");
            Ok(())
        }
        status => Err(format!("the server answered {status}")),
    }
}

/// The time of an event, taken when it is queued (it may be sent much later).
pub(crate) fn now_rfc3339() -> Value {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).map_or(Value::Null, Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one HTTP request from `socket` and returns its JSON body.
    async fn read_body(socket: &mut TcpStream) -> Value {
        let mut data = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the request ended early");
            data.extend_from_slice(&buffer[..n]);
            let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                return serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap();
            }
        }
    }

    fn sorted_counts(body: &Value) -> Vec<(String, String, u64)> {
        let mut counts: Vec<_> = body["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["flag"].as_str().unwrap().into(),
                    c["variant"].as_str().unwrap().into(),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect();
        counts.sort();
        counts
    }

    #[tokio::test]
    async fn a_report_whose_answer_was_lost_is_sent_again_unchanged_before_newer_counts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // The server takes the first report and hangs up without answering (the answer is lost);
        // it answers the next two.
        let server = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for answer in [false, true, true] {
                let (mut socket, _) = listener.accept().await.unwrap();
                bodies.push(read_body(&mut socket).await);
                if answer {
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                    socket.write_all(reply.as_bytes()).await.unwrap();
                }
            }
            bodies
        });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let reporter = Reporter::new(10);
        reporter.add_counts(vec![("a".into(), "on".into(), 3)]);
        reporter.report(&http, &base, "key", None).await;
        assert_eq!(reporter.delivery().evaluations_reported, 0, "no answer, no acknowledgement");

        // Newer counts wait until the unanswered report is through.
        reporter.add_counts(vec![("a".into(), "on".into(), 2), ("b".into(), "off".into(), 1)]);
        reporter.report(&http, &base, "key", None).await;
        assert_eq!(reporter.delivery().evaluations_reported, 6);
        let bodies = server.await.unwrap();
        assert_eq!(bodies[1], bodies[0], "sent again as it was: the same report_id and counts");
        assert_eq!(sorted_counts(&bodies[0]), vec![("a".into(), "on".into(), 3)]);
        let id = bodies[0]["report_id"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).map(|u| u.get_version_num()), Ok(4));
        assert_ne!(bodies[2]["report_id"], bodies[0]["report_id"], "a new report has a new id");
        assert_eq!(sorted_counts(&bodies[2]), vec![("a".into(), "on".into(), 2), ("b".into(), "off".into(), 1)]);
    }
}
