//! The configuration streams' fan-out: each configuration change is diffed and serialised into
//! one SSE frame, once, and every open `GET /v1/sdk/stream` sends that same frame (a
//! reference-counted `Bytes`), so a node holds many streams at the cost of their sockets, not of
//! a copy of the configuration or a diff per subscriber. The same broadcast carries, serialised
//! once as well, the OFREP `refetchEvaluation` message every open `GET /ofrep/v1/event-stream`
//! sends for that change.
//!
//! One task follows the published snapshots and broadcasts a [`Frame`] per change it observes,
//! each saying which revision it starts from and which it brings a client to; the frames form a
//! chain. An SDK stream starts with a `put` of the current snapshot (its document is shared too)
//! and then forwards the frames that continue from where its client is. A frame that does not
//! (the stream fell behind the broadcast buffer, or its `put` came from a snapshot the task
//! skipped) is replaced by a fresh `put` of the current snapshot: a client is never sent a diff
//! against a state it does not have. An OFREP stream needs no chain: every frame newer than what
//! its client was last told becomes one `refetchEvaluation` naming the newest revision. The web
//! console's stream (`GET /v1/admin/stream`) follows the same rule with its own message,
//! `event: revision` naming the newest revision.

use crate::http::error::ApiError;
use crate::service::snapshot::{diff, Change, Snapshot, Snapshots};
use crate::service::supervise::Supervisor;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// The fan-out of each environment, started with the first stream opened in it and ended at
/// shutdown or when the environment is deleted.
#[derive(Default)]
pub struct SdkStreamsByEnvironment {
    by_key: std::sync::Mutex<std::collections::HashMap<Arc<str>, Arc<SdkStreams>>>,
}

impl SdkStreamsByEnvironment {
    /// The fan-out of `environment`, started now if this is its first stream, under the
    /// supervisor: a panic restarts it, and streams that missed a change get a fresh `put`.
    pub fn of(
        &self,
        environment: &Arc<str>,
        snapshots: &Arc<Snapshots>,
        supervisor: &Supervisor,
        shutdown: &CancellationToken,
    ) -> Arc<SdkStreams> {
        let mut by_key = self.by_key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A deleted environment's fan-out ended; one created again under its key starts anew.
        by_key.retain(|_, streams| !streams.ended.is_cancelled());
        if let Some(streams) = by_key.get(environment) {
            return streams.clone();
        }
        let streams = Arc::new(SdkStreams::default());
        by_key.insert(environment.clone(), streams.clone());
        // The task holds the snapshots only while it runs, so a deleted environment's ends.
        let (fanout, snapshots) = (streams.clone(), Arc::downgrade(snapshots));
        let stop = shutdown.clone();
        supervisor.spawn("sdk_stream_fanout", shutdown.clone(), move || {
            let (fanout, snapshots, stop) = (fanout.clone(), snapshots.upgrade(), stop.clone());
            async move {
                match snapshots {
                    Some(snapshots) => fanout.run(snapshots, stop).await,
                    None => fanout.ended.cancel(),
                }
            }
        });
        streams
    }
}

/// Frames kept for streams that are momentarily behind; one further behind gets a fresh `put`.
const BUFFERED_FRAMES: usize = 256;

/// The changes from one revision to another, as SSE text.
#[derive(Clone, Debug)]
pub struct Frame {
    pub from: u64,
    pub to: u64,
    /// The SDK stream's `patch` / `delete` events.
    pub bytes: Bytes,
    /// The OFREP stream's `refetchEvaluation` message for revision `to`.
    pub refetch: Bytes,
}

/// Which protocol a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// `put`, then `patch` / `delete`: the SDK stream.
    Sdk,
    /// OFREP's notification-only `refetchEvaluation` messages.
    Ofrep,
    /// The console's notification-only `revision` messages.
    Revisions,
}

/// Broadcasts one frame per configuration change to every SDK stream.
pub struct SdkStreams {
    frames: broadcast::Sender<Frame>,
    /// Cancelled when [`SdkStreams::run`] returns (not when it panics).
    ended: CancellationToken,
}

impl Default for SdkStreams {
    fn default() -> SdkStreams {
        SdkStreams { frames: broadcast::Sender::new(BUFFERED_FRAMES), ended: CancellationToken::new() }
    }
}

