//! `/v1/admin/emergency-stop`: stop all flags, the flags with a tag, or listed flags; list the
//! active stops; preview what a stop would cover; lift them all (see
//! [`crate::service::safety::stops`]).

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery, ChangeReason, Env, OptionalJson};
use crate::http::state::AppState;
use crate::service::environments::Environment;
use crate::service::safety::stops::{self, Scope, Stop, StopError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vexil_store::StoredDocument;

impl From<StopError> for ApiError {
    fn from(e: StopError) -> Self {
        match e {
            StopError::Invalid { field, message } => {
                ApiError::bad_request("invalid_request", message).with_field(field)
            }
            StopError::Store(e) => e.into(),
        }
    }
}

/// The active stops and the flags they cover, after this node's snapshot caught up.
async fn status(state: &AppState, env: &Environment) -> Result<(Vec<StoredDocument>, Vec<String>), ApiError> {
    env.snapshots.catch_up(env.store.as_ref()).await;
    let active = stops::active(env.store.as_ref()).await?;
    let stopped = stops::covered(&active, &env.snapshots.current().flags);
    state
        .safety
        .metrics
        .active_stops
        .with_label_values(&[&*env.key])
        .set(i64::try_from(active.len()).unwrap_or(i64::MAX));
    Ok((active, stopped))
}

/// `POST /v1/admin/emergency-stop` → 201 with the stored stop and `stopped_flags`.
pub async fn stop(
    State(state): State<AppState>,
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    ApiJson(request): ApiJson<Stop>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let stored = stops::stop(env.store.as_ref(), request, &caller.change(reason)).await?;
    let (_, stopped) = status(&state, &env).await?;
    state.safety.notifier.notify(crate::service::notify::Notification::new(
        "emergency_stop.started",
        format!("emergency stop {} covers {} flag(s)", stored.key, stopped.len()),
        json!({"stop": stored.to_json(), "stopped_flags": stopped, "actor": &*caller.key_id, "environment": &*env.key}),
    ));
    let mut body = stored.to_json();
    body["stopped_flags"] = json!(stopped);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /v1/admin/emergency-stop` → `{"stops": [...], "stopped_flags": [...]}`.
pub async fn list(State(state): State<AppState>, Env(env): Env) -> Result<Json<Value>, ApiError> {
    let (active, stopped) = status(&state, &env).await?;
    let stops: Vec<Value> = active.iter().map(StoredDocument::to_json).collect();
    Ok(Json(json!({"stops": stops, "stopped_flags": stopped})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    scope: Scope,
    tag: Option<String>,
    /// Comma-separated flag keys.
    flags: Option<String>,
}

/// `GET /v1/admin/emergency-stop/preview?scope=&tag=&flags=a,b` → `{"scope", "flags",
/// "experiments"}`: what the stop would cover now, checked as the stop itself would be (400
/// naming the field), without storing anything; so a person confirms exactly what will stop.
pub async fn preview(Env(env): Env, ApiQuery(q): ApiQuery<PreviewQuery>) -> Result<Json<stops::Preview>, ApiError> {
    let flags = q.flags.map(|list| list.split(',').map(|k| k.trim().to_owned()).collect()).unwrap_or_default();
    let stop = Stop { scope: q.scope, tag: q.tag, flags, reason: None, stopped_at: None };
    stop.check(env.store.as_ref()).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok(Json(stops::preview(&stop, &env.snapshots.current().flags)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    reason: Option<String>,
}

/// `POST /v1/admin/emergency-stop/resume` `{}` → `{"resumed": [...], "stopped_flags": []}`.
pub async fn resume(
    State(state): State<AppState>,
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    OptionalJson(request): OptionalJson<ResumeRequest>,
) -> Result<Json<Value>, ApiError> {
    let reason = reason.or(request.and_then(|r| r.reason));
    let resumed = stops::resume(env.store.as_ref(), &caller.change(reason)).await?;
    let (_, stopped) = status(&state, &env).await?;
    let resumed: Vec<Value> = resumed.iter().map(StoredDocument::to_json).collect();
    if !resumed.is_empty() {
        state.safety.notifier.notify(crate::service::notify::Notification::new(
            "emergency_stop.resumed",
            format!("{} emergency stop(s) lifted", resumed.len()),
            json!({"resumed": resumed, "actor": &*caller.key_id, "environment": &*env.key}),
        ));
    }
    Ok(Json(json!({"resumed": resumed, "stopped_flags": stopped})))
}
