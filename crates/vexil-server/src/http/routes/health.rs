//! Operations endpoints, unauthenticated: liveness, readiness and Prometheus metrics.

use crate::http::error::ApiError;
use crate::http::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use sha2::Digest;
use std::time::Duration;

/// `GET /health`: the process answers.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: the store answers (within 2 s), a configuration snapshot is loaded, and no
/// background task keeps panicking.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let not_ready = |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message);
    let revision = tokio::time::timeout(Duration::from_secs(2), state.environments.backend().revision())
        .await
        .map_err(|_| not_ready("the store did not answer within 2 s".into()))?
        .map_err(|e| not_ready(format!("the store is unreachable: {e}")))?;
    let snapshots = &state.environments.default().snapshots;
    if !snapshots.current().loaded {
        return Err(not_ready("the configuration is not loaded yet".into()));
    }
    if let Some((task, cause)) = state.supervisor.failing().into_iter().next() {
        return Err(not_ready(format!("the background task {task} keeps failing: {cause}")));
    }
    Ok(Json(json!({"status": "ready", "revision": snapshots.current_at(), "store_revision": revision})))
}

/// `GET /metrics`: the Prometheus text format; with `metrics_key` configured, only for
/// `Authorization: Bearer <metrics_key>`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    if let Some(expected) = &state.config.metrics_key {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Digests compared, so the time taken does not tell how much of a guess was right.
        let digest = |text: &str| sha2::Sha256::digest(text.as_bytes());
        if presented.is_none_or(|presented| digest(presented) != digest(expected)) {
            return Err(ApiError::unauthorized());
        }
    }
    let snapshots = &state.environments.default().snapshots;
    let snapshot = snapshots.current();
    let text =
        state.metrics.render(snapshot.built_at.elapsed().as_secs_f64(), snapshots.current_at(), snapshot.flags.len());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
