//! `/v1/admin/budgets`: create, list, read (with spend and remaining), replace and delete cost
//! budgets. The scheduler evaluates them (see [`crate::service::safety::scheduler`]).

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, Change, ChangeReason, Env};
use crate::http::state::AppState;
use crate::service::environments::Environment;
use crate::service::safety::budgets::{Budget, Progress};
use crate::service::safety::scheduler::{budget_body, parse_budget};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
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
    ApiJson(budget): ApiJson<Budget>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    checked(&state, &env, &budget).await?;
    let write = Write::Create {
        kind: EntityKind::Budget,
        key: budget.key.clone(),
        body: budget_body(&budget, &Progress::default()),
    };
    let doc = stored(env.store.apply(vec![write], &caller.change(reason)).await?);
    Ok((StatusCode::CREATED, Json(with_status(&state, &env, &doc))))
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
    Ok(Json(with_status(&state, &env, &load(&env, &key).await?)))
}

/// The stored budget `key`, or 404.
async fn load(env: &Environment, key: &str) -> Result<StoredDocument, ApiError> {
    let doc = env.store.get(EntityKind::Budget, key).await?;
    Ok(doc.ok_or_else(|| StoreError::NotFound { kind: EntityKind::Budget, key: key.to_string() })?)
}

/// `PUT /v1/admin/budgets/{key}` (+ optional `If-Match`): replaces the budget, keeping which
/// thresholds already fired in this period.
pub async fn replace(
    State(state): State<AppState>,
    Env(env): Env,
    change: Change,
    Path(key): Path<String>,
    ApiJson(budget): ApiJson<Budget>,
) -> Result<Json<Value>, ApiError> {
    if budget.key != key {
        return Err(ApiError::bad_request(
            "key_mismatch",
            format!("the body's key \"{}\" is not the path's key \"{key}\"", budget.key),
        )
        .with_field("key"));
    }
    checked(&state, &env, &budget).await?;
    let current = load(&env, &key).await?;
    let progress = parse_budget(&current).map(|(_, p)| p).unwrap_or_default();
    let write = Write::Update {
        kind: change.kind,
        key,
        body: budget_body(&budget, &progress),
        expected_version: change.expected_version.or(Some(current.version)),
    };
    let doc = stored(env.store.apply(vec![write], &change.meta).await?);
    Ok(Json(with_status(&state, &env, &doc)))
}

/// `DELETE /v1/admin/budgets/{key}` (+ optional `If-Match`) → 204.
pub async fn delete(
    Env(env): Env,
    Change { kind, meta, expected_version }: Change,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    env.store.apply(vec![Write::Delete { kind, key, expected_version }], &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
