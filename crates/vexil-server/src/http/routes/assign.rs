//! `POST /v1/assign` and `GET /v1/assign`: a user's variant in an experiment (SPEC 1.3, 4),
//! sticky once given. Configuration comes from the snapshot; the store is touched only for
//! first assignments (group-committed) and cache misses.

use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery, Env, OptionalJson};
use crate::http::json::Json;
use crate::http::routes::evaluate::{attributes, user_id};
use crate::http::state::AppState;
use crate::service::assignment;
use crate::service::environments::Environment;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use vexil_core::Context;

/// `{"user_id", "experiment_key", "context"}`; other members are ignored, as in evaluation.
#[derive(Debug, Default, Deserialize)]
pub struct AssignRequest {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    experiment_key: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
}

/// `POST /v1/assign`
pub async fn post(
    State(state): State<AppState>,
    Env(env): Env,
    ApiJson(request): ApiJson<AssignRequest>,
) -> Result<Response, ApiError> {
    let key = match &request.experiment_key {
        Some(Value::String(key)) => key.as_str(),
        _ => return Err(missing_key("experiment_key must be a string naming an experiment")),
    };
    answer(&state, &env, key, user_id(request.user_id.as_ref())?, request.context.as_ref()).await
}

#[derive(Debug, Deserialize)]
pub struct AssignQuery {
    experiment_key: Option<String>,
    user_id: Option<String>,
}

/// `GET /v1/assign?experiment_key=&user_id=` with an optional body `{"context"}`.
pub async fn query(
    State(state): State<AppState>,
    Env(env): Env,
    ApiQuery(query): ApiQuery<AssignQuery>,
    OptionalJson(body): OptionalJson<AssignRequest>,
) -> Result<Response, ApiError> {
    let key = query.experiment_key.ok_or_else(|| missing_key("experiment_key is required"))?;
    let user = query.user_id.map(Value::String);
    let body = body.unwrap_or_default();
    answer(&state, &env, &key, user_id(user.as_ref())?, body.context.as_ref()).await
}

fn missing_key(message: &str) -> ApiError {
    ApiError::bad_request("invalid_request", message).with_field("experiment_key")
}

async fn answer(
    state: &AppState,
    env: &Environment,
    key: &str,
    user: &str,
    context: Option<&Value>,
) -> Result<Response, ApiError> {
    vexil_core::validate_user_id(user)?;
    let ctx = Context::new(user, attributes(context)?);
    let experiment =
        env.snapshots.read().experiments.get(key).cloned().ok_or_else(|| {
            ApiError::not_found("experiment_not_found", format!("experiment \"{key}\" does not exist"))
        })?;
    let decision = assignment::assign(&state.assigner, state.events_of(env), &experiment, &ctx).await?;
    Ok(Json(decision.response(vexil_store::now())).into_response())
}