impl SdkStreams {
    /// Follows the published snapshots until `shutdown` or their end, broadcasting each change
    /// once. A panic here does not end the fan-out: the supervisor runs it again.
    pub async fn run(self: Arc<SdkStreams>, snapshots: Arc<Snapshots>, shutdown: CancellationToken) {
        self.follow(snapshots, shutdown).await;
        self.ended.cancel();
    }

    async fn follow(&self, snapshots: Arc<Snapshots>, shutdown: CancellationToken) {
        // Not kept: once a deleted environment's snapshots are dropped, `changed` fails and this
        // task ends.
        let mut published = snapshots.subscribe();
        drop(snapshots);
        let mut last = published.borrow_and_update().clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = published.changed() => if changed.is_err() { return },
            }
            let next = published.borrow_and_update().clone();
            let frame = Frame {
                from: last.revision,
                to: next.revision,
                bytes: encode_changes(&diff(&last, &next), next.revision),
                refetch: refetch_frame(next.revision),
            };
            // No stream open is not an error: nobody needed this frame.
            let _ = self.frames.send(frame);
            last = next;
        }
    }

    /// The response of one `GET /v1/sdk/stream`: a `put`, then the changes, with a heartbeat
    /// comment every `heartbeat` and an end at `shutdown`.
    pub fn open(&self, snapshots: Arc<Snapshots>, heartbeat: Duration, shutdown: CancellationToken) -> Response {
        // Subscribe before reading the snapshot, so no change between the two is missed.
        let frames = self.frames.subscribe();
        let first = snapshots.current();
        let at = first.revision;
        let put = stream::iter(put_frame(&first));
        let following = Following { protocol: Protocol::Sdk, frames, snapshots, at, ticks: ticks(heartbeat), shutdown };
        respond(put, following)
    }

    /// The response of one `GET /ofrep/v1/event-stream`: OFREP `refetchEvaluation` messages,
    /// one per configuration change, with heartbeats like the SDK stream's. `last_seen` is the
    /// revision the client was last told (its `Last-Event-ID`); unless it is the current one
    /// the stream starts with a message for the current revision, so a change made between the
    /// client's bulk evaluation and its connection, or while it was away, is never missed.
    pub fn open_ofrep(
        &self,
        snapshots: Arc<Snapshots>,
        last_seen: Option<u64>,
        heartbeat: Duration,
        shutdown: CancellationToken,
    ) -> Response {
        self.open_notices(Protocol::Ofrep, snapshots, last_seen, heartbeat, shutdown)
    }

    /// The response of one `GET /v1/admin/stream`: a `revision` message for the current
    /// revision unless `last_seen` is it, then one per configuration change, with heartbeats.
    pub fn open_revisions(
        &self,
        snapshots: Arc<Snapshots>,
        last_seen: Option<u64>,
        heartbeat: Duration,
        shutdown: CancellationToken,
    ) -> Response {
        self.open_notices(Protocol::Revisions, snapshots, last_seen, heartbeat, shutdown)
    }

    /// A stream of notices (`protocol` is not the SDK's), each naming a revision newer than
    /// what the client was last told.
    fn open_notices(
        &self,
        protocol: Protocol,
        snapshots: Arc<Snapshots>,
        last_seen: Option<u64>,
        heartbeat: Duration,
        shutdown: CancellationToken,
    ) -> Response {
        let frames = self.frames.subscribe();
        let at = snapshots.current().revision;
        let first = match last_seen {
            Some(seen) if seen >= at => vec![],
            _ => vec![notice(protocol, at)],
        };
        let following = Following { protocol, frames, snapshots, at, ticks: ticks(heartbeat), shutdown };
        respond(stream::iter(first), following)
    }
}

/// The notice of `revision` in a notification-only protocol.
fn notice(protocol: Protocol, revision: u64) -> Bytes {
    match protocol {
        Protocol::Revisions => revision_frame(revision),
        Protocol::Ofrep | Protocol::Sdk => refetch_frame(revision),
    }
}

/// The console's `revision` message: `id` the revision (a reconnecting `EventSource` sends it
/// back as `Last-Event-ID`), data `{"revision": N}`.
fn revision_frame(revision: u64) -> Bytes {
    Bytes::from(format!("id: {revision}\nevent: revision\ndata: {{\"revision\":{revision}}}\n\n"))
}

