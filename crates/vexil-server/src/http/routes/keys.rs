//! `/v1/admin/keys`: create (the secret is shown once), list (never secrets), revoke.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ChangeReason};
use crate::http::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use vexil_store::KeyKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    kind: KeyKind,
    name: String,
}

/// `POST /v1/admin/keys` → 201 `{"id", "kind", "name", "created_at", "key"}`.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ChangeReason(reason): ChangeReason,
    ApiJson(new): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("invalid_request", "name must be 1 to 128 characters").with_field("name"));
    }
    let (key, secret) = state.store.create_key(new.kind, name, &caller.change(reason)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": key.id, "kind": key.kind, "name": key.name, "created_at": key.created_at, "key": secret})),
    ))
}

/// `GET /v1/admin/keys` → `{"keys": [...]}`, revoked ones with `revoked_at`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "keys": state.store.list_keys().await? })))
}

/// `DELETE /v1/admin/keys/{id}` → the revoked key. The key stops working on this node at once.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ChangeReason(reason): ChangeReason,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = state.store.revoke_key(&id, &caller.change(reason)).await?;
    state.keys.invalidate(&key.id);
    Ok(Json(json!(key)))
}
