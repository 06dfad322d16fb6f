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
    Extension(caller): Extension<Caller>,
    ChangeReason(reason): ChangeReason,
    ApiJson(new): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = new.name.trim().to_owned();
    let name = name.as_str();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("invalid_request", "name must be 1 to 128 characters").with_field("name"));
    }
    if let Some(environment) = &new.environment {
        if new.kind == KeyKind::Admin {
            let message = "an admin key has no environment: it names one on each request with ?env= or X-Vexil-Env";
            return Err(ApiError::bad_request("invalid_request", message).with_field("environment"));
        }
        if state.environments.get(environment).is_none() {
            let message = format!("environment \"{environment}\" does not exist");
            return Err(ApiError::not_found("environment_not_found", message).with_field("environment"));
        }
    }
    if new.kind != KeyKind::Admin {
        for (field, given) in [("role", new.role.is_some()), ("environments", new.environments.is_some())] {
            if given {
                let message = format!("{field} is for admin keys; a {} key acts in its environment", new.kind);
                return Err(ApiError::bad_request("invalid_request", message).with_field(field));
            }
        }
    }
    if let Some(list) = &new.environments {
        if list.is_empty() {
            let message = "environments must name at least one environment, or be null for every one";
            return Err(ApiError::bad_request("invalid_request", message).with_field("environments"));
        }
        if let Some((i, unknown)) = list.iter().enumerate().find(|(_, e)| state.environments.get(e).is_none()) {
            let message = format!("environment \"{unknown}\" does not exist");
            return Err(ApiError::not_found("environment_not_found", message).with_field(format!("environments[{i}]")));
        }
    }
    let kind = new.kind;
    let grant = KeyGrant { environment: new.environment, role: new.role, environments: new.environments };
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
    Extension(caller): Extension<Caller>,
    ChangeReason(reason): ChangeReason,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = state.environments.backend().revoke_key(&id, &caller.change(reason)).await?;
    state.keys.invalidate(&key.id);
    Ok(Json(shown(&key, &state.environments.default().key)))
}
