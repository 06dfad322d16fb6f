//! `/v1/admin/users`: the people who sign in to the web console (SPEC 9), an owner's to create,
//! list and change (role, environments, disabled, password). Passwords are never answered;
//! [`crate::service::people`] checks and hashes them.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ChangeReason};
use crate::http::state::AppState;
use crate::service::people::{self, NewUser, UserChange};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use vexil_store::User;

/// `POST /v1/admin/users` → 201 `{"username", "role", "environments", "disabled", "created_at"}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let environments = &state.environments;
    let exists = |e: &str| environments.get(e).is_some();
    let user = people::create_user(environments.backend().as_ref(), new, exists, &caller.change(reason)).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /v1/admin/users` → `{"users": [...]}`, disabled ones included, by username.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = state.environments.backend().list_users().await?;
    Ok(Json(json!({ "users": users })))
}

/// `PUT /v1/admin/users/{username}` with any of `{"role", "environments", "disabled",
/// "password"}` → the user. Applies to the person's live sessions at once; disabling them or
/// setting a password ends those sessions.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ChangeReason(reason): ChangeReason,
    Path(username): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Json<User>, ApiError> {
    let environments = &state.environments;
    let exists = |e: &str| environments.get(e).is_some();
    let meta = caller.change(reason);
    let user = people::update_user(environments.backend().as_ref(), &username, change, exists, &meta).await?;
    Ok(Json(user))
}
