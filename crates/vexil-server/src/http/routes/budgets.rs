//! `/v1/admin/budgets`: create, list, read (with spend and remaining), replace and delete cost
//! budgets. The scheduler evaluates them (see [`crate::service::safety::scheduler`]). An
//! editor's write in a protected environment is [`Held`]: 202 with a change request.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Change, ChangeReason, Env};
use crate::http::routes::admin_documents::current_at;
use crate::http::routes::change_requests::{propose, Held};
use crate::http::state::AppState;
use crate::service::changes::PlannedChange;
use crate::service::environments::Environment;
use crate::service::safety::budgets::{Budget, Progress};
use crate::service::safety::scheduler::{budget_body, parse_budget};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use vexil_store::{EntityKind, StoreError, StoredDocument, Write};

/// A stored budget with its current period's spend.
fn with_status(state: &AppState, env: &Environment, doc: &StoredDocument) -> Value {
    let mut body = doc.to_json();
    if let Some((budget, _)) = parse_budget(doc) {
        let now = vexil_store::now();
        body["status"] = match budget.spend(state.safety.signals_of(&env.key).as_ref(), now) {
            Ok(spend) => json!({"period_start": budget.period_start(now), "spend": spend.sum, "events": spend.count,
                "remaining": budget.limit - spend.sum, "used_percent": spend.sum / budget.limit * 100.0}),
            Err(e) => json!({"error": e}),
        };
    }
    body
}

async fn checked(state: &AppState, env: &Environment, budget: &Budget) -> Result<(), ApiError> {
    let flag_exists = match &budget.flag {
        Some(flag) => env.store.get(EntityKind::Flag, flag).await?.is_some(),
        None => false,
    };
    budget.validate(flag_exists, state.safety.signals_of(&env.key).as_ref()).map_err(ApiError::validation)
}

fn stored(mut docs: Vec<Option<StoredDocument>>) -> StoredDocument {
    docs.pop().flatten().expect("a create or update returns the stored document")
}

/// `POST /v1/admin/budgets` → 201. Not [`Change`]: a create matches no version, and this route
/// has never read `If-Match`.
pub async fn create(
    State(state): State<AppState>,
    Env(env): Env,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    held: Option<Extension<Held>>,
    ApiJson(budget): ApiJson<Budget>,
) -> Result<Response, ApiError> {
    checked(&state, &env, &budget).await?;
    let (kind, key, body) = (EntityKind::Budget, budget.key.clone(), budget_body(&budget, &Progress::default()));
    let meta = caller.change(reason);
    if held.is_some() {
        if env.store.get(kind, &key).await?.is_some() {
            return Err(StoreError::AlreadyExists { kind, key }.into());
        }
        let change = PlannedChange::between(kind, &key, None, Some(body));
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    let doc = stored(env.store.apply(vec![Write::Create { kind, key, body }], &meta).await?);
    Ok((StatusCode::CREATED, Json(with_status(&state, &env, &doc))).into_response())
}

/// `GET /v1/admin/budgets` → `{"budgets": [...]}` with each one's status.
pub async fn list(State(state): State<AppState>, Env(env): Env) -> Result<Json<Value>, ApiError> {
    let docs = env.store.list(EntityKind::Budget).await?;
    Ok(Json(json!({"budgets": docs.iter().map(|d| with_status(&state, &env, d)).collect::<Vec<_>>()})))
}

/// `GET /v1/admin/budgets/{key}`
pub async fn get(
    State(state): State<AppState>,
    Env(env): Env,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(with_status(&state, &env, &current_at(&env, EntityKind::Budget, &key, None).await?)))
}

/// `PUT /v1/admin/budgets/{key}` (+ optional `If-Match`): replaces the budget, keeping which
/// thresholds already fired in this period.
pub async fn replace(
    State(state): State<AppState>,
    Env(env): Env,
    Change { kind, meta, expected_version }: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
    ApiJson(budget): ApiJson<Budget>,
) -> Result<Response, ApiError> {
    if budget.key != key {
        return Err(ApiError::bad_request(
            "key_mismatch",
            format!("the body's key \"{}\" is not the path's key \"{key}\"", budget.key),
        )
        .with_field("key"));
    }
    checked(&state, &env, &budget).await?;
    let current = current_at(&env, kind, &key, expected_version).await?;
    let progress = parse_budget(&current).map(|(_, p)| p).unwrap_or_default();
    let body = budget_body(&budget, &progress);
    if held.is_some() {
        let change = PlannedChange::between(kind, &key, Some(&current), Some(body));
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    let write = Write::Update { kind, key, body, expected_version: Some(current.version) };
    let doc = stored(env.store.apply(vec![write], &meta).await?);
    Ok(Json(with_status(&state, &env, &doc)).into_response())
}

/// `DELETE /v1/admin/budgets/{key}` (+ optional `If-Match`) → 204.
pub async fn delete(
    Env(env): Env,
    Change { kind, meta, expected_version }: Change,
    held: Option<Extension<Held>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    if held.is_some() {
        let current = current_at(&env, kind, &key, expected_version).await?;
        let change = PlannedChange::between(kind, &key, Some(&current), None);
        return Ok(propose(&env, vec![change], None, &meta).await?.into_response());
    }
    env.store.apply(vec![Write::Delete { kind, key, expected_version }], &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
