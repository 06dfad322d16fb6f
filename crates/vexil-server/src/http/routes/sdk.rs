//! Configuration for SDKs that evaluate locally: the full flags document with an `ETag`, and a
//! Server-Sent Events stream of its changes.
//!
//! The stream sends `put` with the whole document on connect, then for every new snapshot the
//! difference to the previous one: `patch` `{"kind", "key", "object"}` per created or updated
//! flag or segment and `delete` `{"kind", "key"}` per removed one. Each event's `id` is the
//! revision it brings the client to. A comment line `: heartbeat` keeps idle connections open.
//! Flags under an emergency stop are served `enabled: false` (see [`crate::service::snapshot`]), so SDKs
//! that evaluate locally honour stops without knowing about them.

use crate::http::extract::if_none_match;
use crate::http::state::AppState;
use crate::service::snapshot::{diff, Change, Snapshot};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

/// `GET /v1/sdk/flags`
pub async fn flags(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshot = state.snapshots.current();
    if if_none_match(&headers, &snapshot.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, snapshot.etag.clone())]).into_response();
    }
    (
        [(header::ETAG, snapshot.etag.clone()), (header::CONTENT_TYPE, "application/json".into())],
        snapshot.sdk_document.clone(),
    )
        .into_response()
}

fn change_event(change: &Change<'_>, revision: u64) -> Event {
    let (name, data) = match change {
        Change::Patch { kind, key, object } => ("patch", json!({"kind": kind, "key": key, "object": object})),
        Change::Delete { kind, key } => ("delete", json!({"kind": kind, "key": key})),
    };
    Event::default().event(name).id(revision.to_string()).data(data.to_string())
}

fn put_event(snapshot: &Snapshot) -> Event {
    Event::default().event("put").id(snapshot.revision.to_string()).data(snapshot.sdk_document_text())
}

/// `GET /v1/sdk/stream`
pub async fn stream(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = state.snapshots.subscribe();
    let first: Arc<Snapshot> = changes.borrow_and_update().clone();
    let shutdown = state.shutdown.clone();
    let initial = stream::once(std::future::ready(put_event(&first)));
    let updates = stream::unfold((changes, first), move |(mut changes, last)| {
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = shutdown.cancelled() => None,
                changed = changes.changed() => {
                    changed.ok()?;
                    let next = changes.borrow_and_update().clone();
                    let events: Vec<Event> = diff(&last, &next).iter().map(|c| change_event(c, next.revision)).collect();
                    Some((stream::iter(events), (changes, next)))
                }
            }
        }
    })
    .flatten();
    Sse::new(initial.chain(updates).map(Ok))
        .keep_alive(KeepAlive::new().interval(state.config.sse_heartbeat).text("heartbeat"))
}
