//! Configuration for SDKs that evaluate locally: the full flags document with an `ETag`, and a
//! Server-Sent Events stream of its changes.
//!
//! The stream sends `put` with the whole document on connect, then for every new snapshot the
//! difference to the previous one: `patch` `{"kind", "key", "object"}` per created or updated
//! flag or segment and `delete` `{"kind", "key"}` per removed one. Each event's `id` is the
//! revision it brings the client to. A comment line `: heartbeat` keeps idle connections open.
//! Each change is serialised once for all streams ([`crate::http::sdk_stream`]).
//! The web console's stream, `GET /v1/admin/stream`, rides on the same fan-out with a notice
//! per change instead of the changes.
//! Flags under an emergency stop are served `enabled: false` (see [`crate::service::snapshot`]), so SDKs
//! that evaluate locally honour stops without knowing about them.

use crate::http::extract::{accepts_gzip, if_none_match, Env};
use crate::http::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `GET /v1/sdk/flags`. The ETag names the environment and the revision its snapshot was read
/// at, which stays while only other environments change (see [`crate::service::snapshot`]);
/// another environment's tag never gets a 304. The body is serialised and gzip-compressed once
/// per snapshot, not per request; a client that accepts gzip gets the compressed bytes.
pub async fn flags(Env(env): Env, headers: HeaderMap) -> Response {
    let snapshot = env.snapshots.current();
    let etag = format!("\"{}-{}\"", env.key, snapshot.revision);
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)], [vary]).into_response();
    }
    let json = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if accepts_gzip(&headers) {
        let gzip = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([(header::ETAG, etag)], [json, vary, gzip], snapshot.sdk_document_gzip()).into_response();
    }
    ([(header::ETAG, etag)], [json, vary], snapshot.sdk_document()).into_response()
}

/// `GET /v1/sdk/stream`
pub async fn stream(State(state): State<AppState>, Env(env): Env) -> Response {
    let streams = state.sdk_streams.of(&env.key, &env.snapshots, &state.supervisor, &state.shutdown);
    streams.open(env.snapshots.clone(), state.config.sse_heartbeat, state.shutdown.clone())
}

/// `GET /v1/admin/stream`: for the web console, a `revision` message whenever the environment's
/// configuration changes (a notice only: the console fetches what it shows again).
pub async fn admin_stream(
    State(state): State<AppState>,
    Env(env): Env,
    headers: HeaderMap,
) -> Result<Response, crate::http::error::ApiError> {
    let last_seen = crate::http::sdk_stream::last_event_id(&headers)?;
    let streams = state.sdk_streams.of(&env.key, &env.snapshots, &state.supervisor, &state.shutdown);
    Ok(streams.open_revisions(env.snapshots.clone(), last_seen, state.config.sse_heartbeat, state.shutdown.clone()))
}
