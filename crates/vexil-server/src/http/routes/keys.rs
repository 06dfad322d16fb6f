//! `/v1/admin/keys`: create (the secret is shown once), list (never secrets), revoke.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ChangeReason};
use crate::http::state::AppState;
use crate::service::keys::check_new_key;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vexil_store::{ApiKey, KeyGrant, KeyKind, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    kind: KeyKind,
    name: String,
    /// The environment a server or client key acts in (default: the default environment).
    environment: Option<String>,
    /// An admin key's role (default `owner`).
    role: Option<Role>,
    /// The environments an admin key may act in (default, or `null`: every one).
    environments: Option<Vec<String>>,
}

/// A key as the API shows it: a server or client key with the environment it acts in (the
/// default one when it was created without), an admin key with `environment: null` (it names
/// its environment on each request), its `role` and `environments` (`null`: every one).
fn shown(key: &ApiKey, default: &str) -> Value {
    let mut shown = json!(key);
    if key.kind == KeyKind::Admin {
        let fields = shown.as_object_mut().expect("a key shows as an object");
        fields.insert("role".into(), json!(key.role.unwrap_or(Role::Owner)));
    } else {
        shown["environment"] = json!(key.environment.as_deref().unwrap_or(default));
        let fields = shown.as_object_mut().expect("a key shows as an object");
        fields.remove("role");
        fields.remove("environments");
    }
    shown
}

/// `POST /v1/admin/keys` → 201 `{"id", "kind", "name", "environment", "created_at", "key"}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    ApiJson(new): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let grant = KeyGrant { environment: new.environment, role: new.role, environments: new.environments };
    let environments = &state.environments;
    let name = check_new_key(new.kind, &new.name, &grant, |e| environments.get(e).is_some())?;
    let kind = new.kind;
    let backend = state.environments.backend();
    let (key, secret) = backend.create_key(kind, name, &grant, &caller.change(reason)).await?;
    let mut shown = shown(&key, &state.environments.default().key);
    shown["key"] = json!(secret);
    shown.as_object_mut().expect("a key shows as an object").remove("revoked_at");
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `GET /v1/admin/keys` → `{"keys": [...]}`, revoked ones with `revoked_at`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let default = &state.environments.default().key;
    let keys: Vec<Value> =
        state.environments.backend().list_keys().await?.iter().map(|key| shown(key, default)).collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /v1/admin/keys/{id}` → the revoked key. The key stops working on this node at once.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = state.environments.backend().revoke_key(&id, &caller.change(reason)).await?;
    state.keys.invalidate(&key.id);
    Ok(Json(shown(&key, &state.environments.default().key)))
}