/// The revision a reconnecting client was last told (`Last-Event-ID`), if it says; 400
/// `invalid_header` when that is not a revision. An empty one is what a client sends before it
/// has seen any event.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let presented = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
    let Some(text) = presented.filter(|text| !text.is_empty()) else { return Ok(None) };
    let revision = text.parse::<u64>().map_err(|_| {
        ApiError::bad_request(
            "invalid_header",
            "Last-Event-ID must be the id of an event this stream sent (a revision number, e.g. 42)",
        )
        .with_field("Last-Event-ID")
    })?;
    Ok(Some(revision))
}

/// Ticks every `heartbeat`, the first after one interval.
fn ticks(heartbeat: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// An event-stream response: `first`, then what `following` sends until it ends.
fn respond(first: impl stream::Stream<Item = Bytes> + Send + 'static, following: Following) -> Response {
    let updates = stream::unfold(following, |mut following| async move {
        let chunks = following.next().await?;
        Some((stream::iter(chunks), following))
    })
    .flatten();
    let body = Body::from_stream(first.chain(updates).map(Ok::<_, Infallible>));
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// One stream's place in the chain of frames.
struct Following {
    protocol: Protocol,
    frames: broadcast::Receiver<Frame>,
    snapshots: Arc<Snapshots>,
    /// The revision the client has.
    at: u64,
    ticks: tokio::time::Interval,
    shutdown: CancellationToken,
}

impl Following {
    /// What to send next (`None` ends the stream).
    async fn next(&mut self) -> Option<Vec<Bytes>> {
        loop {
            // Biased: a shutdown ends the stream even while frames are waiting.
            let received = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                received = self.frames.recv() => received,
                _ = self.ticks.tick() => return Some(vec![Bytes::from_static(b": heartbeat\n\n")]),
            };
            if self.protocol != Protocol::Sdk {
                match received {
                    Ok(frame) if frame.to <= self.at => {}
                    Ok(frame) => {
                        self.at = frame.to;
                        let message =
                            if self.protocol == Protocol::Ofrep { frame.refetch } else { revision_frame(frame.to) };
                        return Some(vec![message]);
                    }
                    Err(RecvError::Lagged(_)) => {
                        let current = self.snapshots.current().revision;
                        if current > self.at {
                            self.at = current;
                            return Some(vec![notice(self.protocol, current)]);
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
                continue;
            }
            match received {
                Ok(frame) if frame.to <= self.at => {}
                Ok(frame) if frame.from == self.at => {
                    self.at = frame.to;
                    return Some(vec![frame.bytes]);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    let current = self.snapshots.current();
                    self.at = current.revision;
                    return Some(put_frame(&current));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// `event: put` with the whole document: the document's own bytes are shared, not copied.
fn put_frame(snapshot: &Snapshot) -> Vec<Bytes> {
    let head = format!("event: put\nid: {}\ndata: ", snapshot.revision);
    vec![Bytes::from(head), snapshot.sdk_document(), Bytes::from_static(b"\n\n")]
}

/// OFREP's `refetchEvaluation` message for `revision`: the envelope's `event` is always
/// `message`, its `id` the revision (so a reconnecting client's `Last-Event-ID` says what it was
/// last told), and `etag` the configuration's tag, `"<revision>"`, which the provider sends back
/// as `flagConfigEtag`.
pub fn refetch_frame(revision: u64) -> Bytes {
    let data = json!({"type": "refetchEvaluation", "etag": config_etag(revision)});
    Bytes::from(format!("id: {revision}\nevent: message\ndata: {data}\n\n"))
}

/// The tag of the configuration at `revision`, as OFREP's `etag` / `flagConfigEtag` carry it.
pub fn config_etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// `patch` and `delete` events for `changes`, each with the revision they lead to as `id`.
fn encode_changes(changes: &[Change<'_>], revision: u64) -> Bytes {
    let mut text = String::new();
    for change in changes {
        let (name, data) = match change {
            Change::Patch { kind, key, object } => ("patch", json!({"kind": kind, "key": key, "object": object})),
            Change::Delete { kind, key } => ("delete", json!({"kind": kind, "key": key})),
        };
        // Compact JSON has no line breaks, so each event's data is one `data:` line.
        text.push_str(&format!("event: {name}\nid: {revision}\ndata: {data}\n\n"));
    }
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn following(frames: broadcast::Receiver<Frame>, at: u64) -> Following {
        let snapshots = Arc::new(Snapshots::new(Snapshot::unloaded(), Metrics::new()));
        let ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        Following { protocol: Protocol::Sdk, frames, snapshots, at, ticks, shutdown: CancellationToken::new() }
    }

    fn frame(from: u64, to: u64) -> Frame {
        Frame {
            from,
            to,
            bytes: Bytes::from(format!("event: patch\nid: {to}\ndata: {{}}\n\n")),
            refetch: refetch_frame(to),
        }
    }

    fn text(chunks: Vec<Bytes>) -> String {
        chunks.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect()
    }

    #[tokio::test]
    async fn an_environments_fanout_is_supervised_and_ends_with_its_snapshots() {
        let supervisor = Supervisor::new();
        let snapshots = Arc::new(Snapshots::new(Snapshot::unloaded(), Metrics::new()));
        let streams = SdkStreamsByEnvironment::default();
        let shutdown = CancellationToken::new();
        let fanout = streams.of(&Arc::from("staging"), &snapshots, &supervisor, &shutdown);
        let tasks: Vec<String> = supervisor.collector().collect()[0]
            .get_metric()
            .iter()
            .flat_map(|m| m.get_label().iter().map(|l| l.value().to_string()).collect::<Vec<_>>())
            .collect();
        assert_eq!(tasks, ["sdk_stream_fanout"]);
        assert!(Arc::ptr_eq(&fanout, &streams.of(&Arc::from("staging"), &snapshots, &supervisor, &shutdown)));
        // The environment is deleted: its snapshots go, and so does its fan-out.
        drop(snapshots);
        tokio::time::timeout(Duration::from_secs(10), fanout.ended.cancelled()).await.expect("the fan-out ended");
    }

    #[tokio::test]
    async fn a_stream_forwards_the_chain_and_resyncs_with_a_put_when_it_breaks() {
        let sender = broadcast::Sender::new(4);
        let mut stream = following(sender.subscribe(), 0);
        for f in [frame(0, 0), frame(0, 3), frame(5, 6)] {
            sender.send(f).unwrap();
        }
        // Revision 0 is what the client has: skipped. 0 → 3 continues the chain.
        assert_eq!(text(stream.next().await.unwrap()), "event: patch\nid: 3\ndata: {}\n\n");
        // 5 → 6 does not start at 3: the client gets the current snapshot whole.
        let put = text(stream.next().await.unwrap());
        assert!(put.starts_with("event: put\nid: 0\ndata: {\"flags\":[]"), "{put}");
        assert_eq!(stream.at, 0);

        // Falling behind the buffer also resynchronises, rather than skipping changes.
        for to in 1..=6 {
            sender.send(frame(to - 1, to)).unwrap();
        }
        assert!(text(stream.next().await.unwrap()).starts_with("event: put\n"));
        stream.shutdown.cancel();
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_console_stream_names_each_newer_revision() {
        let sender = broadcast::Sender::new(4);
        let mut stream = following(sender.subscribe(), 2);
        stream.protocol = Protocol::Revisions;
        for f in [frame(1, 2), frame(2, 5)] {
            sender.send(f).unwrap();
        }
        assert_eq!(text(stream.next().await.unwrap()), "id: 5\nevent: revision\ndata: {\"revision\":5}\n\n");
    }

    #[tokio::test]
    async fn an_ofrep_stream_sends_one_refetch_per_newer_revision_and_goes_on_after_lagging() {
        let sender = broadcast::Sender::new(4);
        let mut stream = following(sender.subscribe(), 2);
        stream.protocol = Protocol::Ofrep;
        for f in [frame(1, 2), frame(5, 6), frame(6, 7)] {
            sender.send(f).unwrap();
        }
        // Revision 2 was announced already; 5 → 6 is not a chain but still a newer revision.
        let expected = "id: 6\nevent: message\ndata: {\"etag\":\"\\\"6\\\"\",\"type\":\"refetchEvaluation\"}\n\n";
        assert_eq!(text(stream.next().await.unwrap()), expected);
        assert!(text(stream.next().await.unwrap()).starts_with("id: 7\n"));
        // Lagging behind the buffer loses nothing a client needs: it goes on with the newest
        // frames kept (the current snapshot, revision 0 here, is not newer than what it has).
        for to in 8..=13 {
            sender.send(frame(to - 1, to)).unwrap();
        }
        assert!(text(stream.next().await.unwrap()).starts_with("id: 10\n"));
        stream.shutdown.cancel();
        assert!(stream.next().await.is_none());
    }
}
