//! `/v1/admin/environments`: create, list, read, replace and delete environments (SPEC 9).
//! Environments are documents of their own kind in the store's global namespace, versioned and
//! audited like every document; the service's map of live environments
//! ([`crate::service::environments`]) is brought up to date before each write answers.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{path_key, ApiJson, ApiQuery, ChangeReason, IfMatch};
use crate::http::state::AppState;
use crate::service::environments::{canonical, holdings};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vexil_store::{ChangeMeta, EntityKind, StoreError, StoredDocument, Write, GLOBAL};

fn not_found(key: &str) -> ApiError {
    ApiError::not_found("environment_not_found", format!("environment \"{key}\" does not exist"))
}

fn decode(body: &Value) -> Result<Value, ApiError> {
    canonical(body).map_err(ApiError::validation)
}

fn stored(mut docs: Vec<Option<StoredDocument>>) -> Value {
    docs.pop().flatten().expect("a create or update returns the stored document").to_json()
}

/// `GET /v1/admin/environments` → `{"environments": [...], "default": "production"}`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let docs = state.environments.backend().list_in(GLOBAL, EntityKind::Environment).await?;
    let environments: Vec<Value> = docs.iter().map(StoredDocument::to_json).collect();
    Ok(Json(json!({"environments": environments, "default": &*state.environments.default().key})))
}

/// `GET /v1/admin/environments/{env}`
pub async fn get(State(state): State<AppState>, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    let doc = state.environments.backend().get_in(GLOBAL, EntityKind::Environment, &key).await?;
    Ok(Json(doc.ok_or_else(|| not_found(&key))?.to_json()))
}

/// `POST /v1/admin/environments` → 201 with the stored environment, empty and ready to serve.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = decode(&body)?;
    let key = body["key"].as_str().expect("canonical environments have a key").to_owned();
    let write = Write::Create { kind: EntityKind::Environment, key, body };
    let docs = state.environments.backend().apply_in(GLOBAL, vec![write], &caller.change(reason)).await?;
    state.environments.catch_up().await;
    Ok((StatusCode::CREATED, Json(stored(docs))))
}

/// `PUT /v1/admin/environments/{env}` with optional `If-Match: <version>`: replaces the name,
/// description, protection and tags. The body's key must be the path's (it may be left out).
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    IfMatch(expected_version): IfMatch,
    Path(key): Path<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    path_key(&mut body, &key)?;
    let body = decode(&body)?;
    let write = Write::Update { kind: EntityKind::Environment, key, body, expected_version };
    let docs = state.environments.backend().apply_in(GLOBAL, vec![write], &caller.change(reason)).await?;
    Ok(Json(stored(docs)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

/// `DELETE /v1/admin/environments/{env}` (+ optional `If-Match`) → 204. 409 `not_empty` while
/// it holds anything (documents, or keys that act in it) unless `?force=true`, which revokes
/// its keys and deletes everything it holds, audited with what it held. The default
/// environment (and so the last one) cannot be deleted: 409 `default_environment`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    IfMatch(expected_version): IfMatch,
    ApiQuery(query): ApiQuery<DeleteQuery>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let environments = &state.environments;
    let backend = environments.backend();
    if backend.get_in(GLOBAL, EntityKind::Environment, &key).await?.is_none() {
        return Err(not_found(&key));
    }
    if key == *environments.default().key {
        let message = format!(
            "\"{key}\" is the default environment, where keys without an environment act; it cannot be deleted \
             (choose another with the default_environment setting first)"
        );
        return Err(ApiError::conflict("default_environment", message));
    }
    let reason = reason.or(query.reason);
    let mut meta = caller.change(reason.clone());
    if let Some(environment) = environments.get(&key) {
        let held = holdings(&environment, backend.as_ref(), false).await?;
        if !held.is_empty() && !query.force {
            let message = format!(
                "environment \"{key}\" holds {}; delete those first, or pass ?force=true to delete it with \
                 everything it holds",
                held.join(", ")
            );
            return Err(ApiError::conflict("not_empty", message));
        }
        if !held.is_empty() {
            let forced = format!("force=true; it held {}", held.join(", "));
            meta = ChangeMeta { reason: Some(reason.map_or(forced.clone(), |r| format!("{r} ({forced})"))), ..meta };
            revoke_keys_of(&state, &key, &meta).await?;
        }
    }
    let write = Write::Delete { kind: EntityKind::Environment, key, expected_version };
    backend.apply_in(GLOBAL, vec![write], &meta).await?;
    environments.catch_up().await;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the active server and client keys that act in environment `key`, each audited.
async fn revoke_keys_of(state: &AppState, key: &str, meta: &ChangeMeta) -> Result<(), StoreError> {
    let backend = state.environments.backend();
    for api_key in backend.list_keys().await? {
        if api_key.revoked_at.is_none() && api_key.environment.as_deref() == Some(key) {
            backend.revoke_key(&api_key.id, meta).await?;
            state.keys.invalidate(&api_key.id);
        }
    }
    Ok(())
}
