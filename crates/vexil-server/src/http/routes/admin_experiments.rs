//! The experiment lifecycle: `POST /v1/admin/experiments/{key}/start|pause|complete|archive`
//! (SPEC 1.3). Create, read, list, replace and delete are the generic document handlers of
//! [`super::admin_documents`].
//!
//! A transition is written only if the experiment is still at the version it was checked at
//! (or at `If-Match`, when given), so two racing calls cannot both pass from the same status.

use crate::http::error::ApiError;
use crate::http::extract::{Change, Env, OptionalJson};
use crate::http::routes::admin_documents::{catalog_with, stored_json};
use crate::http::routes::change_requests::{propose, Held};
use crate::service::changes::PlannedChange;
use crate::service::environments::Environment;
use crate::service::experiments;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use vexil_core::experiment::LifecycleAction;
use vexil_store::Write;

/// The body of `start`, `pause` and `archive`: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// The body of `complete`: nothing, `{}`, or `{"winner": "variant"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteOptions {
    winner: Option<String>,
}

/// `POST /v1/admin/experiments/{key}/start`: draft or paused → running.
pub async fn start(
    Env(env): Env,
    change: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    _: OptionalJson<NoOptions>,
) -> Result<Response, ApiError> {
    transition(&env, change, held, key, LifecycleAction::Start, None).await
}

/// `POST /v1/admin/experiments/{key}/pause`: running → paused.
pub async fn pause(
    Env(env): Env,
    change: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    _: OptionalJson<NoOptions>,
) -> Result<Response, ApiError> {
    transition(&env, change, held, key, LifecycleAction::Pause, None).await
}

/// `POST /v1/admin/experiments/{key}/complete` with an optional winner: running or paused →
/// completed.
pub async fn complete(
    Env(env): Env,
    change: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    OptionalJson(options): OptionalJson<CompleteOptions>,
) -> Result<Response, ApiError> {
    let winner = options.and_then(|o| o.winner);
    transition(&env, change, held, key, LifecycleAction::Complete, winner).await
}

/// `POST /v1/admin/experiments/{key}/archive`: completed → archived.
pub async fn archive(
    Env(env): Env,
    change: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    _: OptionalJson<NoOptions>,
) -> Result<Response, ApiError> {
    transition(&env, change, held, key, LifecycleAction::Archive, None).await
}

/// A transition, or when [`Held`] a change request for it (made against the version checked).
async fn transition(
    env: &Environment,
    Change { kind, meta, expected_version }: Change,
    held: Option<Extension<Held>>,
    key: String,
    action: LifecycleAction,
    winner: Option<String>,
) -> Result<Response, ApiError> {
    let catalog = catalog_with(env, kind, &key).await?;
    let stored = catalog.body(kind, &key).cloned().unwrap_or_default();
    let body = experiments::transition(&stored, action, winner)?;
    let expected_version = expected_version.or(catalog.version(kind, &key));
    if held.is_some() {
        let current = env.store.get(kind, &key).await?.filter(|d| Some(d.version) == expected_version);
        let current = current.ok_or_else(|| {
            ApiError::conflict("version_mismatch", format!("{kind} \"{key}\" changed while the transition was checked"))
        })?;
        let change = PlannedChange::between(kind, &key, Some(&current), Some(body));
        return Ok(propose(env, vec![change], None, &meta).await?.into_response());
    }
    let stored = env.store.apply(vec![Write::Update { kind, key, body, expected_version }], &meta).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok(Json(stored_json(stored)).into_response())
}
