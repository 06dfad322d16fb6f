//! Protected environments (SPEC 9): an `editor`'s configuration write there does not apply;
//! it becomes a change request, `202 {"change_request": {...}}`, which another key with the
//! editor or owner role there approves (applied then, if nothing it changes has changed since)
//! or rejects. Owners write directly; emergency stops and resumes are never held.
//!
//! [`protect`] runs on every admin write route, after the key check: for an editor in a
//! protected environment it marks the request [`Held`], and the handlers of flags, segments,
//! experiments, imports, rollout plans, budgets and promotion then propose instead of writing.
//! The routes here list, show, approve and reject the requests
//! ([`crate::service::changes`] does the work).

use crate::http::auth::{Admitted, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, ChangeReason, Env};
use crate::http::state::AppState;
use crate::service::changes::{self, PlannedChange, Status};
use crate::service::environments::Environment;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vexil_store::{ChangeMeta, EntityKind, Role, StoreError, GLOBAL};

/// In a request's extensions: its write is held for approval, not applied.
#[derive(Debug, Clone, Copy)]
pub struct Held;

/// Whether an editor's write to this route is held in a protected environment: writes of
/// flags, segments, experiments (lifecycle included), imports, rollout plans and budgets. Other
/// writes apply as for anyone: not configuration (DLQ), never held (emergency stops), or
/// decided by the handler (promotion names its target in the path; change requests).
pub(crate) fn is_held_route(method: &Method, path: &str) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return false;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["v1", "admin", "flags" | "segments" | "experiments"]
            | ["v1", "admin", "flags" | "segments" | "experiments", _]
            | ["v1", "admin", "experiments", _, _]
            | ["v1", "admin", "flags", _, "rollout-plan", ..]
            | ["v1", "admin", "budgets", ..]
            | ["v1", "admin", "import"]
    )
}

/// Whether environment `key` is protected.
pub async fn is_protected(state: &AppState, key: &str) -> Result<bool, StoreError> {
    let doc = state.environments.backend().get_in(GLOBAL, EntityKind::Environment, key).await?;
    Ok(doc.is_some_and(|d| d.body.get("protected") == Some(&Value::Bool(true))))
}

/// Whether `caller`'s writes in environment `key` are held for approval: an editor's in a
/// protected environment.
pub async fn holds(state: &AppState, caller: &Caller, key: &str) -> Result<bool, StoreError> {
    Ok(caller.role == Some(Role::Editor) && is_protected(state, key).await?)
}

/// The middleware of admin write routes; see the module documentation.
pub async fn protect(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !is_held_route(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    // Only ever layered inside the key check, which leaves the caller and its environment.
    let Some(Admitted { caller, environment: env }) = request.extensions().get::<Admitted>().cloned() else {
        return ApiError::internal("a protected route ran without the key check").into_response();
    };
    match holds(&state, &caller, &env.key).await {
        Ok(held) => {
            if held {
                request.extensions_mut().insert(Held);
            }
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Holds `changes` as a change request in `env`: the `202` answer of a held write.
pub async fn propose(
    env: &Environment,
    changes: Vec<PlannedChange>,
    source: Option<String>,
    meta: &ChangeMeta,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let doc = changes::propose(env.store.as_ref(), changes, source, meta).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"change_request": changes::shown(&env.key, &doc)}))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<Status>,
}

/// `GET /v1/admin/change-requests[?status=]` → `{"environment", "change_requests": [...]}`, newest first.
pub async fn list(Env(env): Env, ApiQuery(query): ApiQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let docs = changes::list(env.store.as_ref(), query.status).await?;
    let shown: Vec<Value> = docs.iter().map(|d| changes::shown(&env.key, d)).collect();
    Ok(Json(json!({"environment": &*env.key, "change_requests": shown})))
}

/// `GET /v1/admin/change-requests/{id}`
pub async fn get(Env(env): Env, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let doc = changes::get(env.store.as_ref(), &id).await?;
    Ok(Json(changes::shown(&env.key, &doc)))
}

/// `POST /v1/admin/change-requests/{id}/approve`: applies the request (409 if what it changes
/// changed since); 403 for its author.
pub async fn approve(
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = changes::approve(env.store.as_ref(), &id, &caller.change(reason)).await?;
    env.snapshots.catch_up(env.store.as_ref()).await;
    Ok(Json(changes::shown(&env.key, &doc)))
}

/// `POST /v1/admin/change-requests/{id}/reject`
pub async fn reject(
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = changes::reject(env.store.as_ref(), &id, &caller.change(reason)).await?;
    Ok(Json(changes::shown(&env.key, &doc)))
}
